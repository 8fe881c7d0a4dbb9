"""The main screen: the timeline, the status bar, the side pane, and every timeline action.

The view is a stack of `ViewState`s: a preset, a filter, `+`/`-`, context or a histogram bucket
pushes the current state, `q` pops it (and quits at the first). A new state is resolved in a
thread worker (its own cursor, cancellable with Escape) while the old view stays on screen.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer

from engine import views
from engine.filters import Compiled, FilterError, parse_time

from ..keymap import Keymap, Preset
from ..safe_text import to_str
from ..session import Job, Session, filter_error_text
from ..widgets.columns import DEFAULT_COLUMNS, format_time, raw_value, short_host, source_column
from ..widgets.detail import DetailView
from ..widgets.status import StatusBar
from ..widgets.timeline import BLOCK, Timeline, TimelineHeader
from ..workers import ReportsWorkerFailures
from .base import keymap_bindings
from .prompt import ExportScreen, PromptScreen, filter_validator, time_validator

if TYPE_CHECKING:
    from ..app import AshiatoApp

SIDE_PANE_MIN_WIDTH = 160
SIDE_PANE_WIDTHS = (36, 64)  # the side pane's narrowest and widest
CONTEXT_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 360, 720, 1440]
SIDE_DELAY = 0.08
QUIT_CONFIRM_SECONDS = 4.0  # a second q at the first view within this quits


@dataclasses.dataclass
class ViewState:
    """What the timeline shows: ANDed filter texts, a title, the columns."""

    filters: list[str] = dataclasses.field(default_factory=list)
    title: str = ""
    title_filter: str | None = None  # the title holds while this filter is in the list
    columns: list[str] | None = None
    enabled: bool = True
    context: tuple[dict[str, Any], int] | None = None  # (anchor row, minutes)
    cursor_pos: int | None = None  # where the cursor was when this state was left

    def text(self) -> str:
        return " ".join(self.filters) if self.enabled else ""

    def shown_title(self) -> str:
        # Filters turned off show every event: a preset's title would name a view not shown.
        if self.title and self.enabled and (self.title_filter is None or self.title_filter in self.filters):
            return self.title
        return ""

    def copy(self, **changes: Any) -> ViewState:
        changes.setdefault("filters", list(self.filters))
        return dataclasses.replace(self, **changes)

    def with_term(self, term: str) -> ViewState:
        """This view narrowed by `term`: ANDed with the filters shown, or, while they are turned
        off (every event shown), in their place: a filter narrows what is on the screen."""
        if not self.enabled:
            return self.copy(filters=[term], enabled=True, title="", title_filter=None)
        return self.copy(filters=[*self.filters, term], enabled=True)


def quote_value(value: str) -> str:
    """A filter value in quotes. Backslashes are literal in the language and only \\" is a quote;
    a value ending in a backslash would swallow the closing quote, so its trailing backslashes
    become a wildcard (`C:\\Temp\\` → `"C:\\Temp*"`)."""
    if value.endswith("\\"):
        value = value.rstrip("\\") + "*"
    return '"' + value.replace('"', '\\"') + '"'


def value_term(column: str, value: Any, *, negate: bool = False) -> str:
    """`column:"value"` (or `-column:"value"`): numbers bare, text quoted and escaped."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = quote_value(to_str(value))
    return f"{'-' if negate else ''}{column}:{text}"


_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*$")


def parse_goto_time(text: str, around: datetime | None, local: bool) -> datetime:
    """A time typed by a responder → naive UTC. `09:30` means that time on the current row's day;
    without an offset the time is UTC, or local time while the timeline shows local time."""
    m = _CLOCK.match(text)
    if m:
        base = around or datetime.now(UTC).replace(tzinfo=None)
        if local:
            base = base.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)
        hour, minute = int(m.group(1)), int(m.group(2))
        second = int(m.group(3) or 0)
        micro = int((m.group(4) or "0").ljust(6, "0"))
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"not a time of day: {text.strip()}")
        when = base.replace(hour=hour, minute=minute, second=second, microsecond=micro)
    else:
        try:
            when = parse_time(text)
        except ValueError:
            raise ValueError(f"not a time: {text.strip()!r} (try 2024-03-12 09:30 or 09:30)") from None
        has_offset = bool(re.search(r"(Z|[+-]\d{2}:?\d{2})\s*$", text.strip(), re.IGNORECASE))
        if has_offset or not local:
            return when
    if local:
        return when.astimezone(UTC).replace(tzinfo=None)  # naive = local wall time
    return when


class ViewReady(Message):
    def __init__(self, request: int, state: ViewState, view: views.View, push: bool, index: int,
                 blocks: dict[int, list[dict[str, Any]]]) -> None:
        super().__init__()
        self.request, self.state, self.view = request, state, view
        self.push, self.index, self.blocks = push, index, blocks


