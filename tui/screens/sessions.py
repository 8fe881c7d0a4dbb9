"""The sessions view: one row per logon session, newest activity first, on the timeline's widget.

The same line-API table as the timeline (`Timeline` with `SessionRows`), the same column layout
by priority, status bar, prompts and keymap section. `Enter` shows every event of the session in
the timeline as a `session:` filter; `L` opens the failed logons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work

from engine import sessions, views
from engine.filters import Compiled

from ..safe_text import escape, fit
from ..session import Session
from ..widgets.columns import SESSION_COLUMNS
from ..widgets.rows import SessionRows, duration_text
from .base import keymap_bindings
from .table_view import TableViewScreen

if TYPE_CHECKING:
    from ..keymap import Keymap


def session_filter_text(row: dict[str, Any]) -> str:
    from .timeline import value_term

    # Quoted: a host name may hold a space, a comma or a quote.
    return value_term("session", sessions.key_of(row).text())


def session_title(row: dict[str, Any]) -> str:
    user = row.get("user") or "?"
    return f"session {user} type {row.get('logon_type')} on {row.get('host')} (0x{int(row['logon_id']):x})"


class SessionsScreen(TableViewScreen):
    BINDINGS = keymap_bindings("sessions")
    DEFAULT_CSS = """
    SessionsScreen #sessions-info { height: 3; background: $panel; padding: 0 1; }
    """
    NOUN = "sessions"
    TABLE = "sessions"
    COLUMNS = SESSION_COLUMNS
    FILTER_HELP = "user: host: type:3,10 ip: privileged:yes flag:ntlm after: …"
    FILTER_EXAMPLE = "type:10 privileged:yes"

    def __init__(self, session: Session, keymap: Keymap, *, filters: list[str] | None = None) -> None:
        super().__init__(session, keymap, filters=filters)
        self.marks: set[int] = set()

    def source(self) -> SessionRows:
        return SessionRows(self.marks)

    def compile(self, text: str) -> Compiled:
        return sessions.compile_session_filter(text)

    def resolve(self, cur: Any, text: str) -> views.View:
        return sessions.resolve(cur, text)  # type: ignore[no-any-return]

    def remember_filters(self, filters: list[str]) -> None:
        if hasattr(self.app, "sessions_filters"):
            self.app.sessions_filters = filters

    def on_mount(self) -> None:
        super().on_mount()
        self._load_marks()

    def value_source(self, row: dict[str, Any], column: str) -> str | None:
        return {"account": "user", "type": "logon_type", "source": "src_ip" if row.get("src_ip") else "workstation",
                "priv": "privileged", "lasted": None, "flags": "flags", "start": None}.get(column, column)

    def info(self, row: dict[str, Any] | None) -> Text:
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
        self.go([*self.filters, value_term(column, value, negate=negate)])

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
