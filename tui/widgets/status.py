"""The status bar: what the view is, how many rows, the time range, and background work."""

from __future__ import annotations

import time
from datetime import datetime

from rich.text import Text
from textual.widget import Widget

from ..safe_text import escape
from .columns import format_time

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class StatusBar(Widget):
    DEFAULT_CSS = """
    StatusBar { height: 2; background: $panel; color: $text; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = ""
        self.filters = ""
        self.filters_enabled = True
        self.count = 0
        self.total = 0
        self.index = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.local_time = False
        self.work: list[tuple[str, float, float | None]] = []  # (label, started, share done)
        self.view_done = 1.0  # share of the events a full-text filter has looked at so far
        self.message = ""
        self.message_is_error = False
        self.tag: str | None = None
        self.findings: tuple[int, int] | None = None  # (all, high or worse), shown by the timeline

    def update_view(self, *, title: str, filters: str, enabled: bool, count: int, total: int,
                    first: datetime | None, last: datetime | None, done: float = 1.0) -> None:
        self.view_done = done
        self.title, self.filters, self.filters_enabled = title, filters, enabled
        self.count, self.total, self.first, self.last = count, total, first, last
        self.refresh()

    def set_message(self, message: str, *, error: bool = False) -> None:
        self.message = message
        self.message_is_error = error
        self.refresh()

    def render(self) -> Text:
        width = max(20, self.size.width)
        top = Text(no_wrap=True, overflow="ellipsis", end="")
        if self.title:
            top.append(escape(self.title, 200), style="bold")
            top.append("  ")
        if self.filters:
            label = "filters: " if self.filters_enabled else "filters (off): "
            top.append(label, style="dim")
            shown = escape(self.filters, 2000)
            tag = len(escape(self.tag or "(marked)", 200)) + 7 if self.tag is not None else 0
            room = width - top.cell_len - tag
            if len(shown) > room > 8:
                # Too long for the line: the newest whole terms (at the end) are the ones kept; a
                # single term too long for it keeps its start (its field name), cut at the end.
                kept: list[str] = []
                for term in reversed(shown.split(" ")):
                    if len(" ".join([term, *kept])) + 2 > room:
                        break
                    kept.insert(0, term)
                if kept:
                    shown = "… " + " ".join(kept)
            top.append(shown, style="" if self.filters_enabled else "strike dim")
        elif not self.title:
            top.append("all events", style="dim")
        if self.tag is not None:
            top.append("  tag: ", style="dim")
            top.append(escape(self.tag or "(marked)", 200), style="bold")
        top.truncate(width, overflow="ellipsis")

        bottom = Text(no_wrap=True, overflow="ellipsis", end="")
        if self.count:
            bottom.append(f"{self.index + 1:,}", style="bold")
            bottom.append(f"/{self.count:,}")
        else:
            bottom.append("0", style="bold")
        if self.count != self.total:
            bottom.append(f"  of {self.total:,}", style="dim")
        if self.view_done < 1.0:
            bottom.append(f"  so far ({self.view_done:.0%} searched)", style="bold")
        if self.first is not None or self.last is not None:
            first = format_time(self.first, self.local_time) or "?"
            last = format_time(self.last, self.local_time) or "(no time)"
            bottom.append("  ")
            bottom.append(f"{first} → {last}", style="dim")
        if self.findings is not None and self.findings[0]:
            total, serious = self.findings
            bottom.append(f"  ! {total:,} finding{'s' if total != 1 else ''}", style="bold" if serious else "")
            if serious:
                bottom.append(f" ({serious:,} high+)", style="bold")
        if self.work:
            label, started, done = self.work[-1]
            spin = SPINNER[int(time.monotonic() * 10) % len(SPINNER)]
            share = "" if done is None else f" {done:.0%}"
            bottom.append(f"  {spin} {label}{share} {time.monotonic() - started:.1f}s", style="bold")
            bottom.append(" (Esc cancels)", style="dim")
        if self.message:
            bottom.append("  ")
            bottom.append(escape(self.message, 500), style="bold red" if self.message_is_error else "italic")
        bottom.truncate(width, overflow="ellipsis")
        return Text("\n", end="").join([top, bottom])
