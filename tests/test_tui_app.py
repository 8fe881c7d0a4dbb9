"""The app as a whole: ingest with progress then explore, NO_COLOR, 80×24, the view stack, errors."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine import CaseError
from tui.app import AshiatoApp
from tui.screens.ingest import IngestScreen
from tui.testing import build_incident_case, settle, use_utc

use_utc()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_incident_case(tmp_path_factory.mktemp("app"))


def run(app: AshiatoApp, scenario: Any, size: tuple[int, int] = (120, 40)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(app, pilot)

    asyncio.run(main())


def test_ingest_paths_show_progress_then_the_timeline_of_the_new_case(built: Path, tmp_path: Path) -> None:
    source = built.parent / "incident.jsonl"
    seen: list[str] = []

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        for _ in range(400):
            await pilot.pause(0.02)
            if isinstance(app.screen, IngestScreen):
                seen.append("ingest")
            if app.timeline_screen is not None and app.screen is app.timeline_screen:
                break
        await settle(pilot)
        assert app.timeline_screen.view.count == 2101
        assert app.screen is app.timeline_screen

    run(AshiatoApp(tmp_path / "new.duckdb", ingest_paths=[str(source)], user_keymap=False), scenario)
    assert seen  # the progress screen was shown


def test_stopping_an_ingest_keeps_what_was_stored_and_opens_it(built: Path, tmp_path: Path) -> None:
    source = built.parent / "incident.jsonl"

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        screen = app.screen
        assert isinstance(screen, IngestScreen)
        screen.cancelled = True  # as if Escape came before the first batch
        for _ in range(400):
            await pilot.pause(0.02)
            if app.timeline_screen is not None and app.screen is app.timeline_screen:
                break
        await settle(pilot)
        assert app.timeline_screen.view.count == 0

    app = AshiatoApp(tmp_path / "stopped.duckdb", ingest_paths=[str(source)], user_keymap=False)

    async def before(app: AshiatoApp, pilot: Any) -> None:
        await scenario(app, pilot)

    # cancel as soon as the screen exists: patch its mount to set the flag first
    original = IngestScreen.on_mount

    def cancelled_mount(self: IngestScreen) -> None:
        self.cancelled = True
        original(self)

    IngestScreen.on_mount = cancelled_mount  # type: ignore[method-assign]
    try:
        run(app, before)
    finally:
        IngestScreen.on_mount = original  # type: ignore[method-assign]


def test_a_missing_case_file_is_an_error_not_a_new_empty_case(tmp_path: Path) -> None:
    with pytest.raises(CaseError):
        AshiatoApp(tmp_path / "absent.duckdb", user_keymap=False)
    assert not (tmp_path / "absent.duckdb").exists()


def test_no_color_keeps_the_cursor_and_focused_cell_visible(built: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    case = tmp_path / "c.duckdb"
    shutil.copy(built, case)
    monkeypatch.setenv("NO_COLOR", "1")
    app = AshiatoApp(case, user_keymap=False)
    assert app.no_color

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await settle(pilot)
        tl = app.timeline_screen.timeline
        strip = tl.render_line(tl.cursor - int(tl.scroll_offset.y))
        styles = [seg.style for seg in strip if seg.text.strip()]
        assert any(s is not None and s.reverse for s in styles)  # the focused cell
        assert all(s is not None and s.bold for s in styles)  # the cursor row
        other = tl.render_line(tl.cursor + 1 - int(tl.scroll_offset.y))
        assert not any(seg.style is not None and seg.style.reverse for seg in other)

    run(app, scenario, size=(80, 24))


def test_an_80_by_24_terminal_shows_time_host_channel_id_and_a_summary_wide_enough_to_read(built: Path) -> None:
    # The channel stays at 80 columns (an Application 4625 is not a failed logon); the host
    # column is as wide as the case's hosts need, so the summary keeps a readable width.
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await settle(pilot)
        tl = app.timeline_screen.timeline
        assert [p.name for p in tl.placed] == ["time", "host", "channel", "event_id", "summary"]
        assert tl.placed[-1].width >= 30
        assert tl.size.height >= 19
        assert not app.timeline_screen.side_visible
        line = tl.render_line(0).text
        assert len(line) == tl.content_width and "2024-03-12 08:00:00" in line

    run(AshiatoApp(built, user_keymap=False), scenario, size=(80, 24))


def test_a_filter_error_is_shown_and_the_view_is_kept(built: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await settle(pilot)
        scr = app.timeline_screen
        scr.add_filter("evnt_id:4625")
        await settle(pilot)
        assert scr.state.filters == [] and 'did you mean "event_id"' in scr.last_message

    run(AshiatoApp(built, user_keymap=False), scenario)


def test_a_newer_filter_wins_over_an_older_one_still_resolving(built: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await settle(pilot)
        scr = app.timeline_screen
        generation = scr.timeline.generation
        scr.add_filter("eid:4625")
        scr.add_filter("eid:4624")  # before the first has been shown
        await settle(pilot)
        assert scr.state.filters[-1] == "eid:4624"
        assert all(scr.timeline.row_at(i)["event_id"] == 4624 for i in range(min(50, scr.view.count)))
        assert scr.timeline.generation > generation

    run(AshiatoApp(built, user_keymap=False), scenario)


def test_blocks_of_an_old_generation_are_dropped(built: Path) -> None:
    from tui.widgets.timeline import Timeline

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await settle(pilot)
        tl = app.timeline_screen.timeline
        stale = [{"eid": -1, "pos": 0, "ts": None, "summary": "stale"}]
        tl.post_message(Timeline.BlockLoaded(tl.generation - 1, 0, stale, None))
        await settle(pilot)
        assert tl.row_at(0)["eid"] != -1

    run(AshiatoApp(built, user_keymap=False), scenario)


def test_a_full_text_filter_shows_matches_while_it_searches_and_ends_with_all_of_them(
        built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import Case, views
    from tui.screens import timeline as timeline_screen

    # Tiny steps, so this small case is searched in many of them.
    monkeypatch.setattr(views, "FIRST_STEP_DOCUMENTS", 100)
    monkeypatch.setattr(views, "MAX_STEP_DOCUMENTS", 300)
    grown: list[float] = []
    original = timeline_screen.ViewGrown.__init__

    def record(self: Any, request: int, view: views.View, *args: Any) -> None:
        grown.append(view.done)
        original(self, request, view, *args)

    monkeypatch.setattr(timeline_screen.ViewGrown, "__init__", record)
    with Case(built, read_only=True) as case:
        expected = views.resolve(case.cursor(), "cmd.exe").count

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await settle(pilot)
        screen = app.timeline_screen
        await pilot.press("colon", *"cmd.exe", "enter")
        await settle(pilot, timeout=30)
        assert screen.view.complete and screen.view.count == expected
        assert "so far" not in str(screen.status.render())
        assert screen.state.filters == ["cmd.exe"]

    run(AshiatoApp(built, user_keymap=False), scenario)
    assert len(grown) > 3 and grown[-1] == 1.0 and all(d < 1.0 for d in grown[:-1])


def test_escape_stops_a_full_text_search_and_keeps_the_matches_found_so_far(
        built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = _hold_full_text_search(monkeypatch)

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        screen = await _start_held_search(app, pilot)
        partial = screen.view
        assert partial is not None and not partial.complete and partial.count > 0
        assert "searched)" in str(screen.status.render())
        await pilot.press("escape")
        release.set()
        await settle(pilot)
        assert screen.view is partial, "the matches found so far stay on screen"
        assert "search stopped" in screen.last_message

    run(AshiatoApp(built, user_keymap=False), scenario)


def test_a_new_filter_cancels_a_full_text_search_still_running(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = _hold_full_text_search(monkeypatch)

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        screen = await _start_held_search(app, pilot)
        searching = screen._resolve_job
        assert searching is not None and not searching.cancelled
        await pilot.press("2")  # the failed-logons preset, while the search is held
        assert searching.cancelled
        release.set()
        await settle(pilot)
        assert screen.state.title and "cmd.exe" not in screen.state.text()
        assert screen.view.complete and screen.view.count > 0

    run(AshiatoApp(built, user_keymap=False), scenario)


def _hold_full_text_search(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Small steps, and after the first step with matches the search "takes long" until the
    returned event is set."""
    import threading

    from engine import views

    release = threading.Event()
    real_steps = views.resolve_steps

    def held_steps(cur: Any, compiled: Any, **kw: Any) -> Any:
        held = False
        for view in real_steps(cur, compiled, first=100, largest=300):
            yield view
            if view.count and not view.complete and not held:
                held = True
                release.wait(10)

    monkeypatch.setattr(views, "resolve_steps", held_steps)
    return release


