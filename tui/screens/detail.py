"""The event, full screen: every field with its decoded meaning; `r` raw document, `y` copy."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static

from ..safe_text import escape
from ..session import Session
from ..widgets.detail import DetailView
from ..widgets.timeline import Timeline
from .base import keymap_bindings


class DetailScreen(Screen[None]):
    BINDINGS = keymap_bindings("detail")
    DEFAULT_CSS = """
    DetailScreen #detail-title { height: 1; background: $panel; text-style: bold; }
    DetailScreen #detail-status { height: 1; background: $panel; color: $text-muted; }
    DetailScreen DetailView { height: 1fr; }
    """

    def __init__(self, session: Session, timeline: Timeline | None, eid: int) -> None:
        super().__init__()
        self.session = session
        self.timeline = timeline
        self.eid = eid
        self.event: dict[str, Any] | None = None
        self._serial = 0
        self._retry: Timer | None = None
        self.is_loading = True

    def compose(self) -> ComposeResult:
        self.title_bar = Static("", id="detail-title")
        self.view_pane = DetailView(id="detail")
        self.status_line = Static("", id="detail-status")
        yield self.title_bar
        yield self.view_pane
        yield self.status_line

    def on_mount(self) -> None:
        self.view_pane.focus()
        if self.timeline is not None:
            self.view_pane.local_time = self.timeline.local_time
        self._load(self.eid)

    def _load(self, eid: int) -> None:
        self.eid = eid
        self.is_loading = True
        self._serial += 1
        self._fetch(self._serial, eid)

    @work(thread=True, group="detail", exclusive=True, exit_on_error=False)
    def _fetch(self, serial: int, eid: int) -> None:
        try:
            with self.session.cursor() as cur:
                d = self.session.detail(cur, eid)
        except Exception as exc:
            self.app.call_from_thread(self._loaded, serial, None, f"cannot read the event: {exc}")
            return
        self.app.call_from_thread(self._loaded, serial, d)

    def _loaded(self, serial: int, d: dict[str, Any] | None, error: str = "") -> None:
        if serial != self._serial:
            return
        self.is_loading = False
        self.event = d
        self.view_pane.marked = self.eid in self.session.marks
        self.view_pane.tag = self.session.marks.get(self.eid)
        self.view_pane.show(d, message=error or "this event is not in the case")
        self._title()

    def _title(self) -> None:
        d = self.event or {}
        text = Text(no_wrap=True)
        text.append(" event ", style="reverse")
        text.append(" ")
        text.append(escape(d.get("summary") or "", 300))
        self.title_bar.update(text)
        keys = self.app.keymap if hasattr(self.app, "keymap") else None  # type: ignore[attr-defined]
        help_text = "r raw · y copy · J/K next/previous event · q back"
        if keys is not None:
            help_text = (f"{keys.display('detail', 'toggle_raw')} raw · {keys.display('detail', 'copy_value')} copy · "
                         f"{keys.display('detail', 'next_event')}/{keys.display('detail', 'previous_event')} "
                         f"next/previous event · {keys.display('detail', 'back')} back")
        mode = "raw original" if self.view_pane.raw else "fields"
        self.status_line.update(Text(f" {mode} · {help_text}", no_wrap=True))

    # -- actions -------------------------------------------------------------------------------------------
    def action_cursor_down(self) -> None:
        self.view_pane.move(1)

    def action_cursor_up(self) -> None:
        self.view_pane.move(-1)

    def action_page_down(self) -> None:
        self.view_pane.page(1)

    def action_page_up(self) -> None:
        self.view_pane.page(-1)

    def action_first(self) -> None:
        self.view_pane.move_to(0)

    def action_last(self) -> None:
        self.view_pane.move_to(len(self.view_pane.entries) - 1)

    def action_toggle_raw(self) -> None:
        self.view_pane.set_raw(not self.view_pane.raw)
        self._title()

    def action_copy_value(self) -> None:
        entry = self.view_pane.focused_entry()
        if entry is None:
            return
        self.app.copy_to_clipboard(entry.copy)
        self.status_line.update(Text(f" copied {entry.name or 'value'} ({len(entry.copy):,} characters)",
                                     no_wrap=True))

    def action_tree(self) -> None:
        self.app.show_tree_of_event(self.eid)  # type: ignore[attr-defined]

    def action_back(self) -> None:
        self.dismiss(None)

    def action_next_event(self) -> None:
        self._step(1)

    def action_previous_event(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        if self.timeline is None:
            return
        self.timeline.move_by(delta)
        self._follow(20)

    def _follow(self, tries: int) -> None:
        """Load the timeline's cursor row once its block is there."""
        assert self.timeline is not None
        row = self.timeline.current_row()
        if row is not None:
            if int(row["eid"]) != self.eid or self.event is None:
                self._load(int(row["eid"]))
            return
        if tries > 0:
            self._retry = self.set_timer(0.05, lambda: self._follow(tries - 1))
