"""One process: what it was (command line, user, integrity and elevation, hashes, start and end),
how its parent link was made, its ancestry in one line, and its first events."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from engine import lineage, views

from .. import tree_text
from ..safe_text import escape, escape_lines
from ..session import Session
from ..widgets.columns import short_channel
from ..workers import ReportsWorkerFailures
from .base import keymap_bindings

EVENTS_SHOWN = 200
_EDGES = {"guid": "by ProcessGuid (Sysmon ParentProcessGuid): certain",
          "merged": "by ProcessGuid; this process was logged by Sysmon 1 and 4688 alike (one node)",
          "pid+time": "by PID and time (4688): the latest process with that PID on this host and boot "
                      "that started before it and had not exited",
          "unresolved": "none: the parent is not in the log"}


def describe(row: dict[str, Any], ancestry: str) -> Text:
    text = Text()

    def line(name: str, value: Any, style: str | None = None) -> None:
        if value is None or value == "" or value == []:
            return
        shown = escape_lines(value if not isinstance(value, list) else "; ".join(map(str, value)))
        text.append(f"{name:>17}  ", style="dim")
        text.append(shown[0] if shown else "", style=style)
        for more in shown[1:]:
            text.append("\n" + " " * 19 + more, style=style)
        text.append("\n")

    line("image", row.get("image"), "bold")
    line("command line", row.get("command_line"))
    line("pid", f"{row['pid']} (0x{row['pid']:x})" if isinstance(row.get("pid"), int) else None)
    line("process guid", row.get("process_guid"))
    line("host / boot", f"{row.get('host')} / boot {row.get('boot')}")
    line("user", row.get("user"))
    line("logon id", f"0x{row['logon_id']:x}" if isinstance(row.get("logon_id"), int) else None)
    line("integrity", row.get("integrity"))
    line("mandatory label", row.get("label"))
    line("token elevation", row.get("elevation"))
    line("current dir", row.get("current_directory"))
    line("original name", row.get("original_file_name"))
    line("hashes", row.get("hashes"))
    line("started", tree_text.when(row.get("start")))
    end = row.get("end")
    line("ended", f"{tree_text.when(end)} ({row.get('end_reason')})" if end else row.get("end_reason"))
    line("sources", " + ".join({"sysmon1": "Sysmon 1", "4688": "Security 4688"}.get(s, s)
                               for s in row.get("sources") or []))
    line("parent", row.get("parent_image"))
    line("parent pid", row.get("parent_pid"))
    line("parent link", _EDGES.get(str(row.get("edge")), row.get("edge")))
    line("link note", row.get("edge_note"))
    line("ancestry", ancestry)
    line("marks", row.get("marks"), "bold red")
    if row.get("subtree_marks"):
        line("below it", f"{row['subtree_marks']} marked process(es)", "yellow")
    counts = [f"{n} {k.replace('_', ' ')}" for k in ("network", "files", "registry", "image_loads", "dns", "pipes",
                                                   "process_access", "lsass_access", "accessed_by")
              if (n := row.get(k))]
    line("events", f"{row.get('events', 0)} in all" + (": " + ", ".join(counts) if counts else ""))
    line("children", row.get("children"))
    return text


class ProcessScreen(ReportsWorkerFailures, Screen[None]):
    BINDINGS = keymap_bindings("process")
    DEFAULT_CSS = """
    ProcessScreen #process-title { height: 1; background: $panel; text-style: bold; }
    ProcessScreen VerticalScroll { height: 1fr; }
    """

    def __init__(self, session: Session, node: int) -> None:
        super().__init__()
        self.session = session
        self.node = node
        self.row: dict[str, Any] | None = None
        self.is_loading = True

    def compose(self) -> ComposeResult:
        yield Static(Text(" process: reading…"), id="process-title")
        with VerticalScroll(id="process-body"):
            yield Static("", id="process-info")
            yield Static("", id="process-events")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        self._load()

    @work(thread=True, group="process", exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        try:
            with self.session.busy("process") as (cur, _job):
                row = lineage.details(cur, self.node)
                if row is None:
                    raise LookupError("the process is no longer in the case")
                ancestry = lineage.ancestry_line(cur, self.node)
                events = views.query(cur, f"process:{lineage.key_of(row)}", limit=EVENTS_SHOWN)
        except Exception as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._show, row, ancestry, events)

    def _failed(self, message: str) -> None:
        self.is_loading = False
        self.query_one("#process-title", Static).update(Text(f" process: {message}", style="bold red"))
        self.notify(f"process: {message}", severity="error", markup=False)

    def _show(self, row: dict[str, Any], ancestry: str, events: list[dict[str, Any]]) -> None:
        self.is_loading = False
        self.row = row
        keys = getattr(self.app, "keymap", None)
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(f" {escape(tree_text.image_name(row.get('image')))} {row.get('pid')} on {escape(row.get('host'))}")
        if keys is not None:
            title.append(f"   {keys.display('process', 'events')} its events · "
                         f"{keys.display('process', 'subtree_events')} subtree's · "
                         f"{keys.display('process', 'session')} session · {keys.display('process', 'back')} back",
                         style="dim")
        self.query_one("#process-title", Static).update(title)
        self.query_one("#process-info", Static).update(describe(row, ancestry))
        listing = Text()
        listing.append(f"\n first {len(events)} of {row.get('events', 0)} event(s)\n" if events else "\n no events\n",
                       style="bold")
        for e in events:
            listing.append(f" {tree_text.when(e.get('ts'))}  ", style="dim")
            listing.append(f"{escape(short_channel(e.get('channel'))):<9} {e.get('event_id')!s:>5}  ")
            listing.append(escape(e.get("summary") or "", limit=300) + "\n")
        self.query_one("#process-events", Static).update(listing)

    def action_scroll_down(self) -> None:
        self.query_one(VerticalScroll).scroll_down(animate=False)

    def action_scroll_up(self) -> None:
        self.query_one(VerticalScroll).scroll_up(animate=False)

    def action_events(self) -> None:
        if self.row is not None:
            from .tree import show_process_events

            show_process_events(self.app, self.row, subtree=False)

    def action_subtree_events(self) -> None:
        if self.row is not None:
            from .tree import show_process_events

            show_process_events(self.app, self.row, subtree=True)

    def action_session(self) -> None:
        if self.row is not None:
            from .tree import open_session

            open_session(self.app, self.row)

    def action_help(self) -> None:
        from .help import HelpScreen

        self.app.push_screen(HelpScreen(self.app.keymap))  # type: ignore[attr-defined]

    def action_back(self) -> None:
        self.app.pop_screen()
