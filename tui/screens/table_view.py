"""A view of a derived table (sessions, findings) on the timeline's widget: the same line-API
table (`Timeline` with a row source), column layout by priority, status bar, filter prompt,
search with n / N, `+` / `-` on the focused value, and keymap section. A subclass names its table,
its engine functions, its columns and what its keys open; the loading runs in thread workers, a
newer request cancelling the older one, and a failed worker always reaches the status bar."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from engine import views
from engine.filters import Compiled, FilterError

from ..session import Job, Session
from ..widgets.status import StatusBar
from ..widgets.timeline import Timeline, TimelineHeader
from ..workers import ReportsWorkerFailures
from .prompt import PromptScreen

if TYPE_CHECKING:
    from ..keymap import Keymap


class ViewResolved(Message):
    def __init__(self, request: int, filters: list[str], view: views.View | None, error: str | None) -> None:
        super().__init__()
        self.request = request
        self.filters = filters
        self.view = view
        self.error = error


class TableViewScreen(ReportsWorkerFailures, Screen[None]):
    """What every derived-table view shares. Subclasses set the class attributes and `source()`,
    `compile()`, `resolve()`, and may override `info()` and `value_source()`."""

    NOUN: ClassVar[str] = "rows"  # plural, for the status bar and messages
    TABLE: ClassVar[str] = ""  # the engine table searched (its ordinal column is `ord`)
    COLUMNS: ClassVar[list[str]] = []
    FILTER_HELP: ClassVar[str] = ""
    FILTER_EXAMPLE: ClassVar[str] = ""
    INFO_LINES: ClassVar[int] = 3

    def __init__(self, session: Session, keymap: Keymap, *, filters: list[str] | None = None) -> None:
        super().__init__()
        self.session = session
        self.keymap = keymap
        self.filters: list[str] = list(filters or [])
        self.view: views.View | None = None
        self.search: Compiled | None = None
        self.search_text = ""
        self._request = 0
        self._job: Job | None = None
        self.is_loading = True
        self._then_say: tuple[str, bool] | None = None  # said once the next view is shown

    # -- what a subclass says ------------------------------------------------------------------------
    def source(self) -> Any:
        raise NotImplementedError

    def compile(self, text: str) -> Compiled:
        raise NotImplementedError

    def resolve(self, cur: Any, text: str) -> views.View:
        raise NotImplementedError

    def prepare(self) -> None:
        """Run in the loading worker before the first view, before it takes a cursor (the findings
        make their table current, which may open the case read-write for a moment)."""

    def info(self, row: dict[str, Any] | None) -> Text:
        return Text("")

    def value_source(self, row: dict[str, Any], column: str) -> str | None:
        """The table column a `+` / `-` on the focused column filters on."""
        return column

    def remember_filters(self, filters: list[str]) -> None:
        """Where the app keeps this view's filters between visits."""

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        name = self.TABLE or "rows"
        self.table = Timeline(self.session, source=self.source(), columns=list(self.COLUMNS), id=f"{name}-table")
        self.header_bar = TimelineHeader(self.table, id=f"{name}-header")
        yield self.header_bar
        yield self.table
        self.info_bar = Static("", id=f"{name}-info")
        self.info_bar.styles.height = self.INFO_LINES
        yield self.info_bar
        self.status = StatusBar(id="status")
        yield self.status

    def on_mount(self) -> None:
        self.table.focus()
        self.go(self.filters, first=True)

    def message(self, text: str, *, error: bool = False) -> None:
        self.status.set_message(text, error=error)

    # -- views -------------------------------------------------------------------------------------
    def go(self, filters: list[str], *, first: bool = False, then_say: tuple[str, bool] | None = None) -> None:
        self._then_say = then_say
        text = " ".join(filters)
        try:
            self.compile(text)
        except FilterError as exc:
            self.message(f"{exc}", error=True)
            return
        self._request += 1
        self.session.cancel(self._job)
        self.is_loading = True
        self._resolve_worker(self._request, list(filters), text, first)

    @work(thread=True, group="table-view-resolve", exit_on_error=False)
    def _resolve_worker(self, request: int, filters: list[str], text: str, first: bool) -> None:
        try:
            if first:
                self.prepare()
            with self.session.busy(self.NOUN) as (cur, job):
                self._job = job
                view = self.resolve(cur, text)
        except Exception as exc:  # a failed worker always reaches the status bar
            self.post_message(ViewResolved(request, filters, None, str(exc)))
            return
        self.post_message(ViewResolved(request, filters, view, None))

    @on(ViewResolved)
    def _resolved(self, message: ViewResolved) -> None:
        if message.request != self._request:
            return
        self.is_loading = False
        if message.view is None:
            self.message(f"{self.NOUN} failed: {message.error}", error=True)
            return
        self.filters = message.filters
        self.remember_filters(list(self.filters))
        self.view = message.view
        self.table.set_view(message.view, 0)
        self.status.update_view(title=self.NOUN, filters=" ".join(self.filters), enabled=True,
                                count=message.view.count, total=message.view.total, first=None, last=None)
        if self._then_say is not None:
            self.message(self._then_say[0], error=self._then_say[1])
            self._then_say = None
            return
        self.message("" if message.view.count else f"no {self.NOUN[:-1] if self.NOUN.endswith('s') else self.NOUN} "
                     "matches")

    def busy(self) -> bool:
        return self.is_loading or self.table.pending()

    @on(Timeline.LayoutChanged)
    def _layout_changed(self) -> None:
        self.header_bar.refresh()

    @on(Timeline.CursorMoved)
    def _cursor_moved(self, message: Timeline.CursorMoved) -> None:
        self.status.index = message.index
        self.status.refresh()
        self.info_bar.update(self.info(message.row))

    # -- keys ---------------------------------------------------------------------------------------
    def action_cursor_down(self) -> None:
        self.table.move_by(1)

    def action_cursor_up(self) -> None:
        self.table.move_by(-1)

    def action_page_down(self) -> None:
        self.table.page(1)

    def action_page_up(self) -> None:
        self.table.page(-1)

    def action_first(self) -> None:
        self.table.move_to(0)

    def action_last(self) -> None:
        self.table.move_to(self.table.count - 1)

    def action_column_left(self) -> None:
        self.table.move_column(-1)

    def action_column_right(self) -> None:
        self.table.move_column(1)

    def _validator(self) -> Any:
        from .prompt import filter_validator

        return filter_validator(self.session, self.compile)

    def action_filter(self) -> None:
        prompt = PromptScreen(f"filter {self.NOUN}  ({self.FILTER_HELP})", validate=self._validator(),
                              placeholder=self.FILTER_EXAMPLE)
        self.app.push_screen(prompt, self._filter_entered)

    def _filter_entered(self, text: str | None) -> None:
        if text:
            self.go([*self.filters, text])

    def action_drop_filter(self) -> None:
        if not self.filters:
            self.message("no filter to drop")
            return
        self.go(self.filters[:-1])

    def _value_term(self, negate: bool) -> None:
        from .timeline import value_term

        row, column = self.table.current_row(), self.table.focused_column_name()
        if row is None or column is None:
            self.message(f"no {self.NOUN[:-1]} under the cursor yet", error=True)
            return
        source = self.value_source(row, column)
        value = row.get(source) if source else None
        if isinstance(value, list):
            value = value[0] if value else None
        if source is None or value is None or value == "":
            self.message(f"{column} has no single value to filter on here", error=True)
            return
        if isinstance(value, bool):
            value = "yes" if value else "no"
        self.go([*self.filters, value_term(source, value, negate=negate)])

    def action_keep_value(self) -> None:
        self._value_term(False)

    def action_exclude_value(self) -> None:
        self._value_term(True)

    def action_search(self) -> None:
        prompt = PromptScreen(f"search {self.NOUN}  (jumps; n / N for next / previous)", initial=self.search_text,
                              validate=self._validator(), placeholder=self.FILTER_EXAMPLE)
        self.app.push_screen(prompt, self._search_entered)

    def _search_entered(self, text: str | None) -> None:
        if not text:
            return
        self.search_text, self.search = text, self.compile(text)
        self._find(self.table.cursor - 1, backwards=False)

    def action_next_match(self) -> None:
        if self.search is None:
            self.message("no search: / starts one")
            return
        self._find(self.table.cursor, backwards=False)

    def action_previous_match(self) -> None:
        if self.search is None:
            self.message("no search: / starts one")
            return
        self._find(self.table.cursor, backwards=True)

    def _find(self, here: int, *, backwards: bool) -> None:
        if self.view is None or self.search is None:
            return
        self._find_worker(self._request, self.view, self.search, here, backwards)

    @work(thread=True, group="table-view-search", exclusive=True, exit_on_error=False)
    def _find_worker(self, request: int, view: views.View, search: Compiled, here: int, backwards: bool) -> None:
        try:
            with self.session.busy("search") as (cur, _job):
                matches = [int(r[0]) for r in cur.execute(
                    f"SELECT ord FROM {self.TABLE} e WHERE {search.sql} ORDER BY ord", search.params).fetchall()]
        except Exception as exc:
            self.app.call_from_thread(self.message, f"search failed: {exc}", error=True)
            return
        import numpy as np

        found = views.find_in(view, views.View(search, view.total, np.asarray(matches, dtype=np.int64)), here,
                              backwards=backwards)
        self.app.call_from_thread(self._found, request, found)

    def _found(self, request: int, index: int | None) -> None:
        if request != self._request:
            return
        if index is None:
            self.message(f"no more {self.NOUN} match {self.search_text}")
            return
        self.message("")
        self.table.move_to(index, center=True)

    def action_cancel(self) -> None:
        self.session.cancel(self._job)
        if self.search is not None:
            self.search, self.search_text = None, ""
            self.message("search cleared")

    def action_back(self) -> None:
        self.session.cancel(self._job)
        self.app.pop_screen()

    def action_help(self) -> None:
        from .help import HelpScreen

        self.app.push_screen(HelpScreen(self.keymap))
