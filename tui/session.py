"""The TUI's handle on an open case: cursors for worker threads, cancellation, cached views.

Every worker thread takes its own cursor through `Session.cursor()`; long queries are registered
with `Session.busy()` so Escape / Ctrl-C can `interrupt()` exactly those cursors. The UI thread
never runs a query.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from engine import Case, CaseError, views
from engine.filters import Compiled, Compiler, FilterError

Cursor = duckdb.DuckDBPyConnection
T = TypeVar("T")
# How long a write of the TUI (Session.write) waits for another process to stop reading the case.
WRITE_WAIT_SECONDS = 10.0
# DuckDB memory limit of the TUI's case: lower than the engine's default keeps the process small;
# scans evict cached blocks instead of growing (measured in bench/tui.py).
MEMORY_LIMIT = "256MB"


def shown_path(path: str, base: Path) -> str:
    """`path` relative to `base` when it is below it, else as stored."""
    try:
        return str(Path(path).relative_to(base.resolve()))
    except ValueError:
        try:
            return str(Path(path).relative_to(base))
        except ValueError:
            return path


@dataclass
class Job:
    """A cancellable query running on its own cursor."""

    label: str
    cursor: Cursor
    started: float
    cancelled: bool = False
    done: float | None = None  # share of the work done, when the job can tell
    # The screen whose worker runs it: leaving a screen stops its own jobs, not those beneath it.
    owner: object | None = None


def _worker_owner() -> object | None:
    """The screen of the Textual worker running on this thread, if any."""
    from textual.screen import Screen
    from textual.worker import NoActiveWorker, get_current_worker

    try:
        node = get_current_worker().node
    except NoActiveWorker:
        return None
    if isinstance(node, Screen):
        return node
    try:
        return node.screen  # a widget's worker belongs to its screen
    except Exception:  # not mounted (any more): nobody's to cancel by screen
        return None


class Session:
    def __init__(self, case: Case) -> None:
        self.case = case
        self.name = case.path.name
        self._lock = threading.Lock()
        # Cursors handed out, and whether the case is being reopened to write (Session.write):
        # a write waits for every cursor to be given back, and new ones wait for the write.
        self._gate = threading.Condition()
        self._cursors = 0
        self._writing = False
        self._jobs: dict[int, Job] = {}
        self._job_ids = 0
        cur = case.cursor()
        try:
            self.field_names: list[str] = views.field_names(cur)
            self.total: int = views.total_events(cur)
            self.marks: dict[int, str | None] = views.marks(cur)
            self.saved_filters: list[tuple[str, str]] = views.saved_filters(cur)
        finally:
            cur.close()
        self.compiler = Compiler(self.field_names)
        self._views: OrderedDict[str, views.View] = OrderedDict()
        self._view_bytes_cap = 128 * 1024 * 1024
        self._ranges: dict[int, tuple[weakref.ref[views.View], tuple[Any, Any]]] = {}

    # -- cursors and cancellation --------------------------------------------------------------
    @contextmanager
    def cursor(self) -> Iterator[Cursor]:
        cur = self._take()
        try:
            yield cur
        finally:
            self._give(cur)

    def _take(self) -> Cursor:
        with self._gate:
            while self._writing:
                self._gate.wait()
            self._cursors += 1
        try:
            return self.case.cursor()
        except BaseException:
            self._give(None)
            raise

    def _give(self, cur: Cursor | None) -> None:
        if cur is not None:
            with suppress(duckdb.Error):
                cur.close()
        with self._gate:
            self._cursors -= 1
            self._gate.notify_all()

    def write(self, fn: Callable[[Case], T], *, wait: float = WRITE_WAIT_SECONDS) -> T:
        """`fn(case)` with the case open read-write for that moment, then read-only again.

        The TUI reads a case read-only so that other processes can read it too; the few things it
        writes into the case itself (findings computed again after an allowlist change) take the
        write lock here. Running queries are interrupted and new ones wait; another process
        reading the case makes this wait up to `wait` seconds, then fail naming that process."""
        with self._gate:
            while self._writing:
                self._gate.wait()
            self._writing = True
        try:
            self.cancel_all()
            deadline = time.monotonic() + wait
            with self._gate:
                while self._cursors:
                    if time.monotonic() > deadline:
                        raise CaseError(f"{self.case.path}: {self._cursors} queries of this window did not stop; "
                                        "nothing was written")
                    self._gate.wait(0.1)
            self.case.reopen(read_only=False, wait=wait)
            try:
                return fn(self.case)
            finally:
                self.case.reopen(read_only=True, wait=wait)
        finally:
            with self._gate:
                self._writing = False
                self._gate.notify_all()

    def detail(self, cur: Cursor, eid: int) -> dict[str, Any] | None:
        """`views.detail`, its source path shown from the case's folder when the file is below it
        (stored absolute; a case usually sits beside its evidence)."""
        d = views.detail(cur, eid)
        if d is not None and d.get("path"):
            d["path"] = shown_path(str(d["path"]), self.case.path.parent)
        return d

    @contextmanager
    def busy(self, label: str) -> Iterator[tuple[Cursor, Job]]:
        """A fresh cursor for a long query that Escape may interrupt."""
        cur = self._take()
        job = Job(label, cur, time.monotonic(), owner=_worker_owner())
        with self._lock:
            self._job_ids += 1
            job_id = self._job_ids
            self._jobs[job_id] = job
        try:
            yield cur, job
        finally:
            with self._lock:
                self._jobs.pop(job_id, None)
            self._give(cur)

    def cancel(self, job: Job | None) -> None:
        """Interrupt one job if it is still running."""
        if job is None:
            return
        with self._lock:
            running = any(j is job for j in self._jobs.values())
        job.cancelled = True
        if running:
            with suppress(duckdb.Error):
                job.cursor.interrupt()

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def cancel_all(self, owner: object | None = None, *, unowned: bool = False) -> int:
        """Interrupt the registered queries of `owner` (a screen; with `unowned`, also those run
        outside any worker), or every one when no owner is given; how many were running."""
        with self._lock:
            jobs = [j for j in self._jobs.values()
                    if owner is None or j.owner is owner or (unowned and j.owner is None)]
        for job in jobs:
            job.cancelled = True
            with suppress(duckdb.Error):
                job.cursor.interrupt()
        return len(jobs)

    # -- filters and views ---------------------------------------------------------------------
    def compile(self, text: str) -> Compiled:
        """Compile on the calling thread (pure Python, no query); raises FilterError."""
        return self.compiler.compile(text)

    def cached_view(self, text: str) -> views.View | None:
        with self._lock:
            view = self._views.get(text)
            if view is not None:
                self._views.move_to_end(text)
            return view

    def remember_view(self, text: str, view: views.View) -> None:
        with self._lock:
            self._views[text] = view
            self._views.move_to_end(text)
            while len(self._views) > 1 and self._view_bytes() > self._view_bytes_cap:
                self._views.popitem(last=False)
            while len(self._views) > 16:
                self._views.popitem(last=False)

    def _view_bytes(self) -> int:
        return sum(0 if v.positions is None else int(v.positions.nbytes) for v in self._views.values())

    def resolve_steps(self, cur: Cursor, text: str, job: Job | None = None) -> Iterator[views.View]:
        """The view of a filter (cached), resolved on `cur` (a worker's cursor). A full-text filter
        yields its growing view after each step, noting its progress on `job` and stopping once
        the job is cancelled; only the complete view is cached."""
        found = self.cached_view(text)
        if found is not None:
            yield found
            return
        view: views.View | None = None
        for view in views.resolve_steps(cur, self.compile(text)):
            if job is not None:
                if job.cancelled:
                    return
                job.done = None if view.complete else view.done
            yield view
        if view is not None and view.complete:
            self.remember_view(text, view)

    def time_range(self, cur: Cursor, view: views.View) -> tuple[Any, Any]:
        """Times of the first and last event of a view (cached per view)."""
        if view.count == 0:
            return None, None
        found = self.cached_range(view)
        if found != (None, None):
            return found
        result = views.time_span(cur, view)
        with self._lock:
            self._ranges = {k: v for k, v in self._ranges.items() if v[0]() is not None}
            self._ranges[id(view)] = (weakref.ref(view), result)
        return result

    def cached_range(self, view: views.View) -> tuple[Any, Any]:
        with self._lock:
            found = self._ranges.get(id(view))
        return found[1] if found is not None and found[0]() is view else (None, None)


def filter_error_text(exc: FilterError, text: str) -> str:
    hint = f' — did you mean "{exc.suggestion}"?' if exc.suggestion else ""
    return f"{exc.message}{hint}"
