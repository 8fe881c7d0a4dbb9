"""Events of the current view over time: one bar per bucket, log clears marked; Enter narrows."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static
from textual.widgets.option_list import Option

from engine import views

from ..session import Session
from ..widgets.columns import format_time
from ..workers import ReportsWorkerFailures
from .base import KeyList, KeyListNavigation, keymap_bindings

BAR = "█"
PARTIAL = " ▏▎▍▌▋▊▉"


TITLE_ROWS = 2  # #hist-title; the list takes the rest of the screen
# Characters of the UTC start that name a bucket of each unit: 2017 · 2017-03 · 2017-03-06 · …
LABEL_CHARS = {"year": 4, "month": 7, "week": 10, "day": 10, "hour": 16, "minute": 16, "second": 19}


def bucket_label(width: views.BucketWidth) -> str:
    """"12 hours", "1 year", "5 min", "30 s"."""
    short = {"minute": "min", "second": "s"}.get(width.unit)
    if short:
        return f"{width.n} {short}"
    return f"{width.n} {width.unit}" + ("s" if width.n != 1 else "")


def start_label(start: datetime, width: views.BucketWidth, local_time: bool) -> str:
    """A bucket's start, to the precision of its unit. In local time a UTC-aligned start need not
    fall on a local boundary, so the hour and minute are always shown there."""
    chars = LABEL_CHARS[width.unit]
    if local_time:
        chars = max(chars, 16)
    return format_time(start, local_time)[:chars]


def bar(n: int, top: int, width: int) -> str:
    if top <= 0 or width <= 0:
        return ""
    cells = n / top * width
    full = int(cells)
    part = PARTIAL[int((cells - full) * 8)] if full < width else ""
    text = BAR * full + (part if part.strip() else "")
    if n and not text:
        text = "▏"
    return text


class HistogramScreen(ReportsWorkerFailures, KeyListNavigation, Screen[tuple[datetime, datetime] | None]):
    BINDINGS = keymap_bindings("histogram")
    DEFAULT_CSS = """
    HistogramScreen #hist-title { height: 2; background: $panel; }
    HistogramScreen KeyList { height: 1fr; }
    /* :focus too: the list's own focused-cursor rule is more specific, and NO_COLOR leaves only its bold. */
    HistogramScreen KeyList > .option-list--option-highlighted,
    HistogramScreen KeyList:focus > .option-list--option-highlighted { text-style: bold reverse; }
    """

    def __init__(self, session: Session, view: views.View, local_time: bool = False) -> None:
        super().__init__()
        self.session = session
        self.view = view
        self.local_time = local_time
        self.histogram: views.Histogram | None = None
        self.is_loading = True
        self.fitted_rows = 0  # the list height the bucket width was chosen for
        self._keep: datetime | None = None  # the highlighted bucket's start, kept across a resize

    def compose(self) -> ComposeResult:
        yield Static(Text("histogram: counting…", style="dim"), id="hist-title")
        yield KeyList(id="hist-list")

    def list_rows(self) -> int:
        """Buckets that fit on screen: one per row below the title."""
        return max(1, self.app.size.height - TITLE_ROWS)

    def on_mount(self) -> None:
        self.query_one(KeyList).focus()
        self.fitted_rows = self.list_rows()
        self._compute(self.fitted_rows)

    def on_resize(self, _event: events.Resize) -> None:
        self._refit()

    def _refit(self) -> None:
        """Count again when the screen's rows changed since the width was chosen (a resize while
        counting is caught up when the count arrives)."""
        rows = self.list_rows()
        if self.is_loading or rows == self.fitted_rows:
            return
        chosen = self.selected()
        self._keep = chosen[0] if chosen else None
        self.fitted_rows = rows
        self.is_loading = True
        self._compute(rows)

    @work(thread=True, group="histogram", exclusive=True, exit_on_error=False)
    def _compute(self, rows: int) -> None:
        try:
            with self.session.busy("histogram") as (cur, _job):
                hist = views.histogram(cur, self.view, max_buckets=rows)
        except Exception as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._show, hist)

    def _failed(self, error: str) -> None:
        self.is_loading = False
        self.query_one("#hist-title", Static).update(Text(f"histogram failed: {error}", style="bold red"))

    def _show(self, hist: views.Histogram) -> None:
        self.is_loading = False
        self.histogram = hist
        title = Text(no_wrap=True)
        total = sum(n for _b, n, _c in hist.buckets)
        clears = sum(c for _b, _n, c in hist.buckets)
        empty = sum(1 for _b, n, _c in hist.buckets if n == 0)
        title.append(f" {total:,} events", style="bold")
        title.append(f" in {len(hist.buckets)} buckets of {bucket_label(hist.width)}")
        if empty:
            title.append(f", {empty} empty", style="bold")
        if clears:
            title.append(f"   ⚠ {clears} log clear(s) (1102/104)", style="bold red")
        title.append("\n Enter narrows the timeline to a bucket · q back", style="dim")
        self.query_one("#hist-title", Static).update(title)
        options = self.query_one(KeyList)
        options.clear_options()
        top = max((n for _b, n, _c in hist.buckets), default=0)
        labels = [start_label(start, hist.width, self.local_time) for start, _n, _c in hist.buckets]
        label_width = max((len(label) for label in labels), default=0)
        width = max(10, self.app.size.width - label_width - 4 - 10 - 14 - 4)
        for label, (_start, n, clear) in zip(labels, hist.buckets, strict=True):
            line = Text(no_wrap=True, end="")
            line.append(label.ljust(label_width) + " ")
            line.append(f"{n:>9,} ", style="bold")
            if n == 0:  # a gap (a stopped or cleared log?): said in words, not just a missing bar
                line.append("no events".ljust(width), style="dim")
            else:
                line.append(bar(n, top, width).ljust(width), style="green")
            if clear:
                line.append(f" ⚠ clear ×{clear}", style="bold red")
            options.add_option(Option(line))
        if hist.buckets:
            keep = self._keep
            options.highlighted = next((i for i in range(len(hist.buckets))
                                        if keep is not None and hist.bounds(i)[0] <= keep < hist.bounds(i)[1]), 0)
        self._keep = None
        self._refit()

    def selected(self) -> tuple[datetime, datetime] | None:
        if self.histogram is None or not self.histogram.buckets:
            return None
        index = self.query_one(KeyList).highlighted
        if index is None:
            return None
        return self.histogram.bounds(index)

    def action_select(self) -> None:
        chosen = self.selected()
        if chosen is not None:
            self.dismiss(chosen)

    def action_back(self) -> None:
        self.session.cancel_all(owner=self)  # a search still running in the timeline beneath goes on
        self.dismiss(None)
