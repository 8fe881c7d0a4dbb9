"""Ingest progress: files, records, records per second; then the timeline opens."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import ProgressBar, Static

from engine import Case, open_for_reading
from engine.ingest import IngestReport, Progress, ingest

from ..safe_text import escape
from ..session import MEMORY_LIMIT
from ..workers import ReportsWorkerFailures

if TYPE_CHECKING:
    from ..app import AshiatoApp


class IngestCancelled(Exception):
    """Raised from the progress callback to stop an ingest between batches."""


class IngestScreen(ReportsWorkerFailures, Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,ctrl+c", "cancel", "stop the ingest", show=False, id="ingest.cancel"),
    ]
    DEFAULT_CSS = """
    IngestScreen { align: center middle; }
    IngestScreen > #ingest-box { width: 90%; height: auto; border: round $accent; padding: 1 2; }
    IngestScreen ProgressBar { width: 100%; margin: 1 0; }
    IngestScreen #ingest-file, IngestScreen #ingest-stats { height: auto; }
    """

    def __init__(self, case_path: str, paths: list[str]) -> None:
        super().__init__()
        self.case_path = case_path
        self.paths = paths
        self.cancelled = False
        self.last: Progress | None = None
        self._last_post = 0.0
        self.started = time.monotonic()
        self.report: IngestReport | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="ingest-box"):
            yield Static(Text(f"Ingesting into {self.case_path}", style="bold"), id="ingest-title")
            yield ProgressBar(total=None, show_eta=True, id="ingest-bar")
            yield Static("", id="ingest-file")
            yield Static("", id="ingest-stats")
            yield Static(Text("Esc / ctrl+c stops: files already stored are kept", style="dim"))

    def on_mount(self) -> None:
        self._run()

    @work(thread=True, group="ingest", exit_on_error=False)
    def _run(self) -> None:
        case: Case | None = None
        error: str | None = None
        report: IngestReport | None = None
        try:
            case = Case(self.case_path)
            report = ingest(case, self.paths, on_progress=self._on_progress)
        except IngestCancelled:
            error = "stopped"
        except Exception as exc:
            error = str(exc)
        if case is not None and error is not None:
            try:
                # A file stopped part-way is dropped whole (ingesting it again stores it whole).
                case.drop_incomplete_files()
                if case.unordered_events():
                    case.reorder()
            except Exception as exc:  # the case stays usable; the next open orders it
                error = f"{error}; ordering failed: {exc}"
        if case is not None:
            # Written: now held read-only, as a case opened directly is, so other processes can read it.
            case.close()
            try:
                case = open_for_reading(self.case_path, memory_limit=MEMORY_LIMIT)
            except Exception as exc:
                case, error = None, f"{error + '; ' if error else ''}cannot open it again: {exc}"
        self.app.call_from_thread(self._finished, case, report, error)

    def _on_progress(self, progress: Progress) -> None:
        if self.cancelled:
            raise IngestCancelled
        now = time.monotonic()
        if now - self._last_post >= 0.1:
            self._last_post = now
            self.app.call_from_thread(self._show, progress)

    def _show(self, p: Progress) -> None:
        self.last = p
        bar = self.query_one(ProgressBar)
        bar.update(total=max(1, p.bytes_total), progress=p.bytes_done)
        self.query_one("#ingest-file", Static).update(
            Text(f"file {p.file_index + 1:,}/{p.files_total:,}: ") + Text(escape(p.path, 300), style="dim"))
        rate = p.records / p.elapsed if p.elapsed > 0 else 0
        self.query_one("#ingest-stats", Static).update(
            Text(f"{p.records:,} records · {rate:,.0f} rec/s · {p.elapsed:.1f} s", style="bold"))

    def _finished(self, case: Case | None, report: IngestReport | None, error: str | None) -> None:
        self.report = report
        app: AshiatoApp = self.app  # type: ignore[assignment]
        if case is None:
            self.query_one("#ingest-stats", Static).update(Text(f"cannot ingest: {error}", style="bold red"))
            return
        summary = _summary(report, error)
        app.open_case(case, notice=summary)

    def action_cancel(self) -> None:
        self.cancelled = True
        self.query_one("#ingest-stats", Static).update(Text("stopping after the current batch…", style="bold"))


def _summary(report: IngestReport | None, error: str | None) -> str:
    if report is None:
        return f"ingest {error}: the events stored so far are shown" if error else ""
    ingested = sum(1 for f in report.files if f.status == "ingested")
    already = sum(1 for f in report.files if f.status == "already in case")
    skipped_files = sum(1 for f in report.files if f.status == "skipped")
    parts = [f"ingested {report.records:,} events from {ingested} file(s) in {report.seconds:.1f} s"]
    if already:
        parts.append(f"{already} already in the case")
    unreadable_files = sum(1 for f in report.files if f.status == "skipped" and "cannot read" in (f.message or ""))
    if skipped_files - unreadable_files:
        parts.append(f"{skipped_files - unreadable_files} not event logs")
    if unreadable_files or report.unreadable:
        parts.append(f"{unreadable_files + len(report.unreadable)} file(s) or folder(s) could not be read")
    if report.skipped:
        parts.append(f"{report.skipped:,} damaged records skipped (ashiato stats)")
    if report.missing:
        parts.append(f"{len(report.missing)} path(s) not found")
    return "; ".join(parts)