async def _start_held_search(app: AshiatoApp, pilot: Any) -> Any:
    """Filter on a bare word and wait until its first matches are on screen, search held."""
    await settle(pilot)
    screen = app.timeline_screen
    await pilot.press("colon", *"cmd.exe", "enter")
    for _ in range(500):
        await pilot.pause(0.01)
        if screen.view is not None and not screen.view.complete:
            break
    return screen


def test_the_ingest_summary_counts_what_could_not_be_read_apart_from_what_is_no_event_log() -> None:
    from engine.ingest import FileResult, IngestReport
    from tui.screens.ingest import _summary

    report = IngestReport(files=[
        FileResult("a.evtx", "ingested", records=5),
        FileResult("notes.txt", "skipped", message="notes.txt: not a recognised event log (…)"),
        FileResult("locked.evtx", "skipped", message="locked.evtx: cannot read (Permission denied)"),
    ], unreadable=["Logs/private: cannot list this directory (Permission denied); its files are not read"])
    text = _summary(report, None)
    assert "1 not event logs" in text and "2 file(s) or folder(s) could not be read" in text


def test_a_filter_longer_than_the_status_line_keeps_its_newest_terms() -> None:
    import asyncio

    from textual.app import App, ComposeResult

    from tui.widgets.status import StatusBar

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield StatusBar()

    async def main() -> None:
        app = One()
        async with app.run_test(size=(80, 5)) as pilot:
            bar = app.query_one(StatusBar)
            terms = " ".join(f"host:WORKSTATION{i:02d}" for i in range(12)) + " user:newest"
            bar.update_view(title="", filters=terms, enabled=True, count=3, total=10, first=None, last=None)
            await pilot.pause()
            top = bar.render().plain.splitlines()[0]
            assert top.endswith("user:newest") and "…" in top and len(top) <= 80

    asyncio.run(main())
