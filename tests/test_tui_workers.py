"""Workers that fail say so in the status bar, and leaving a screen stops only that screen's jobs."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine import views
from tui.app import AshiatoApp
from tui.testing import build_incident_case, settle, use_utc

use_utc()


@pytest.fixture(scope="module")
def case_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_incident_case(tmp_path_factory.mktemp("workers"))


def _run(case_path: Path, scenario: Any) -> None:
    app = AshiatoApp(case_path, user_keymap=False)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await scenario(app, pilot)

    asyncio.run(main())


def test_a_mark_that_cannot_be_saved_says_so_in_the_status_bar(case_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(cur: Any, eid: int) -> bool:
        raise OSError("the case's folder is read-only")

    monkeypatch.setattr(views, "toggle_mark", refuse)

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await pilot.press("m")
        for _ in range(40):
            await settle(pilot)
            if "failed" in app.screen.status.message:
                break
        message = app.screen.status.message
        assert "saving the mark failed" in message and "read-only" in message, message
        assert not app.session.marks  # nothing pretends to be marked

    _run(case_path, scenario)


def test_leaving_a_child_screen_does_not_stop_a_job_of_the_timeline_beneath(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        timeline = app.screen
        release = threading.Event()
        started = threading.Event()
        outcome: dict[str, Any] = {}

        def long_query() -> None:
            with app.session.busy("searching") as (_cur, job):
                started.set()
                release.wait(10)
                outcome["cancelled"] = job.cancelled

        timeline.run_worker(long_query, thread=True, group="test-search", exit_on_error=False)
        assert await asyncio.to_thread(started.wait, 5)
        await pilot.press("l", "F")  # the frequency of the host column: a child screen
        for _ in range(40):
            await settle(pilot)
            if app.screen is not timeline:
                break
        assert app.screen is not timeline
        await pilot.press("q")
        await settle(pilot)
        assert app.screen is timeline
        release.set()
        deadline = time.monotonic() + 5
        while "cancelled" not in outcome and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert outcome == {"cancelled": False}
        # Esc in the timeline still stops the timeline's own jobs.
        release.clear()
        started.clear()
        timeline.run_worker(long_query, thread=True, group="test-search", exit_on_error=False)
        assert await asyncio.to_thread(started.wait, 5)
        await pilot.press("escape")
        release.set()
        deadline = time.monotonic() + 5
        while outcome.get("cancelled") is not True and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert outcome == {"cancelled": True}

    _run(case_path, scenario)
