"""Helpers for the TUI's tests and benchmark: a small case from the synthetic incident, and waiting
for the app to be idle (no sleeps: poll the app's own notion of pending work)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

SHARED_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"


def use_utc() -> None:
    os.environ["TZ"] = "UTC"
    if hasattr(time, "tzset"):
        time.tzset()


def build_incident_case(directory: Path, *, seed: int = 7, noise: int = 2000) -> Path:
    """The generated incident (hostile command lines, a 1 MB script, log clears…) as a case."""
    from engine import Case
    from engine.ingest import ingest
    from fixtures import shapes
    from fixtures.incident import incident

    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "incident.jsonl"
    with source.open("wb") as out:
        shapes.FILES[0].write(incident(seed, noise), out)
    case_path = directory / "incident.duckdb"
    # A relative source path keeps the stored path (shown in the detail pane) the same on every run.
    with contextlib.chdir(directory), Case(case_path) as case:
        ingest(case, [source.name])
    return case_path


async def settle(pilot: Any, *, timeout: float = 10.0) -> None:
    """Wait until the app has nothing loading: no filter resolving, no block fetching, no worker."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        await pilot.pause(0.01)
        screen = getattr(app, "timeline_screen", None)
        if screen is not None and screen.is_mounted:
            screen._tick_work()
        busy = app.busy() if hasattr(app, "busy") else False
        workers = [w for w in app.workers if w.is_running]
        if not busy and not workers:
            quiet += 1
            if quiet >= 2:
                await pilot.pause()
                return
        else:
            quiet = 0
    raise TimeoutError("the app did not settle")
