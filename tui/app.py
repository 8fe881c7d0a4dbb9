"""The ashiato TUI: `run_app(case)` opens a case; with `ingest_paths` it ingests them first."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from engine import Case, CaseError, open_for_reading

from .keymap import Keymap, KeymapError, load_keymap, preset_check
from .screens.palette import AshiatoCommands, Catalog, load_catalog
from .session import MEMORY_LIMIT, Session

HISTORY_LIMIT = 200


class AshiatoApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "ashiato"
    COMMANDS: ClassVar[set[Any]] = {AshiatoCommands}
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[Any]] = [Binding("ctrl+q", "quit", "quit", show=False, priority=True)]

    def __init__(self, case_path: str | Path, *, keymap_path: str | Path | None = None,
                 ingest_paths: list[str] | None = None, keymap: Keymap | None = None,
                 user_keymap: bool = True, history_path: str | Path | None = None) -> None:
        # NO_COLOR: with ANSI colours on, Textual's NO_COLOR filter drops colour entirely (otherwise it
        # only turns the theme grey). Bold and reverse still mark the cursor and the focused cell.
        super().__init__(ansi_color=True if "NO_COLOR" in os.environ else None)
        self.case_path = str(case_path)
        self.keymap = keymap if keymap is not None else load_keymap(keymap_path, user_config=user_keymap)
        self.ingest_paths = list(ingest_paths) if ingest_paths else None
        self.history_path = Path(history_path) if history_path else None
        self.filter_history: list[str] = self._load_history()
        self.search_history: list[str] = []
        self.case: Case | None = None
        self.session: Session | None = None
        self.timeline_screen: Any = None
        self.catalog: Catalog | None = None
        self._catalog_started = False
        # The sessions view's filters, kept between visits (a look at a session's events and back).
        self.sessions_filters: list[str] = []
        if self.ingest_paths is None:
            if not Path(self.case_path).exists():
                raise CaseError(f"{self.case_path}: no such case file")
            # A lower DuckDB memory limit than the engine's default keeps the TUI process small;
            # scans evict cached blocks instead of growing (measured in bench/tui.py). Read-only,
            # so `ashiato query` and the other read-only commands work on the case meanwhile; the
            # marks and tags go to the case's notes (engine.notes).
            self.case = open_for_reading(self.case_path, memory_limit=MEMORY_LIMIT)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.set_keymap(self.keymap.textual())
        if self.ingest_paths is not None:
            from .screens.ingest import IngestScreen

            self.push_screen(IngestScreen(self.case_path, self.ingest_paths))
        else:
            assert self.case is not None
            self.open_case(self.case)

    def open_case(self, case: Case, *, notice: str = "") -> None:
        from .screens.timeline import TimelineScreen

        self.case = case
        self.session = Session(case)
        self.sub_title = self.session.name
        screen = TimelineScreen(self.session, self.keymap)
        self.timeline_screen = screen
        if self.ingest_paths is not None and len(self.screen_stack) > 1:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)
        for problem in preset_check(self.keymap, self.session.compiler):
            self.notify(problem, severity="warning", markup=False, timeout=8)
        if notice:
            self.notify(notice, markup=False, timeout=8)

    def show_sessions(self) -> None:
        """The sessions view, with the filters it had when last left."""
        from .screens.sessions import SessionsScreen

        if self.session is not None:
            self.push_screen(SessionsScreen(self.session, self.keymap, filters=self.sessions_filters))

    def show_failed_logons(self) -> None:
        from .screens.logons import LogonsScreen

        if self.session is not None:
            self.push_screen(LogonsScreen(self.session))

    def show_findings(self) -> None:
        """The findings view, worst first."""
        from .screens.findings import FindingsScreen

        if self.session is not None:
            self.push_screen(FindingsScreen(self.session, self.keymap))

    def show_sessions_at(self, key: Any) -> None:
        """The sessions view narrowed to one session (from a process)."""
        from .screens.sessions import SessionsScreen

        if self.session is not None:
            self.push_screen(SessionsScreen(self.session, self.keymap,
                                            filters=[f"host:{key.host} boot:{key.boot} logon_id:0x{key.logon_id:x}"]))

    def show_tree(self, node: int) -> None:
        """The process tree opened at one process (a node of engine.lineage)."""
        from .screens.tree import ProcessTreeScreen

        if self.session is not None:
            self.push_screen(ProcessTreeScreen(self.session, node))

    def show_tree_of_event(self, eid: int) -> None:
        """The tree at the process an event names, found off the UI thread."""
        from engine import lineage

        session = self.session
        if session is None:
            return

        def find() -> None:
            try:
                with session.cursor() as cur:
                    node = lineage.node_of_event(cur, eid)
            except Exception as exc:
                self.call_from_thread(self.notify, f"process lookup failed: {exc}", severity="error", markup=False)
                return
            if node is None:
                self.call_from_thread(self.notify, "this event names no process of the tree", markup=False)
            else:
                self.call_from_thread(self.show_tree, node)

        self.run_worker(find, thread=True, group="tree-of-event", exit_on_error=False)

    def show_events(self, text: str, title: str) -> None:
        """The timeline narrowed to `text` (a session, the events behind a verdict), one step back with q."""
        while len(self.screen_stack) > 1 and self.screen is not self.timeline_screen:
            self.pop_screen()
        self.timeline_screen.apply_filter_text(text, title)

    def view_changed(self) -> None:
        """A new view is on screen (a hook for tests and the bench)."""

    def ensure_catalog(self) -> None:
        """Load the palette's hosts, users, images and event IDs (once, in the background)."""
        if not self._catalog_started and self.session is not None:
            self._catalog_started = True
            self._catalog_worker()

    @work(thread=True, group="catalog", exit_on_error=False)
    def _catalog_worker(self) -> None:
        assert self.session is not None
        catalog = load_catalog(self.session)
        self.call_from_thread(setattr, self, "catalog", catalog)

    # What a worker of each group was doing, for the status bar when it fails.
    WORKER_TASKS: ClassVar[dict[str, str]] = {
        "marks": "saving the mark", "marks-nav": "finding the next mark", "histogram-pick": "picking the range",
    }

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.worker_failed(event.worker)

    def worker_failed(self, worker: Worker[Any]) -> None:
        """A worker that raised (tui/workers.py): what failed, on the status bar of the screen on top."""
        task = self.WORKER_TASKS.get(worker.group, worker.group if worker.group != "default" else worker.name)
        text = f"{task} failed: {worker.error}"
        say = getattr(self.screen, "message", None)
        if callable(say):
            try:
                say(text, error=True)
                return
            except TypeError:  # a screen whose message() takes no error flag
                say(text)
                return
        self.notify(text, severity="error")

    def on_unmount(self) -> None:
        if self.session is not None:
            self.session.cancel_all()
        self._save_history()
        if self.case is not None:
            with contextlib.suppress(Exception):
                self.case.close()

    # -- history -----------------------------------------------------------------------------------------
    def _load_history(self) -> list[str]:
        if self.history_path is None or not self.history_path.is_file():
            return []
        try:
            lines = self.history_path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        return [line for line in lines if line.strip()][-HISTORY_LIMIT:]

    def remember_history(self) -> None:
        del self.filter_history[:-HISTORY_LIMIT]

    def _save_history(self) -> None:
        if self.history_path is None:
            return
        try:
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            self.history_path.write_text("\n".join(self.filter_history[-HISTORY_LIMIT:]) + "\n", encoding="utf-8")
        except OSError:
            pass

    # -- for tests and the bench ---------------------------------------------------------------------------
    def busy(self) -> bool:
        screen = self.timeline_screen
        if screen is None:
            return True
        return bool(screen.busy()) or any(
            getattr(s, "is_loading", False) for s in self.screen_stack)


def _history_path() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("ashiato")) / "filter_history"


def run_app(case_path: str, *, keymap_path: str | None = None, ingest_paths: list[str] | None = None) -> None:
    """Open `case_path` in the TUI (the `ashiato` command); ingest `ingest_paths` into it first."""
    try:
        app = AshiatoApp(case_path, keymap_path=keymap_path, ingest_paths=ingest_paths,
                         history_path=_history_path())
    except KeymapError as exc:
        print(f"ashiato: keymap: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except CaseError as exc:
        print(f"ashiato: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app.run()
