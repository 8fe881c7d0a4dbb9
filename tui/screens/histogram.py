"""Events of the current view over time: one bar per bucket, log clears marked; Enter narrows."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static
from textual.widgets.option_list import Option

from engine import views

from ..session import Session
from ..widgets.columns import format_time
from .base import KeyList, KeyListNavigation, keymap_bindings

BAR = "█"
PARTIAL = " ▏▎▍▌▋▊▉"


def bucket_label(seconds: int) -> str:
    for size, name in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"), (86400, "day"),
                       (3600, "hour"), (60, "min"), (1, "s")):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {name}" if name in ("min", "s") or n == 1 else f"{n} {name}s"
    return f"{seconds} s"


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


class HistogramScreen(KeyListNavigation, Screen[tuple[datetime, datetime] | None]):
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

    def compose(self) -> ComposeResult:
        yield Static(Text("histogram: counting…", style="dim"), id="hist-title")
        yield KeyList(id="hist-list")

    def on_mount(self) -> None:
        self.query_one(KeyList).focus()
        self._compute()

    @work(thread=True, group="histogram", exclusive=True, exit_on_error=False)
    def _compute(self) -> None:
        try:
            with self.session.busy("histogram") as (cur, _job):
                hist = views.histogram(cur, self.view, max_buckets=60)
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
        title.append(f" {total:,} events", style="bold")
        title.append(f" in {len(hist.buckets)} buckets of {bucket_label(hist.bucket_seconds)}")
        if clears:
            title.append(f"   ⚠ {clears} log clear(s) (1102/104)", style="bold red")
        title.append("\n Enter narrows the timeline to a bucket · q back", style="dim")
        self.query_one("#hist-title", Static).update(title)
        options = self.query_one(KeyList)
        options.clear_options()
        top = max((n for _b, n, _c in hist.buckets), default=0)
        width = max(10, self.app.size.width - 19 - 1 - 10 - 14 - 4)
        for start, n, clear in hist.buckets:
            line = Text(no_wrap=True, end="")
            line.append(format_time(start, self.local_time)[:16] + " ")
            line.append(f"{n:>9,} ", style="bold")
            line.append(bar(n, top, width).ljust(width), style="green")
            if clear:
                line.append(f" ⚠ clear ×{clear}", style="bold red")
            options.add_option(Option(line))
        if hist.buckets:
            options.highlighted = 0

    def selected(self) -> tuple[datetime, datetime] | None:
        if self.histogram is None or not self.histogram.buckets:
            return None
        index = self.query_one(KeyList).highlighted
        if index is None:
            return None
        start = self.histogram.buckets[index][0]
        return start, start + timedelta(seconds=self.histogram.bucket_seconds)

    def action_select(self) -> None:
        chosen = self.selected()
        if chosen is not None:
            self.dismiss(chosen)

    def action_back(self) -> None:
        self.session.cancel_all()
        self.dismiss(None)
