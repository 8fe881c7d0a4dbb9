"""The sessions view: one row per logon session, newest activity first, on the timeline's widget.

The same line-API table as the timeline (`Timeline` with `SessionRows`), the same column layout
by priority, status bar, prompts and keymap section. `Enter` shows every event of the session in
the timeline as a `session:` filter; `L` opens the failed logons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from engine import sessions, views
from engine.filters import Compiled, FilterError

from ..safe_text import escape, fit
from ..session import Job, Session
from ..widgets.columns import SESSION_COLUMNS
from ..widgets.rows import SessionRows, duration_text
from ..widgets.status import StatusBar
from ..widgets.timeline import Timeline, TimelineHeader
from .base import keymap_bindings
from .prompt import PromptScreen

if TYPE_CHECKING:
    from ..keymap import Keymap


def session_filter_text(row: dict[str, Any]) -> str:
    from .timeline import value_term

    # Quoted: a host name may hold a space, a comma or a quote.
    return value_term("session", sessions.key_of(row).text())


def session_title(row: dict[str, Any]) -> str:
    user = row.get("user") or "?"
    return f"session {user} type {row.get('logon_type')} on {row.get('host')} (0x{int(row['logon_id']):x})"


class SessionsResolved(Message):
    def __init__(self, request: int, filters: list[str], view: views.View | None, error: str | None) -> None:
        super().__init__()
        self.request = request
        self.filters = filters
        self.view = view
        self.error = error


class SessionsScreen(Screen[None]):
    BINDINGS = keymap_bindings("sessions")
    DEFAULT_CSS = """
    SessionsScreen #sessions-info { height: 3; background: $panel; padding: 0 1; }
    """

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
        self.marks: set[int] = set()

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        self.table = Timeline(self.session, source=SessionRows(self.marks), columns=SESSION_COLUMNS,
                              id="sessions-table")
        self.header_bar = TimelineHeader(self.table, id="sessions-header")
        yield self.header_bar
        yield self.table
        self.info = Static("", id="sessions-info")
        yield self.info
        self.status = StatusBar(id="status")
        yield self.status

    def on_mount(self) -> None:
        self.table.focus()
        self._load_marks()
        self._go(self.filters)

    def message(self, text: str, *, error: bool = False) -> None:
        self.status.set_message(text, error=error)

    # -- views -------------------------------------------------------------------------------------
    def _compile(self, text: str) -> Compiled:
        return sessions.compile_session_filter(text)

    def _go(self, filters: list[str]) -> None:
        text = " ".join(filters)
        try:
            self._compile(text)
        except FilterError as exc:
            self.message(f"{exc}", error=True)
            return
        self._request += 1
        self.session.cancel(self._job)
        self.is_loading = True
        self._resolve(self._request, list(filters), text)

    @work(thread=True, group="sessions-resolve", exit_on_error=False)
    def _resolve(self, request: int, filters: list[str], text: str) -> None:
        try:
            with self.session.busy("sessions") as (cur, job):
                self._job = job
                view = sessions.resolve(cur, text)
        except Exception as exc:  # a failed worker always reaches the status bar
            self.post_message(SessionsResolved(request, filters, None, str(exc)))
            return
        self.post_message(SessionsResolved(request, filters, view, None))

    @on(SessionsResolved)
    def _resolved(self, message: SessionsResolved) -> None:
        if message.request != self._request:
            return
        self.is_loading = False
        if message.view is None:
            self.message(f"sessions failed: {message.error}", error=True)
            return
        self.filters = message.filters
        if hasattr(self.app, "sessions_filters"):
            self.app.sessions_filters = list(self.filters)
        self.view = message.view
        self.table.set_view(message.view, 0)
        self.status.update_view(title="sessions", filters=" ".join(self.filters), enabled=True,
                                count=message.view.count, total=message.view.total, first=None, last=None)
        self.message("" if message.view.count else "no session matches")

    def busy(self) -> bool:
        return self.is_loading or self.table.pending()

    @on(Timeline.LayoutChanged)
    def _layout_changed(self) -> None:
        self.header_bar.refresh()

    @on(Timeline.CursorMoved)
    def _cursor_moved(self, message: Timeline.CursorMoved) -> None:
        self.status.index = message.index
        self.status.refresh()
        self.info.update(self._info(message.row))

    def _info(self, row: dict[str, Any] | None) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        if row is None:
            return out
        width = max(20, self.app.size.width - 2)
        key = sessions.key_of(row)
        ids = f"0x{key.logon_id:x}" + (f" + linked 0x{int(row['linked_logon_id']):x}" if row.get("linked_logon_id") else "")
        end = row.get("end")
        span = (f"{row['start']:%Y-%m-%d %H:%M:%S} → "
                + (f"{end:%Y-%m-%d %H:%M:%S} ({row['end_reason']}, {duration_text(row.get('duration_s'))})"
                   if end else "open at end of log"))
        first = (f"{escape(row.get('host'))} boot {key.boot} · {ids} · {span} · {row.get('events', 0)} events, "
                 f"{row.get('processes', 0)} processes")
        out.append(fit(first, width) + "\n")
        sensitive = row.get("sensitive_privileges") or []
        how = " ".join(escape(x) for x in (row.get("auth_package"), row.get("lm_package"), row.get("logon_process"))
                       if x)
        second = (f"{how or 'no package logged'}"
                  + (f" · key length {row['key_length']}" if row.get("key_length") is not None else "")
                  + (" · elevated" if row.get("elevated_token") else "")
                  + (f" · privileged: {escape(' '.join(sensitive))}" if sensitive else
                     " · privileged" if row.get("privileged") else "")
                  + (f" · RDP from {escape(' '.join(row['rdp_clients']))}" if row.get("rdp_clients") else "")
                  + (f" ({row['rdp_by_logon_id']} RDP events by LogonId, {row['rdp_by_account_time']} by account "
                     f"and time)" if row.get("rdp_by_logon_id") or row.get("rdp_by_account_time") else ""))
        out.append(fit(second, width) + "\n")
        reasons = row.get("reasons") or []
        out.append(fit(escape("; ".join(reasons)) if reasons else "no flags", width),
                   style="bold" if reasons else "dim")
        return out

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

        return filter_validator(self.session, self._compile)

    def action_filter(self) -> None:
        prompt = PromptScreen("filter sessions  (user: host: type:3,10 ip: privileged:yes flag:ntlm after: …)",
                              validate=self._validator(), placeholder="type:10 privileged:yes")
        self.app.push_screen(prompt, self._filter_entered)

    def _filter_entered(self, text: str | None) -> None:
        if text:
            self._go([*self.filters, text])

    def action_drop_filter(self) -> None:
        if not self.filters:
            self.message("no filter to drop")
            return
        self._go(self.filters[:-1])

    def _value_term(self, negate: bool) -> None:
        from .timeline import value_term

        row, column = self.table.current_row(), self.table.focused_column_name()
        if row is None or column is None:
            self.message("no session under the cursor yet", error=True)
            return
        source = {"account": "user", "type": "logon_type", "source": "src_ip" if row.get("src_ip") else "workstation",
                  "priv": "privileged", "lasted": None, "flags": "flags", "start": None}.get(column, column)
        value = row.get(source) if source else None
        if isinstance(value, list):
            value = value[0] if value else None
        if source is None or value is None or value == "":
            self.message(f"{column} has no single value to filter on here", error=True)
            return
        if isinstance(value, bool):
            value = "yes" if value else "no"
        self._go([*self.filters, value_term(source, value, negate=negate)])

    def action_keep_value(self) -> None:
        self._value_term(False)

    def action_exclude_value(self) -> None:
        self._value_term(True)

    def action_search(self) -> None:
        prompt = PromptScreen("search sessions  (jumps; n / N for next / previous)", initial=self.search_text,
                              validate=self._validator(), placeholder="user:alice")
        self.app.push_screen(prompt, self._search_entered)

    def _search_entered(self, text: str | None) -> None:
        if not text:
            return
        self.search_text, self.search = text, self._compile(text)
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

    @work(thread=True, group="sessions-search", exclusive=True, exit_on_error=False)
    def _find_worker(self, request: int, view: views.View, search: Compiled, here: int, backwards: bool) -> None:
        try:
            with self.session.busy("search") as (cur, _job):
                matches = [int(r[0]) for r in cur.execute(
                    f"SELECT ord FROM sessions e WHERE {search.sql} ORDER BY ord", search.params).fetchall()]
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
            self.message(f"no more sessions match {self.search_text}")
            return
        self.message("")
        self.table.move_to(index, center=True)

    def action_cancel(self) -> None:
        self.session.cancel(self._job)
        if self.search is not None:
            self.search, self.search_text = None, ""
            self.message("search cleared")

    def action_frequency(self) -> None:
        from .frequency import FrequencyScreen

        column = self.table.focused_column_name()
        source = {"account": "user", "type": "logon_type", "source": "src_ip", "priv": "privileged",
                  "lasted": None, "start": None}.get(column or "", column)
        if self.view is None or source is None or source not in sessions.SESSION_TYPES:
            self.message(f"no frequency for {column}: move to another column (h/l)", error=True)
            return
        self.app.push_screen(FrequencyScreen(self.session, self.view, source, counter=sessions.frequency,
                                             noun="sessions"), self._frequency_chosen)

    def _frequency_chosen(self, choice: tuple[str, str, Any, bool] | None) -> None:
        from .timeline import value_term

        if choice is None:
            return
        _kind, column, value, negate = choice
        if isinstance(value, bool):
            value = "yes" if value else "no"
        self._go([*self.filters, value_term(column, value, negate=negate)])

    # -- marks and export ----------------------------------------------------------------------------
    @work(thread=True, group="session-marks", exit_on_error=False)
    def _load_marks(self) -> None:
        try:
            with self.session.cursor() as cur:
                found = sessions.marked(cur)
        except Exception as exc:
            self.app.call_from_thread(self.message, f"session marks: {exc}", error=True)
            return
        self.app.call_from_thread(self._marks_loaded, found)

    def _marks_loaded(self, found: set[int]) -> None:
        self.marks |= found
        self.table.marks_changed()

    def action_mark(self) -> None:
        row = self.table.current_row()
        if row is None:
            return
        self._mark_worker(int(row["first_eid"]), sessions.key_of(row).text())

    @work(thread=True, group="session-marks", exit_on_error=False)
    def _mark_worker(self, first_eid: int, key: str) -> None:
        try:
            with self.session.cursor() as cur:
                marked = sessions.toggle_mark(cur, first_eid)
        except Exception as exc:
            self.app.call_from_thread(self.message, f"mark failed: {exc}", error=True)
            return
        self.app.call_from_thread(self._marked, first_eid, key, marked)

    def _marked(self, first_eid: int, key: str, marked: bool) -> None:
        (self.marks.add if marked else self.marks.discard)(first_eid)
        self.table.marks_changed()
        self.message(f"marked {escape(key)}" if marked else f"unmarked {escape(key)}")

    def action_export(self) -> None:
        from .prompt import ExportScreen

        count = self.view.count if self.view is not None else 0
        self.app.push_screen(ExportScreen(view_rows=count, marked_rows=len(self.marks),
                                          default_path="ashiato-sessions.jsonl"), self._export_chosen)

    def _export_chosen(self, choice: tuple[str, str, bool] | None) -> None:
        if choice is None:
            return
        path, fmt, marked = choice
        if fmt not in sessions.EXPORT_FORMATS:
            self.message(f"sessions export as {', '.join(sessions.EXPORT_FORMATS)}", error=True)
            return
        self._export_worker(" ".join(self.filters), path, fmt, marked)

    @work(thread=True, group="sessions-export", exit_on_error=False)
    def _export_worker(self, text: str, path: str, fmt: str, marked: bool) -> None:
        try:
            with self.session.cursor() as cur:
                n = sessions.export(cur, text, path, fmt, marked_only=marked)
        except Exception as exc:
            self.app.call_from_thread(self.message, f"export failed: {exc}", error=True)
            return
        self.app.call_from_thread(self.message, f"{n:,} sessions written to {path}")

    # -- leaving ------------------------------------------------------------------------------------
    def action_open(self) -> None:
        row = self.table.current_row()
        if row is None:
            self.message("no session under the cursor yet", error=True)
            return
        self.app.pop_screen()
        self.app.show_events(session_filter_text(row), session_title(row))  # type: ignore[attr-defined]

    def action_failed_logons(self) -> None:
        self.app.show_failed_logons()  # type: ignore[attr-defined]

    def action_tree(self) -> None:
        row = self.table.current_row()
        if row is None:
            self.message("no session under the cursor yet", error=True)
            return
        self._tree_of(str(row["host"]), int(row["boot"]), [int(row["logon_id"]), row.get("linked_logon_id")])

    @work(thread=True, group="sessions-tree", exclusive=True, exit_on_error=False)
    def _tree_of(self, host: str, boot: int, ids: list[Any]) -> None:
        from engine import lineage

        try:
            with self.session.busy("session processes") as (cur, _job):
                node = lineage.first_of_session(cur, host, boot, [int(i) for i in ids if i])
        except Exception as exc:
            self.app.call_from_thread(self.message, f"process tree failed: {exc}", error=True)
            return
        if node is None:
            self.app.call_from_thread(self.message, "this session started no process the logs show", error=True)
        else:
            self.app.call_from_thread(self.app.show_tree, node)  # type: ignore[attr-defined]

    def action_back(self) -> None:
        self.session.cancel(self._job)
        self.app.pop_screen()

    def action_help(self) -> None:
        from .help import HelpScreen

        self.app.push_screen(HelpScreen(self.keymap))
