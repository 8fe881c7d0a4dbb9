"""The active filters, one per line: remove any of them."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.widgets.option_list import Option

from ..safe_text import escape
from ..workers import ReportsWorkerFailures
from .base import KeyList, KeyListNavigation, keymap_bindings


class FilterListScreen(ReportsWorkerFailures, KeyListNavigation, ModalScreen[list[str] | None]):
    """Returns the filters left (None when nothing changed)."""

    BINDINGS = keymap_bindings("filters")
    DEFAULT_CSS = """
    FilterListScreen { align: center middle; }
    FilterListScreen > #filters-box { width: 90%; height: auto; max-height: 80%; background: $panel;
                                      border: round $accent; padding: 0 1; }
    FilterListScreen #filters-title { height: 1; }
    FilterListScreen KeyList, FilterListScreen KeyList:focus { height: auto; max-height: 20; background: $panel; }
    /* :focus too: the list's own focused-cursor rule is more specific, and NO_COLOR leaves only its bold. */
    FilterListScreen KeyList > .option-list--option-highlighted,
    FilterListScreen KeyList:focus > .option-list--option-highlighted { text-style: bold reverse; }
    """

    def __init__(self, filters: list[str]) -> None:
        super().__init__()
        self.filters = list(filters)
        self.original = list(filters)

    def compose(self) -> ComposeResult:
        from textual.containers import Vertical

        with Vertical(id="filters-box"):
            yield Static("", id="filters-title")
            yield KeyList(id="filters-list")

    def on_mount(self) -> None:
        self._fill()
        self.query_one(KeyList).focus()

    def _fill(self) -> None:
        keys = getattr(self.app, "keymap", None)
        remove = keys.display("filters", "remove").split(",")[0] if keys else "d"
        back = keys.display("filters", "back").split(",")[0] if keys else "q"
        self.query_one("#filters-title", Static).update(
            Text(f"active filters (ANDed) · {remove}: remove · {back}: back", style="bold"))
        options = self.query_one(KeyList)
        highlighted = options.highlighted or 0
        options.clear_options()
        for i, text in enumerate(self.filters, start=1):
            options.add_option(Option(Text(f"{i}. ") + Text(escape(text, 2000))))
        if self.filters:
            options.highlighted = min(highlighted, len(self.filters) - 1)

    def action_remove(self) -> None:
        index = self.query_one(KeyList).highlighted
        if index is None or not self.filters:
            return
        del self.filters[index]
        self._fill()
        if not self.filters:
            self.action_back()

    def action_back(self) -> None:
        self.dismiss(None if self.filters == self.original else self.filters)
