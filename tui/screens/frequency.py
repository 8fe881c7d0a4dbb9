"""How often each value of a column occurs in the current view; Enter keeps a value, `-` drops it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static
from textual.widgets.option_list import Option

from engine import views

from ..safe_text import escape, fit
from ..session import Session
from ..workers import ReportsWorkerFailures
from .base import KeyList, KeyListNavigation, keymap_bindings
from .histogram import bar

EMPTY = "(empty)"


class FrequencyScreen(ReportsWorkerFailures, KeyListNavigation, Screen[tuple[str, str, Any, bool] | None]):
    """Returns ("value", column, value, negate) for the timeline to filter on."""

    BINDINGS = keymap_bindings("frequency")
    DEFAULT_CSS = """
    FrequencyScreen #freq-title { height: 2; background: $panel; }
    FrequencyScreen KeyList { height: 1fr; }
    /* :focus too: the list's own focused-cursor rule is more specific, and NO_COLOR leaves only its bold. */
    FrequencyScreen KeyList > .option-list--option-highlighted,
    FrequencyScreen KeyList:focus > .option-list--option-highlighted { text-style: bold reverse; }
    """

    def __init__(self, session: Session, view: views.View, column: str, *,
                 counter: Callable[..., list[tuple[Any, int]]] | None = None, noun: str = "events") -> None:
        super().__init__()
        self.session = session
        # How values are counted over the view: events by default, sessions from the sessions view.
        self.counter = counter or views.frequency
        self.noun = noun
        self.source_view = view
        self.column = column
        self.rarest_first = False
        self.values: list[tuple[Any, int]] = []
        self.is_loading = True
        self._serial = 0

    def compose(self) -> ComposeResult:
        yield Static(Text(f"frequency of {self.column}: counting…", style="dim"), id="freq-title")
        yield KeyList(id="freq-list")

    def on_mount(self) -> None:
        self.query_one(KeyList).focus()
        self._start()

    def _start(self) -> None:
        self.is_loading = True
        self._serial += 1
        self._compute(self._serial, self.rarest_first)

    @work(thread=True, group="frequency", exclusive=True, exit_on_error=False)
    def _compute(self, serial: int, rarest: bool) -> None:
        try:
            with self.session.busy("frequency") as (cur, _job):
                values = self.counter(cur, self.source_view, self.column, rarest_first=rarest, limit=500)
        except Exception as exc:
            self.app.call_from_thread(self._failed, serial, str(exc))
            return
        self.app.call_from_thread(self._show, serial, values)

    def _failed(self, serial: int, error: str) -> None:
        if serial == self._serial:
            self.is_loading = False
            self.query_one("#freq-title", Static).update(Text(f"frequency failed: {error}", style="bold red"))

    def _show(self, serial: int, values: list[tuple[Any, int]]) -> None:
        if serial != self._serial:
            return
        self.is_loading = False
        self.values = values
        title = Text(no_wrap=True)
        title.append(f" {self.column}", style="bold")
        order = "rarest first" if self.rarest_first else "most common first"
        title.append(f": {len(values):,} values shown, {order} · {self.source_view.count:,} {self.noun} in view")
        keys = getattr(self.app, "keymap", None)
        if keys is not None:
            title.append(f"\n {keys.display('frequency', 'select')} keep · {keys.display('frequency', 'exclude')} "
                         f"exclude · {keys.display('frequency', 'toggle_order')} {'most common' if self.rarest_first else 'rarest'} first"
                         f" · {keys.display('frequency', 'back')} back", style="dim")
        self.query_one("#freq-title", Static).update(title)
        options = self.query_one(KeyList)
        options.clear_options()
        total = max(1, self.source_view.count)
        top = max((n for _v, n in values), default=0)
        width = self.app.size.width
        bar_width = max(4, min(30, width // 5))
        value_width = max(10, width - 10 - 8 - bar_width - 4)
        for value, n in values:
            line = Text(no_wrap=True, end="")
            line.append(f"{n:>9,} ", style="bold")
            line.append(f"{n / total:>6.1%} ")
            line.append(bar(n, top, bar_width).ljust(bar_width) + " ", style="green")
            shown = EMPTY if value is None or value == "" else escape(value)
            line.append(fit(shown, value_width), style="dim" if shown == EMPTY else "")
            options.add_option(Option(line))
        if values:
            options.highlighted = 0

    def _choose(self, negate: bool) -> None:
        index = self.query_one(KeyList).highlighted
        if index is None or not self.values:
            return
        value = self.values[index][0]
        if value is None or value == "":
            self.query_one("#freq-title", Static).update(
                Text(" an empty value cannot be filtered on", style="bold red"))
            return
        self.dismiss(("value", self.column, value, negate))

    def action_select(self) -> None:
        self._choose(False)

    def action_exclude(self) -> None:
        self._choose(True)

    def action_toggle_order(self) -> None:
        self.rarest_first = not self.rarest_first
        self._start()

    def action_back(self) -> None:
        self.session.cancel_all(owner=self)  # a search still running in the timeline beneath goes on
        self.dismiss(None)