class ViewGrown(Message):
    """A full-text filter looked at more events: its view, with the matches found so far."""

    def __init__(self, request: int, view: views.View, anchor: tuple[int | None, int, int],
                 blocks: dict[int, list[dict[str, Any]]]) -> None:
        super().__init__()
        self.request, self.view, self.anchor, self.blocks = request, view, anchor, blocks


class ViewFailed(Message):
    def __init__(self, request: int, error: str, cancelled: bool, *, partial: bool = False) -> None:
        super().__init__()
        self.request, self.error, self.cancelled = request, error, cancelled
        self.partial = partial  # a full-text filter stopped after showing some of its matches


class TimelineScreen(ReportsWorkerFailures, Screen[None]):
    BINDINGS = keymap_bindings("timeline")

    DEFAULT_CSS = """
    TimelineScreen #body { height: 1fr; }
    TimelineScreen #main { width: 1fr; }
    TimelineScreen #side { width: 64; border-left: solid $panel-lighten-2; display: none; }
    TimelineScreen #side.-visible { display: block; }
    """

    def __init__(self, session: Session, keymap: Keymap) -> None:
        super().__init__()
        self.session = session
        self.keymap = keymap
        self._bindings = self._bindings.copy()
        for preset in keymap.presets.values():
            for key in preset.keys:
                self._bindings.key_to_bindings.setdefault(key, []).append(
                    Binding(key, f"preset({preset.name!r})", preset.title, show=False,
                            id=f"preset.{preset.name}"))
        self.state = ViewState()
        self.stack: list[ViewState] = []
        self.view: views.View | None = None
        self._request = 0
        self._applied = 0
        self.time_range: tuple[Any, Any] = (None, None)
        self.search_text: str | None = None
        self.search: Compiled | None = None
        self.side_enabled = True
        self._stepped_back = False  # q has stepped back at least once: at the first view it asks
        self._quit_asked = float("-inf")
        self._side_timer: Timer | None = None
        self._side_eid: int | None = None
        self._side_serial = 0
        self._work_timer: Timer | None = None
        self._resolve_job: Job | None = None
        self.last_message = ""

    @property
    def ashiato(self) -> AshiatoApp:
        return self.app  # type: ignore[return-value]

    # -- layout ---------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        self.timeline = Timeline(self.session, id="timeline")
        self.header_bar = TimelineHeader(self.timeline, id="timeline-header")
        self.status = StatusBar(id="status")
        self.side = DetailView(show_cursor=False, id="side")
        self.side.can_focus = False
        with Horizontal(id="body"):
            with Vertical(id="main"):
                yield self.header_bar
                yield self.timeline
            yield self.side
        yield self.status

    def on_mount(self) -> None:
        self.timeline.focus()
        self.status.total = self.session.total
        self._update_side_visibility()
        self.go(ViewState(), push=False)
        self._work_timer = self.set_interval(0.1, self._tick_work, pause=False)
        self._count_findings()
        self._size_hosts()

    @work(thread=True, group="hosts", exit_on_error=False)
    def _size_hosts(self) -> None:
        """The host column as wide as the case's longest host name (as shown), not a fixed 15."""
        from ..widgets.columns import host_width

        try:
            with self.session.cursor() as cur:
                hosts = [r[0] for r in cur.execute("SELECT DISTINCT host FROM events LIMIT 10000").fetchall()]
        except Exception as exc:  # a failed worker always reaches the status bar
            self.app.call_from_thread(self.message, f"hosts: {exc}", error=True)
            return
        self.app.call_from_thread(self._hosts_sized, host_width(hosts))

    def _hosts_sized(self, width: int) -> None:
        self.timeline.prefs = {**self.timeline.prefs, "host": width}
        self.timeline.relayout()

    def on_resize(self) -> None:
        self._update_side_visibility()

    def _update_side_visibility(self) -> None:
        wide = self.app.size.width >= SIDE_PANE_MIN_WIDTH and self.side_enabled
        self.side.set_class(wide, "-visible")
        if wide:
            self._size_side()
            self._schedule_side()

    def _size_side(self) -> None:
        """The side pane takes what the table's columns leave at their preferred widths, between
        SIDE_PANE_WIDTHS: at 160 columns a preset's source IP reads whole beside it."""
        from ..widgets.columns import needed_width

        low, high = SIDE_PANE_WIDTHS
        left = self.app.size.width - needed_width(self.timeline.columns, self.timeline.prefs) - 1  # its border
        width = max(low, min(high, left))
        if self.side.styles.width is None or self.side.styles.width.value != width:
            self.side.styles.width = width

    @property
    def side_visible(self) -> bool:
        return self.side.has_class("-visible")

    # -- status ----------------------------------------------------------------------------------------------
    def message(self, text: str, *, error: bool = False) -> None:
        self.last_message = text
        self.status.set_message(text, error=error)

    def _tick_work(self) -> None:
        jobs = [(j.label, j.started, j.done) for j in self.session.jobs()]
        if jobs or self.status.work:
            self.status.work = jobs
            self.status.refresh()

    def _refresh_status(self) -> None:
        view = self.view
        self.status.update_view(title=self.state.shown_title(), filters=" ".join(self.state.filters),
                                enabled=self.state.enabled, count=view.count if view else 0,
                                total=self.session.total, first=self.time_range[0], last=self.time_range[1],
                                done=view.done if view else 1.0)

    # -- views -----------------------------------------------------------------------------------------------
    def go(self, state: ViewState, *, push: bool = True, anchor: int | None = None, keep_anchor: bool = True) -> bool:
        """Show `state` (resolved in a worker); the current view stays until it is ready."""
        text = state.text()
        try:
            self.session.compile(text)
        except FilterError as exc:
            self.message(filter_error_text(exc, text), error=True)
            return False
        if anchor is None and keep_anchor:
            row = self.timeline.current_row()
            anchor = int(row["pos"]) if row is not None and row.get("pos") is not None else None
        self._request += 1
        # A newer request cancels an older one still running (a full-text search may take a while).
        self.session.cancel(self._resolve_job)
        self._resolve(self._request, state, text, push, anchor)
        return True

    @work(thread=True, group="resolve", exit_on_error=False)
    def _resolve(self, request: int, state: ViewState, text: str, push: bool, anchor: int | None) -> None:
        """Resolve the filter and fetch the rows the new view opens on, in one worker.

        A full-text filter resolves in steps: the view opens after the first step and grows with
        each later one (ViewGrown) while the status bar shows how far the search has got."""
        label = "filtering" if text else "loading"
        height = self.timeline.size.height
        shown = False
        try:
            with self.session.busy(label) as (cur, job):
                self._resolve_job = job
                for view in self.session.resolve_steps(cur, text, job):
                    if shown:
                        # Fetch the rows the grown view will show, so they replace the old ones
                        # without a flash of placeholders.
                        anchor = self.timeline.anchor()
                        _index, top = Timeline.grown_placement(view, anchor)
                        grown = {block: views.window(cur, view, block * BLOCK, BLOCK)
                                 for block in Timeline.blocks_from(top, view.count, anchor[2])}
                        self.post_message(ViewGrown(request, view, anchor, grown))
                        continue
                    if not view.count and not view.complete:
                        continue  # nothing to show yet: keep the old view until there is
                    index = 0
                    if anchor is not None:
                        index = min(view.index_of_pos(anchor), max(0, view.count - 1))
                    blocks = {}
                    for block in Timeline.blocks_for(index, view.count, height):
                        blocks[block] = views.window(cur, view, block * BLOCK, BLOCK)
                    self.post_message(ViewReady(request, state, view, push, index, blocks))
                    shown = True
        except Exception as exc:
            cancelled = "Interrupt" in type(exc).__name__ or "Interrupted" in str(exc)
            self.post_message(ViewFailed(request, str(exc), cancelled, partial=shown))
            return
        if job.cancelled:
            self.post_message(ViewFailed(request, "cancelled", True, partial=shown))

    @on(ViewGrown)
    def _view_grown(self, message: ViewGrown) -> None:
        if message.request != self._applied or self.view is None:
            return
        self.view = message.view
        anchor = self.timeline.anchor()
        # Prefetched rows fit only if the cursor did not move since the worker looked.
        blocks = message.blocks if anchor == message.anchor else None
        self.timeline.update_view(message.view, anchor, blocks)
        if message.view.complete:
            self.time_range = (None, None)
            self._range_worker(message.request, message.view)
        self._refresh_status()
        self.message("" if message.view.count else "no event matches")

    @on(ViewReady)
    def _view_ready(self, message: ViewReady) -> None:
        if message.request < self._applied:
            return
        self._applied = message.request
        if message.push and self.view is not None:
            row = self.timeline.current_row()
            self.state.cursor_pos = int(row["pos"]) if row is not None else self.state.cursor_pos
            self.stack.append(self.state)
        self.state = message.state
        self.view = message.view
        self.time_range = self.session.cached_range(message.view)
        self.timeline.set_view(message.view, message.index, columns=self.state.columns or list(DEFAULT_COLUMNS),
                               blocks=message.blocks)
        self._refresh_status()
        self.message("" if message.view.count else "no event matches")
        if self.time_range == (None, None) and message.view.count and message.view.complete:
            self._range_worker(message.request, message.view)
        self.ashiato.view_changed()

    @work(thread=True, group="time-range", exit_on_error=False)
    def _range_worker(self, request: int, view: views.View) -> None:
        """The first and last time of a view, for the status bar (after the rows are shown)."""
        with self.session.cursor() as cur:
            first_last = self.session.time_range(cur, view)
        self.app.call_from_thread(self._range_ready, request, view, first_last)

    def _range_ready(self, request: int, view: views.View, first_last: tuple[Any, Any]) -> None:
        if view is self.view:
            self.time_range = first_last
            self._refresh_status()

    @on(ViewFailed)
    def _view_failed(self, message: ViewFailed) -> None:
        # The request is over, though it failed: nothing is loading any more.
        self._applied = max(self._applied, message.request)
        if message.request < self._request:
            return  # superseded by a newer filter, which cancelled it
        if message.cancelled and message.partial and self.view is not None:
            self.message(f"search stopped: showing the matches in the {self.view.done:.0%} searched")
        elif message.cancelled:
            self.message("cancelled")
        else:
            self.message(message.error, error=True)

    def busy(self) -> bool:
        """Anything still loading (tests and the bench wait for this to be False)."""
        return (self._applied < self._request or self.timeline.pending() or bool(self.session.jobs())
                or self._side_timer is not None)

    # -- timeline events ---------------------------------------------------------------------------------------
    @on(Timeline.CursorMoved)
    def _cursor_moved(self, message: Timeline.CursorMoved) -> None:
        self.status.index = message.index
        row = message.row
        eid = row.get("eid") if row else None
        self.status.tag = (self.session.marks.get(eid) or "") if eid in self.session.marks else None
        self.status.refresh()
        if self.side_visible:
            self._schedule_side()

    @on(Timeline.LayoutChanged)
    def _layout_changed(self) -> None:
        self.header_bar.refresh()
        if self.side_visible:
            self._size_side()  # the columns changed (a preset): what they need changed

    def _schedule_side(self) -> None:
        if self._side_timer is not None:
            self._side_timer.stop()
        self._side_timer = self.set_timer(SIDE_DELAY, self._load_side)

    def _load_side(self) -> None:
        self._side_timer = None
        row = self.timeline.current_row()
        if row is None:
            if not self.timeline.count:
                self.side.show(None, message="no event")
            return
        eid = int(row["eid"])
        if eid == self._side_eid and self.side.event is not None:
            return
        self._side_serial += 1
        self._fetch_side(self._side_serial, eid)

    @work(thread=True, group="side-detail", exclusive=True, exit_on_error=False)
    def _fetch_side(self, serial: int, eid: int) -> None:
        try:
            with self.session.cursor() as cur:
                d = self.session.detail(cur, eid)
        except Exception:
            d = None
        self.app.call_from_thread(self._show_side, serial, eid, d)

    def _show_side(self, serial: int, eid: int, d: dict[str, Any] | None) -> None:
        if serial != self._side_serial:
            return
        self._side_eid = eid
        self.side.local_time = self.timeline.local_time
        self.side.marked = eid in self.session.marks
        self.side.tag = self.session.marks.get(eid)
        self.side.show(d, message="event not found")

    # -- movement ---------------------------------------------------------------------------------------------
    def action_cursor_down(self) -> None:
        self.timeline.move_by(1)

    def action_cursor_up(self) -> None:
        self.timeline.move_by(-1)

    def action_page_down(self) -> None:
        self.timeline.page(1)

    def action_page_up(self) -> None:
        self.timeline.page(-1)

    def action_first(self) -> None:
        self.timeline.move_to(0)

    def action_last(self) -> None:
        self.timeline.move_to(self.timeline.count - 1)

    def action_column_left(self) -> None:
        self.timeline.move_column(-1)

    def action_column_right(self) -> None:
        self.timeline.move_column(1)

    # -- filters -----------------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        active = self.state.text()
        # What the new filter is combined with (the live count below is that of the result).
        if active:
            with_what = f"ANDed with: {active}"
        elif self.state.filters:
            with_what = "filters are off: this one replaces them"
        else:
            with_what = "field:value, -field:value, after:/before:, \"text\"; ↑/↓ history"
        prompt = PromptScreen(f"filter  ({with_what})",
                              history=self.ashiato.filter_history, live_filter=(self.session, active),
                              placeholder="eid:4625 user:alice")
        self.app.push_screen(prompt, self._filter_entered)

    def _filter_entered(self, text: str | None) -> None:
        if text:
            self.ashiato.remember_history()
            self.add_filter(text)

    def add_filter(self, term: str, *, title: str | None = None) -> None:
        state = self.state.with_term(term)
        if title:
            state.title, state.title_filter = title, term
        self.go(state)

    def _focused(self) -> tuple[dict[str, Any] | None, str | None]:
        return self.timeline.current_row(), self.timeline.focused_column_name()

    def _value_filter(self, negate: bool) -> None:
        row, column = self._focused()
        if row is None or column is None:
            self.message("no event under the cursor yet", error=True)
            return
        if column == "time":
            ts = row.get("ts")
            if ts is None:
                self.message("this event has no time", error=True)
                return
            self.add_filter(f"before:{ts.isoformat()}" if negate else f"after:{ts.isoformat()}")
            return
        source = source_column(row, column)
        if source is None:
            self.message(f"{column} is built from several fields: move to another column (h/l)", error=True)
            return
        value = row.get(source) if column not in ("user", "process") else raw_value(row, source)
        if value is None or value == "":
            self.message(f"{column} is empty here: nothing to filter on", error=True)
            return
        self.add_filter(value_term(source, value, negate=negate))

    def action_keep_value(self) -> None:
        self._value_filter(False)

    def action_exclude_value(self) -> None:
        self._value_filter(True)

    def action_drop_filter(self) -> None:
        if not self.state.filters:
            self.message("no filter to drop")
            return
        remaining = self.state.filters[:-1]
        if remaining:
            self.go(self.state.copy(filters=remaining, context=None), push=False)
        else:
            self.go(ViewState(), push=False)  # no filter left: every event, default columns

    def action_toggle_filters(self) -> None:
        if not self.state.filters:
            self.message("no filter to turn off")
            return
        self.go(self.state.copy(enabled=not self.state.enabled), push=False)

    def action_list_filters(self) -> None:
        from .filters import FilterListScreen

        if not self.state.filters:
            self.message("no active filter")
            return
        self.app.push_screen(FilterListScreen(list(self.state.filters)), self._filters_edited)

    def _filters_edited(self, filters: list[str] | None) -> None:
        if filters is not None and filters != self.state.filters:
            self.go(self.state.copy(filters=filters, context=None) if filters else ViewState())

    def action_preset(self, name: str) -> None:
        preset: Preset | None = self.keymap.presets.get(name)
        if preset is None:
            return
        self.apply_preset(preset)

    def apply_preset(self, preset: Preset) -> None:
        self.go(ViewState([preset.filter], preset.title, preset.filter, preset.columns))

    def apply_filter_text(self, text: str, title: str = "") -> None:
        """A new view of just this filter (from the command palette)."""
        self.go(ViewState([text], title, text if title else None))

    # -- search ------------------------------------------------------------------------------------------------
    def action_search(self) -> None:
        prompt = PromptScreen("search  (highlights and jumps; n / N for next / previous)",
                              initial=self.search_text or "", history=self.ashiato.search_history,
                              validate=filter_validator(self.session), placeholder="mimikatz")
        self.app.push_screen(prompt, self._search_entered)

    def _search_entered(self, text: str | None) -> None:
        if not text:
            return
        try:
            compiled = self.session.compile(text)
        except FilterError as exc:
            self.message(filter_error_text(exc, text), error=True)
            return
        self.search_text, self.search = text, compiled
        terms: list[str] = []
        for term in compiled.terms:
            if not term.negate:
                terms += [v.strip("*").lower() for v in term.values if v.strip("*") and not term.op.strip("=")]
        self.timeline.highlight_terms = [t for t in terms if "*" not in t]
        self.timeline.refresh()
        self._find(self.timeline.cursor - 1, backwards=False)

    def action_next_match(self) -> None:
        if self.search is None:
            self.message("no search: / starts one")
            return
        self._find(self.timeline.cursor, backwards=False)

    def action_previous_match(self) -> None:
        if self.search is None:
            self.message("no search: / starts one")
            return
        self._find(self.timeline.cursor, backwards=True)

    def _find(self, from_index: int, *, backwards: bool) -> None:
        if self.view is None or self.search is None:
            return
        self._find_worker(self._applied, self.view, self.search, self.search_text or "", from_index, backwards)

    @work(thread=True, group="search", exclusive=True, exit_on_error=False)
    def _find_worker(self, request: int, view: views.View, search: Compiled, search_text: str,
                     from_index: int, backwards: bool) -> None:
        try:
            with self.session.busy("searching") as (cur, job):
                if search.reads_documents:
                    # Resolved once (in steps, with progress) and cached: n / N are then lookups.
                    last = deque(self.session.resolve_steps(cur, search_text, job), maxlen=1)
                    if job.cancelled or not last:
                        return
                    found = views.find_in(view, last[0], from_index, backwards=backwards)
                else:
                    found = views.find(cur, view, search, from_index, backwards=backwards)
        except Exception as exc:
            self.app.call_from_thread(self.message, "search cancelled" if "nterrupt" in str(exc) else str(exc),
                                      error=True)
            return
        self.app.call_from_thread(self._found, request, None if found is None else view.pos_at(found), backwards)

    def _found(self, request: int, pos: int | None, backwards: bool) -> None:
        if request != self._applied:
            return
        if pos is None:
            self.message(f"no {'earlier' if backwards else 'later'} match for {self.search_text}")
            return
        self.message(f"match: {self.search_text}")
        self._move_to_pos(pos)

    def _move_to_pos(self, pos: int) -> None:
        """Put the cursor on the event at `pos`, found by a worker in the view of the request still
        shown: taken as a position, not an index, because a full-text view may have grown since."""
        if self.view is not None and self.view.count:
            self.timeline.move_to(min(self.view.index_of_pos(pos), self.view.count - 1), center=True)

    def action_cancel(self) -> None:
        cancelled = self.session.cancel_all(owner=self, unowned=True)
        if cancelled:
            self.message("cancelling…")
            return
        if self.search is not None:
            self.search = None
            self.search_text = None
            self.timeline.highlight_terms = []
            self.timeline.refresh()
            self.message("search cleared")

    # -- time ---------------------------------------------------------------------------------------------------
    def action_goto_time(self) -> None:
        zone = "local time" if self.timeline.local_time else "UTC"
        prompt = PromptScreen(f"go to time ({zone}): 2024-03-12 09:30, or 09:30 on the current day",
                              validate=time_validator, placeholder="09:30")
        self.app.push_screen(prompt, self._time_entered)

    def _time_entered(self, text: str | None) -> None:
        if not text or self.view is None:
            return
        row = self.timeline.current_row()
        try:
            when = parse_goto_time(text, row.get("ts") if row else self.time_range[0], self.timeline.local_time)
        except ValueError as exc:
            self.message(str(exc), error=True)
            return
        self._goto_worker(self._applied, self.view, when)

    @work(thread=True, group="goto", exclusive=True, exit_on_error=False)
    def _goto_worker(self, request: int, view: views.View, when: datetime) -> None:
        with self.session.busy("seeking") as (cur, _job):
            index = views.index_at_time(cur, view, when)
        pos = view.pos_at(index) if view.count else None
        self.app.call_from_thread(self._goto_done, request, pos, when)

    def _goto_done(self, request: int, pos: int | None, when: datetime) -> None:
        if request == self._applied and pos is not None:
            self._move_to_pos(pos)
            self.message(f"at {format_time(when, self.timeline.local_time)}")

    def action_toggle_local_time(self) -> None:
        self.timeline.local_time = not self.timeline.local_time
        self.status.local_time = self.timeline.local_time
        self.status.refresh()
        self.side.local_time = self.timeline.local_time
        self.side._rebuild()
        self.message("local time" if self.timeline.local_time else "UTC")

    # -- context ------------------------------------------------------------------------------------------------
    def action_context(self) -> None:
        row = self.timeline.current_row()
        if row is None or row.get("ts") is None:
            self.message("no event with a time under the cursor", error=True)
            return
        self._go_context(row, 5, push=True)

    def _go_context(self, row: dict[str, Any], minutes: int, *, push: bool) -> None:
        text = views.context_filter(row, minutes)
        anchor_row = {"ts": row["ts"], "host": row.get("host"), "pos": row.get("pos")}
        title = f"context ±{minutes} min around {short_host(row.get('host'))} {format_time(row['ts'], False)}"
        state = ViewState([text], title, text, None, True, (anchor_row, minutes))
        current = self.timeline.current_row()
        anchor = int(current["pos"]) if (current is not None and not push) else row.get("pos")
        self.go(state, push=push, anchor=anchor)

    def _context_step(self, direction: int) -> None:
        if self.state.context is None:
            self.message("not in a context view: c opens one", error=True)
            return
        row, minutes = self.state.context
        steps = CONTEXT_STEPS
        i = min(range(len(steps)), key=lambda k: abs(steps[k] - minutes))
        i = max(0, min(len(steps) - 1, i + direction))
        if steps[i] == minutes:
            self.message(f"context is already ±{minutes} min")
            return
        self._go_context(row, steps[i], push=False)

    def action_context_narrower(self) -> None:
        self._context_step(-1)

    def action_context_wider(self) -> None:
        self._context_step(1)

    def action_back(self) -> None:
        if not self.stack:
            # Stepping back view by view, one q too many would quit: after a step back, q at the
            # first view asks once (a second q within a few seconds quits; Ctrl-Q at once).
            import time

            if self._stepped_back and time.monotonic() - self._quit_asked > QUIT_CONFIRM_SECONDS:
                self._quit_asked = time.monotonic()
                key = self.keymap.display("timeline", "back")
                self.message(f"this is the first view: {key} again quits (Ctrl-Q quits at once)")
                return
            self.app.exit()
            return
        self._stepped_back = True
        previous = self.stack.pop()
        self.go(previous, push=False, anchor=previous.cursor_pos, keep_anchor=False)

    # -- histogram and frequency -------------------------------------------------------------------------------
    def action_histogram(self) -> None:
        from .histogram import HistogramScreen

        if self.view is None:
            return
        self.app.push_screen(HistogramScreen(self.session, self.view, self.timeline.local_time), self._bucket_chosen)

    def _bucket_chosen(self, bucket: tuple[datetime, datetime] | None) -> None:
        if bucket is None:
            return
        start, end = bucket
        term = f"after:{start.isoformat()} before:{end.isoformat()}"
        self.go(self.state.with_term(term), anchor=None, keep_anchor=False)

    def action_frequency(self) -> None:
        from .frequency import FrequencyScreen

        row, column = self._focused()
        if self.view is None or column is None:
            return
        if column == "time":
            self.message("time: i shows the histogram", error=True)
            return
        source = source_column(row, column)
        if source is None:
            self.message(f"{column} is built from several fields: move to another column (h/l)", error=True)
            return
        self.app.push_screen(FrequencyScreen(self.session, self.view, source), self._frequency_chosen)

    def _frequency_chosen(self, choice: tuple[str, str, Any, bool] | None) -> None:
        if choice is None:
            return
        _kind, column, value, negate = choice
        self.add_filter(value_term(column, value, negate=negate))

    # -- marks, tags, export ------------------------------------------------------------------------------------
    def action_mark(self) -> None:
        row = self.timeline.current_row()
        if row is None:
            return
        self._mark_worker(int(row["eid"]))

    @work(thread=True, group="marks", exit_on_error=False)
    def _mark_worker(self, eid: int) -> None:
        with self.session.cursor() as cur:
            marked = views.toggle_mark(cur, eid)
        self.app.call_from_thread(self._marked, eid, marked)

    def _marked(self, eid: int, marked: bool) -> None:
        if marked:
            self.session.marks[eid] = None
        else:
            self.session.marks.pop(eid, None)
        self.timeline.marks_changed()
        self.message("marked" if marked else "unmarked")
        self.timeline.post_message(Timeline.CursorMoved(self.timeline.cursor, self.timeline.current_row()))

    def action_next_mark(self) -> None:
        self._goto_mark(1)

    def action_previous_mark(self) -> None:
        self._goto_mark(-1)

    def _goto_mark(self, direction: int) -> None:
        if not self.session.marks:
            self.message("no marked event (m marks one)")
            return
        if self.view is None:
            return
        row = self.timeline.current_row()
        here = int(row["pos"]) if row is not None else self.view.pos_at(self.timeline.cursor)
        self._mark_nav_worker(self._applied, self.view, here, direction)

    @work(thread=True, group="marks-nav", exclusive=True, exit_on_error=False)
    def _mark_nav_worker(self, request: int, view: views.View, here: int, direction: int) -> None:
        with self.session.cursor() as cur:
            positions = views.marked_positions(cur)
        candidates = positions[positions > here] if direction > 0 else positions[positions < here][::-1]
        found = None
        for pos in candidates[:100_000]:
            index = view.index_of_pos(int(pos))
            if index < view.count and view.pos_at(index) == int(pos):
                found = int(pos)
                break
        self.app.call_from_thread(self._mark_found, request, found, direction)

    def _mark_found(self, request: int, pos: int | None, direction: int) -> None:
        if request != self._applied:
            return
        if pos is None:
            self.message(f"no {'later' if direction > 0 else 'earlier'} marked event in this view")
            return
        self.message("")  # an earlier "no later marked event" no longer holds
        self._move_to_pos(pos)

    def action_tag(self) -> None:
        row = self.timeline.current_row()
        if row is None:
            return
        eid = int(row["eid"])
        prompt = PromptScreen("tag this event (free text; stored in the case)",
                              initial=self.session.marks.get(eid) or "", placeholder="lateral movement")
        self.app.push_screen(prompt, lambda text: self._tag_entered(eid, text))

    def _tag_entered(self, eid: int, text: str | None) -> None:
        if text is None:
            return
        self._tag_worker(eid, text)

    @work(thread=True, group="marks", exit_on_error=False)
    def _tag_worker(self, eid: int, text: str) -> None:
        with self.session.cursor() as cur:
            views.set_tag(cur, eid, text)
        self.app.call_from_thread(self._tagged, eid, text)

    def _tagged(self, eid: int, text: str) -> None:
        self.session.marks[eid] = text or None
        self.timeline.marks_changed()
        self.message(f"tagged: {text}" if text else "marked")
        self.timeline.post_message(Timeline.CursorMoved(self.timeline.cursor, self.timeline.current_row()))

    def action_export(self) -> None:
        count = self.view.count if self.view else 0
        self.app.push_screen(ExportScreen(view_rows=count, marked_rows=len(self.session.marks)), self._export_chosen)

    def _export_chosen(self, choice: tuple[str, str, bool] | None) -> None:
        if choice is None:
            return
        path, fmt, marked = choice
        self._export_worker("" if marked else self.state.text(), path, fmt, marked)

    @work(thread=True, group="export", exit_on_error=False)
    def _export_worker(self, text: str, path: str, fmt: str, marked: bool) -> None:
        try:
            with self.session.busy("exporting") as (cur, _job):
                rows = views.export(cur, text, path, fmt, marked_only=marked)
        except Exception as exc:
            self.app.call_from_thread(self.message, f"export failed: {exc}", error=True)
            return
        self.app.call_from_thread(self.message, f"exported {rows:,} events to {path}")

    # -- detail, copy, side pane ------------------------------------------------------------------------------
    def action_detail(self) -> None:
        from .detail import DetailScreen

        row = self.timeline.current_row()
        if row is None:
            return
        self.app.push_screen(DetailScreen(self.session, self.timeline, int(row["eid"])))

    def action_copy_value(self) -> None:
        row, column = self._focused()
        if row is None or column is None:
            return
        source = source_column(row, column) or column
        value = raw_value(row, "time" if column == "time" else source)
        if column == "summary":
            value = row.get("summary")
        text = value.isoformat(sep=" ") if isinstance(value, datetime) else to_str(value)
        self.app.copy_to_clipboard(text)
        self.message(f"copied {column} ({len(text):,} characters)")

    def action_toggle_side_pane(self) -> None:
        self.side_enabled = not self.side_enabled
        self._update_side_visibility()
        if self.app.size.width < SIDE_PANE_MIN_WIDTH:
            self.message(f"the side pane needs a terminal at least {SIDE_PANE_MIN_WIDTH} columns wide")
        else:
            self.message("side pane on" if self.side_enabled else "side pane off")

    # -- help, palette, saved filters ---------------------------------------------------------------------------
    def action_help(self) -> None:
        from .help import HelpScreen

        self.app.push_screen(HelpScreen(self.keymap))

    def action_sessions(self) -> None:
        self.ashiato.show_sessions()

    def action_failed_logons(self) -> None:
        self.ashiato.show_failed_logons()

    def action_findings(self) -> None:
        self.ashiato.show_findings()

    @work(thread=True, group="findings-count", exit_on_error=False)
    def _count_findings(self) -> None:
        from engine import findings

        try:
            with self.session.cursor() as cur:
                counts = findings.counts(cur)
        except Exception as exc:  # a failed worker always reaches the status bar
            self.app.call_from_thread(self.message, f"findings: {exc}", error=True)
            return
        self.app.call_from_thread(self._findings_counted, counts)

    def _findings_counted(self, counts: tuple[int, int] | None) -> None:
        self.status.findings = counts
        self.status.refresh()

    def action_tree(self) -> None:
        row = self.timeline.current_row()
        if row is not None:
            self.ashiato.show_tree_of_event(int(row["eid"]))

    def action_command_palette(self) -> None:
        self.ashiato.ensure_catalog()
        self.app.action_command_palette()

    def action_save_filter(self) -> None:
        if not self.state.filters:
            self.message("no filter to save")
            return
        prompt = PromptScreen(f"save filter as (name): {' '.join(self.state.filters)}",
                              initial=self.state.shown_title(), placeholder="spray from kali")
        self.app.push_screen(prompt, self._save_named)

    def _save_named(self, name: str | None) -> None:
        if name:
            self._save_worker(name, " ".join(self.state.filters))

    @work(thread=True, group="marks", exit_on_error=False)
    def _save_worker(self, name: str, text: str) -> None:
        try:
            with self.session.cursor() as cur:
                views.save_filter(cur, name, text)
        except Exception as exc:
            self.app.call_from_thread(self.message, f"filter {name} not saved: {exc}")
            return
        self.app.call_from_thread(self._saved, name, text)

    def _saved(self, name: str, text: str) -> None:
        self.session.saved_filters = [(n, f) for n, f in self.session.saved_filters if n != name]
        self.session.saved_filters.append((name, text))
        self.session.saved_filters.sort()
        self.message(f"saved filter {name}")
