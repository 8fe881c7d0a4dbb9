"""Every binding of the default keymap, pressed through Pilot on a case built from the incident.

Each test names the bindings it exercises with `covers(...)`; the last test checks that together
they cover every action and preset in keymaps/default.toml, with every key.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine import Case, views
from tui.app import AshiatoApp
from tui.keymap import ACTIONS, load_keymap
from tui.testing import build_incident_case, settle, use_utc

use_utc()

COVERED: set[str] = set()
KEYMAP = load_keymap(user_config=False)


def covers(*ids: str) -> Callable[[Any], Any]:
    """Record which `screen.action` bindings (and `preset.name`s) a test presses."""
    COVERED.update(ids)
    return lambda fn: fn


def keys_of(binding_id: str) -> list[str]:
    screen, action = binding_id.split(".", 1)
    if screen == "preset":
        return KEYMAP.presets[action].keys
    return KEYMAP.keys(screen, action)


@pytest.fixture(scope="module")
def built_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_incident_case(tmp_path_factory.mktemp("incident"))


@pytest.fixture
def case_path(built_case: Path, tmp_path: Path) -> Path:
    """A private copy: tests mark and tag events."""
    target = tmp_path / "case.duckdb"
    shutil.copy(built_case, target)
    return target


Scenario = Callable[[AshiatoApp, Any], Awaitable[None]]


def drive(case_path: Path, scenario: Scenario, size: tuple[int, int] = (120, 40), **kwargs: Any) -> AshiatoApp:
    app = AshiatoApp(case_path, user_keymap=False, **kwargs)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await scenario(app, pilot)

    asyncio.run(main())
    return app


async def press(pilot: Any, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


def engine_count(case_path: Path, text: str) -> int:
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        return views.resolve(cur, text).count


def screen_of(app: AshiatoApp) -> Any:
    return app.timeline_screen


# -- movement -----------------------------------------------------------------------------------------
@covers("timeline.cursor_down", "timeline.cursor_up", "timeline.page_down", "timeline.page_up",
        "timeline.first", "timeline.last")
def test_movement_keys_move_the_cursor_and_rows_are_always_loaded(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        tl = screen_of(app).timeline
        height = tl.size.height
        for key in keys_of("timeline.cursor_down"):
            before = tl.cursor
            await press(pilot, key)
            assert tl.cursor == before + 1
        for key in keys_of("timeline.cursor_up"):
            before = tl.cursor
            await press(pilot, key)
            assert tl.cursor == before - 1
        for key in keys_of("timeline.page_down"):
            before = tl.cursor
            await press(pilot, key)
            assert tl.cursor == before + height
            assert tl.loaded()
        for key in keys_of("timeline.page_up"):
            before = tl.cursor
            await press(pilot, key)
            assert tl.cursor == before - height
        for key in keys_of("timeline.last"):
            await press(pilot, "g")
            await press(pilot, key)
            assert tl.cursor == tl.count - 1
            assert tl.loaded() and tl.current_row() is not None
        for key in keys_of("timeline.first"):
            await press(pilot, "G")
            await press(pilot, key)
            assert tl.cursor == 0
            assert tl.current_row()["pos"] == 0

    drive(case_path, scenario)


@covers("timeline.column_left", "timeline.column_right")
def test_left_and_right_move_the_focused_column(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        tl = screen_of(app).timeline
        assert tl.focused_column_name() == "time"
        for key in keys_of("timeline.column_right"):
            before = tl.focus_column
            await press(pilot, key)
            assert tl.focus_column == before + 1
        assert tl.focused_column_name() == "channel"
        for key in keys_of("timeline.column_left"):
            before = tl.focus_column
            await press(pilot, key)
            assert tl.focus_column == before - 1
        assert tl.focused_column_name() == "time"

    drive(case_path, scenario)


# -- filters --------------------------------------------------------------------------------------------
@covers("timeline.filter")
def test_the_filter_prompt_counts_live_keeps_history_and_points_at_a_bad_token(case_path: Path) -> None:
    from tui.screens.prompt import PromptScreen

    expected = engine_count(case_path, "eid:4625")

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        first, second = keys_of("timeline.filter")
        await press(pilot, first)
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        await pilot.press(*"eid:4625")
        await settle(pilot)
        while prompt.live_count is None:  # the debounced count worker
            await pilot.pause(0.05)
            await settle(pilot)
        assert prompt.live_count == expected
        assert f"{expected:,} of" in prompt.info_text
        await press(pilot, "enter")
        assert scr.state.filters == ["eid:4625"]
        assert scr.view.count == expected
        # history: the second key opens the prompt, ↑ recalls the last filter
        await press(pilot, second)
        prompt = app.screen
        await press(pilot, "up")
        assert prompt.value == "eid:4625"
        await press(pilot, "down")
        assert prompt.value == ""
        await pilot.press(*"evnt_id:4625")
        await settle(pilot)
        assert "^" in prompt.info_text and 'did you mean "event_id"' in prompt.info_text
        await press(pilot, "enter")  # refused: still in the prompt
        assert app.screen is prompt
        await press(pilot, "escape")
        assert app.screen is scr
        assert scr.state.filters == ["eid:4625"]

    drive(case_path, scenario)


@covers("timeline.keep_value", "timeline.exclude_value", "timeline.drop_filter", "timeline.toggle_filters")
def test_plus_and_minus_keep_or_exclude_the_focused_value_and_backspace_drops_it(case_path: Path) -> None:
    total = engine_count(case_path, "")
    dc = engine_count(case_path, 'host:"DC01.corp.local"')

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, "l")  # host
        assert scr.timeline.focused_column_name() == "host"
        tl = scr.timeline
        tl.move_to(next(i for i in range(tl.count) if tl.row_at(i)["host"] == "DC01.corp.local"))
        await settle(pilot)
        await press(pilot, *keys_of("timeline.keep_value"))
        assert scr.state.filters == ['host:"DC01.corp.local"']
        assert scr.view.count == dc
        await press(pilot, *keys_of("timeline.drop_filter"))
        assert scr.state.filters == []
        assert scr.view.count == total
        await press(pilot, *keys_of("timeline.exclude_value"))
        assert scr.state.filters == ['-host:"DC01.corp.local"']
        assert scr.view.count == total - dc
        assert scr.timeline.current_row()["host"] != "DC01.corp.local"
        await press(pilot, *keys_of("timeline.toggle_filters"))
        assert not scr.state.enabled and scr.view.count == total
        await press(pilot, *keys_of("timeline.toggle_filters"))
        assert scr.state.enabled and scr.view.count == total - dc

    drive(case_path, scenario)


def test_a_filter_typed_while_the_filters_are_off_replaces_them_and_its_live_count_is_the_views(
        case_path: Path) -> None:
    from tui.screens.prompt import PromptScreen

    expected = engine_count(case_path, "eid:4624")

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        scr.add_filter("eid:4625", title="Failed logons")
        await settle(pilot)
        assert "Failed logons" in scr.state.shown_title()
        await press(pilot, *keys_of("timeline.toggle_filters"))
        assert not scr.state.enabled and scr.state.shown_title() == ""  # every event: not "Failed logons"
        await press(pilot, keys_of("timeline.filter")[0])
        prompt = app.screen
        assert isinstance(prompt, PromptScreen), app.screen
        assert "filters are off: this one replaces them" in prompt.title_text, prompt.title_text
        await pilot.press(*"eid:4624")
        await settle(pilot)
        while prompt.live_count is None:
            await pilot.pause(0.05)
            await settle(pilot)
        assert prompt.live_count == expected
        await press(pilot, "enter")
        assert scr.state.filters == ["eid:4624"] and scr.state.enabled
        assert scr.view.count == expected  # what the prompt said, not eid:4625 AND eid:4624
        await press(pilot, keys_of("timeline.filter")[0])
        assert "ANDed with: eid:4624" in app.screen.title_text
        await press(pilot, "escape")

    drive(case_path, scenario)


def test_plus_on_a_value_with_quotes_and_backslashes_builds_an_escaped_term() -> None:
    from engine.filters import compile_filter
    from tui.screens.timeline import value_term

    assert value_term("command_line", 'cmd /c "a\\b"') == r'command_line:"cmd /c \"a\b\""'
    assert value_term("event_id", 4625, negate=True) == "-event_id:4625"
    for value in ['cmd /c "a\\b"', "C:\\Windows\\System32\\cmd.exe", "x, y", "[bold]"]:
        assert compile_filter(value_term("command_line", value)).terms[0].values == [value]
    assert compile_filter(value_term("object_name", "C:\\Temp\\")).terms[0].values == ["C:\\Temp*"]


@covers("timeline.list_filters", "filters.cursor_down", "filters.cursor_up", "filters.remove", "filters.back")
def test_tab_lists_the_active_filters_and_any_can_be_removed(case_path: Path) -> None:
    from tui.screens.filters import FilterListScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        for n, key in enumerate(keys_of("filters.remove")):
            # four filters, then remove the second with this key
            scr.go(scr.state.copy(filters=["eid:4624,4625,4688,1", "-host:FS01.corp.local", "after:2024-03-12T08:00",
                                           "before:2024-03-12T12:00"]), push=False)
            await settle(pilot)
            await press(pilot, *keys_of("timeline.list_filters"))
            listing = app.screen
            assert isinstance(listing, FilterListScreen)
            options = listing.query_one("#filters-list")
            if n == 0:
                for down in keys_of("filters.cursor_down"):
                    await press(pilot, down)
                assert options.highlighted == 2
                await press(pilot, keys_of("filters.cursor_up")[0])
            else:
                await press(pilot, "j")
            assert options.highlighted == 1
            await press(pilot, key)
            assert listing.filters == ["eid:4624,4625,4688,1", "after:2024-03-12T08:00", "before:2024-03-12T12:00"]
            await press(pilot, "q")
            assert scr.state.filters == listing.filters
        # every other way back, without a change
        for back in keys_of("filters.back"):
            await press(pilot, *keys_of("timeline.list_filters"))
            assert isinstance(app.screen, FilterListScreen)
            await press(pilot, keys_of("filters.cursor_up")[-1], back)
            assert app.screen is scr

    drive(case_path, scenario)


# -- presets --------------------------------------------------------------------------------------------
@covers(*[f"preset.{name}" for name in KEYMAP.presets])
def test_every_event_id_hotkey_shows_its_filter_and_columns(case_path: Path) -> None:
    expected = {name: engine_count(case_path, p.filter) for name, p in KEYMAP.presets.items()}
    assert expected["failed_logons"] > 0 and expected["log_cleared"] > 0

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        for name, preset in KEYMAP.presets.items():
            for key in preset.keys:
                await press(pilot, key)
                assert scr.state.filters == [preset.filter], name
                assert scr.view.count == expected[name], name
                assert scr.timeline.columns == preset.columns
                assert scr.status.title == preset.title
                if scr.view.count:
                    assert scr.timeline.loaded() and scr.timeline.current_row() is not None

    drive(case_path, scenario)


def test_the_failed_logon_hotkey_shows_only_failures_with_the_user(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, "2")
        tl = scr.timeline
        ids = {tl.row_at(i)["event_id"] for i in range(tl.count)}
        assert ids <= {4625, 4771, 4776} and 4625 in ids
        assert "user" in [p.name for p in tl.placed]

    drive(case_path, scenario)


# -- search -----------------------------------------------------------------------------------------------
@covers("timeline.search", "timeline.next_match", "timeline.previous_match", "timeline.cancel")
def test_slash_searches_without_filtering_and_n_and_shift_n_walk_the_matches(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        total = scr.view.count
        await press(pilot, *keys_of("timeline.search"))
        await pilot.press(*"net.exe")
        await press(pilot, "enter")
        assert scr.view.count == total  # a search does not filter
        first = scr.timeline.cursor
        assert "net.exe" in (scr.timeline.current_row()["process_image"] or "")
        assert scr.timeline.highlight_terms == ["net.exe"]
        await press(pilot, *keys_of("timeline.next_match"))
        second = scr.timeline.cursor
        assert second > first and "net.exe" in scr.timeline.current_row()["process_image"]
        await press(pilot, *keys_of("timeline.previous_match"))
        assert scr.timeline.cursor == first
        await press(pilot, keys_of("timeline.cancel")[0])  # nothing running: clears the search
        assert scr.search is None and scr.timeline.highlight_terms == []

    drive(case_path, scenario)


def test_escape_and_ctrl_c_interrupt_a_running_query(case_path: Path) -> None:
    import threading

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        for key in keys_of("timeline.cancel"):
            outcome: dict[str, str] = {}
            started = threading.Event()

            def slow(outcome: dict[str, str] = outcome, started: threading.Event = started) -> None:
                try:
                    with scr.session.busy("slow query") as (cur, _job):
                        started.set()
                        cur.execute("SELECT count(*) FROM range(100000000000) t(x) WHERE x % 7 = 3").fetchall()
                    outcome["result"] = "finished"
                except Exception as exc:
                    outcome["result"] = type(exc).__name__

            thread = threading.Thread(target=slow)
            thread.start()
            started.wait(5)
            for _ in range(200):  # the status bar shows background work at its next tick
                await pilot.pause(0.01)
                if "slow query" in scr.status.render().plain:
                    break
            assert "slow query" in scr.status.render().plain  # background work is shown
            await pilot.press(key)
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
            assert outcome["result"] == "InterruptException", key
            await settle(pilot)
            assert not scr.session.jobs()

    drive(case_path, scenario)


# -- time -----------------------------------------------------------------------------------------------
@covers("timeline.goto_time")
def test_ctrl_g_goes_to_the_first_event_at_or_after_a_time(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, *keys_of("timeline.goto_time"))
        await pilot.press(*"09:30")
        await press(pilot, "enter")
        tl = scr.timeline
        row = tl.current_row()
        assert row["ts"].strftime("%H:%M") >= "09:30"
        assert tl.row_at(tl.cursor - 1)["ts"].strftime("%H:%M") < "09:30"
        await press(pilot, *keys_of("timeline.goto_time"))
        await pilot.press(*"2024-03-12 10:00:00Z")
        await press(pilot, "enter")
        assert tl.current_row()["ts"].strftime("%H:%M") >= "10:00"

    drive(case_path, scenario)


@covers("timeline.toggle_local_time")
def test_z_shows_local_time_with_the_offset_in_the_header(case_path: Path) -> None:
    import os
    import time

    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        async def scenario(app: AshiatoApp, pilot: Any) -> None:
            scr = screen_of(app)
            tl = scr.timeline
            utc_text = tl.render_line(tl.cursor - int(tl.scroll_offset.y)).text
            assert "time (UTC)" in scr.header_bar.render_line(0).text
            await press(pilot, *keys_of("timeline.toggle_local_time"))
            assert "time (UTC+09:00)" in scr.header_bar.render_line(0).text
            local_text = tl.render_line(tl.cursor - int(tl.scroll_offset.y)).text
            assert "2024-03-12 08:00" in utc_text and "2024-03-12 17:00" in local_text
            await press(pilot, *keys_of("timeline.toggle_local_time"))
            assert "time (UTC)" in scr.header_bar.render_line(0).text

        drive(case_path, scenario)
    finally:
        use_utc()


# -- context and the view stack --------------------------------------------------------------------
@covers("timeline.context", "timeline.context_narrower", "timeline.context_wider", "timeline.back")
def test_c_shows_the_same_host_five_minutes_around_and_q_returns(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, "/")
        await pilot.press(*"whoami")
        await press(pilot, "enter")
        await press(pilot, "escape")
        anchor = scr.timeline.current_row()
        await press(pilot, *keys_of("timeline.context"))
        assert scr.state.context is not None and scr.state.context[1] == 5
        tl = scr.timeline
        assert tl.current_row()["eid"] == anchor["eid"]
        rows = [tl.row_at(i) for i in range(tl.count)]
        assert {r["host"] for r in rows} == {anchor["host"]}
        assert all(abs((r["ts"] - anchor["ts"]).total_seconds()) <= 300 for r in rows)
        assert len({r["channel"] for r in rows}) > 1  # every channel
        narrow_count = tl.count
        await press(pilot, *keys_of("timeline.context_wider"))
        assert scr.state.context[1] == 10 and tl.count >= narrow_count
        await press(pilot, *keys_of("timeline.context_narrower"))
        assert scr.state.context[1] == 5 and tl.count == narrow_count
        assert len(scr.stack) == 1  # < and > adjust, they do not stack
        await press(pilot, *keys_of("timeline.back"))
        assert scr.state.filters == [] and scr.timeline.current_row()["eid"] == anchor["eid"]

    drive(case_path, scenario)


def test_q_at_the_first_view_quits(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await pilot.press("q")
        await pilot.pause()

    app = drive(case_path, scenario)
    assert app.return_code == 0 and not app.is_running


def test_q_stepping_back_to_the_first_view_asks_once_before_quitting(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        scr.add_filter("eid:4625")
        await settle(pilot)
        await press(pilot, "q")  # back to every event
        assert scr.state.filters == [] and app.is_running
        await press(pilot, "q")  # one too many: asked, not quit
        assert app.is_running and "again quits (Ctrl-Q quits at once)" in scr.last_message
        await pilot.press("q")
        await pilot.pause()

    app = drive(case_path, scenario)
    assert app.return_code == 0 and not app.is_running


# -- histogram and frequency ------------------------------------------------------------------------------
@covers("timeline.histogram", "histogram.cursor_down", "histogram.cursor_up", "histogram.first",
        "histogram.last", "histogram.select", "histogram.back")
def test_i_shows_a_histogram_marks_log_clears_and_enter_narrows_to_a_bucket(case_path: Path) -> None:
    from tui.screens.histogram import HistogramScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        for back in keys_of("histogram.back"):
            await press(pilot, *keys_of("timeline.histogram"))
            assert isinstance(app.screen, HistogramScreen)
            await press(pilot, back)
            assert app.screen is scr
        await press(pilot, *keys_of("timeline.histogram"))
        hist = app.screen
        assert sum(n for _b, n, _c in hist.histogram.buckets) == scr.view.count
        assert sum(c for _b, _n, c in hist.histogram.buckets) >= 2  # 1102 and 104 on WS07
        listing = hist.query_one("#hist-list")
        for key in keys_of("histogram.last"):
            await press(pilot, "g", key)
            assert listing.highlighted == len(hist.histogram.buckets) - 1
        for key in keys_of("histogram.first"):
            await press(pilot, key)
            assert listing.highlighted == 0
        for key in keys_of("histogram.cursor_down"):
            await press(pilot, key)
        assert listing.highlighted == 2
        for key in keys_of("histogram.cursor_up"):
            await press(pilot, key)
        assert listing.highlighted == 0
        start, end = hist.selected()
        await press(pilot, *keys_of("histogram.select"))
        assert app.screen is scr
        assert scr.state.filters == [f"after:{start.isoformat()} before:{end.isoformat()}"]
        tl = scr.timeline
        assert all(start <= tl.row_at(i)["ts"] < end for i in range(tl.count))

    drive(case_path, scenario)


@covers("timeline.frequency", "frequency.cursor_down", "frequency.cursor_up", "frequency.first",
        "frequency.last", "frequency.select", "frequency.exclude", "frequency.toggle_order", "frequency.back")
def test_f_counts_the_focused_columns_values_and_enter_keeps_one(case_path: Path) -> None:
    from tui.screens.frequency import FrequencyScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, "l")  # host
        for back in keys_of("frequency.back"):
            await press(pilot, *keys_of("timeline.frequency"))
            assert isinstance(app.screen, FrequencyScreen)
            await press(pilot, back)
            assert app.screen is scr
        await press(pilot, *keys_of("timeline.frequency"))
        freq = app.screen
        counts = [n for _v, n in freq.values]
        assert counts == sorted(counts, reverse=True) and sum(counts) == scr.view.count
        assert freq.values[0][0] == "DC01.corp.local"
        await press(pilot, *keys_of("frequency.toggle_order"))
        counts = [n for _v, n in freq.values]
        assert counts == sorted(counts)
        listing = freq.query_one("#freq-list")
        for key in keys_of("frequency.last"):
            await press(pilot, "g", key)
            assert listing.highlighted == len(freq.values) - 1
        for key in keys_of("frequency.first"):
            await press(pilot, key)
            assert listing.highlighted == 0
        for key in keys_of("frequency.cursor_down"):
            await press(pilot, key)
        for key in keys_of("frequency.cursor_up"):
            await press(pilot, key)
        await press(pilot, keys_of("frequency.cursor_down")[0])
        value = freq.values[1][0]
        await press(pilot, *keys_of("frequency.select"))
        assert scr.state.filters == [f'host:"{value}"']
        await press(pilot, "q", *keys_of("timeline.frequency"))
        value = app.screen.values[0][0]
        await press(pilot, *keys_of("frequency.exclude"))
        assert scr.state.filters == [f'-host:"{value}"']

    drive(case_path, scenario)


# -- marks, tags, export ----------------------------------------------------------------------------------
@covers("timeline.mark", "timeline.next_mark", "timeline.previous_mark", "timeline.tag")
def test_marks_and_tags_are_stored_in_the_case_and_survive_a_restart(case_path: Path) -> None:
    marked: list[int] = []

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        tl = scr.timeline
        tl.move_to(5)
        await press(pilot, *keys_of("timeline.mark"))
        marked.append(tl.current_row()["eid"])
        tl.move_to(35)
        await press(pilot, *keys_of("timeline.mark"))
        marked.append(tl.current_row()["eid"])
        assert set(scr.session.marks) == set(marked)
        assert tl.render_line(tl.cursor - int(tl.scroll_offset.y)).text.startswith("●")
        await press(pilot, "g", *keys_of("timeline.next_mark"))
        assert tl.current_row()["eid"] == marked[0]
        await press(pilot, *keys_of("timeline.next_mark"))
        assert tl.current_row()["eid"] == marked[1]
        await press(pilot, *keys_of("timeline.previous_mark"))
        assert tl.current_row()["eid"] == marked[0]
        await press(pilot, *keys_of("timeline.previous_mark"))
        assert "no earlier marked event" in scr.last_message
        await press(pilot, *keys_of("timeline.next_mark"))
        assert tl.current_row()["eid"] == marked[1] and scr.last_message == ""  # the old message is gone
        await press(pilot, *keys_of("timeline.previous_mark"))
        await press(pilot, *keys_of("timeline.tag"))
        await pilot.press(*"spray [bold]")
        await press(pilot, "enter")
        assert scr.session.marks[marked[0]] == "spray [bold]"
        assert "spray [bold]" in scr.status.render().plain
        # unmark and re-mark the second one
        await press(pilot, *keys_of("timeline.next_mark"), "m")
        assert marked[1] not in scr.session.marks
        await press(pilot, "m")

    drive(case_path, scenario)
    with Case(case_path, read_only=True) as case:
        stored = views.marks(case.cursor())
    assert stored == {marked[0]: "spray [bold]", marked[1]: None}

    async def reopened(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        assert scr.session.marks == stored
        await press(pilot, "u")
        assert scr.timeline.current_row()["eid"] == marked[0]
        assert scr.timeline.render_line(scr.timeline.cursor - int(scr.timeline.scroll_offset.y)).text.startswith("◆")

    drive(case_path, reopened)


@covers("timeline.export")
def test_e_exports_the_view_or_only_the_marked_events(case_path: Path, tmp_path: Path) -> None:
    import csv
    import json

    from tui.screens.prompt import ExportScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, "2")
        count = scr.view.count
        await press(pilot, *keys_of("timeline.export"))
        dialog = app.screen
        assert isinstance(dialog, ExportScreen)
        dialog.query_one("#export-path").value = str(tmp_path / "failed.csv")
        await press(pilot, "enter")
        assert app.screen is scr and "exported" in scr.last_message
        with open(tmp_path / "failed.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == count
        await press(pilot, "m", "j", "m", "e")
        dialog = app.screen
        dialog.query_one("#export-path").value = str(tmp_path / "marked.jsonl")
        await press(pilot, "ctrl+t", "enter")
        lines = (tmp_path / "marked.jsonl").read_text().splitlines()
        assert len(lines) == 2 and all(json.loads(line)["event_id"] for line in lines)
        await press(pilot, "e")
        app.screen.query_one("#export-path").value = str(tmp_path / "nope.txt")
        await press(pilot, "enter")
        assert isinstance(app.screen, ExportScreen)  # refused: unknown format
        await press(pilot, "escape")

    drive(case_path, scenario)


# -- detail ---------------------------------------------------------------------------------------------------
@covers("timeline.detail", "detail.cursor_down", "detail.cursor_up", "detail.page_down", "detail.page_up",
        "detail.first", "detail.last", "detail.toggle_raw", "detail.copy_value", "detail.next_event",
        "detail.previous_event", "detail.back")
def test_enter_opens_the_event_with_decoded_values_raw_and_copy(case_path: Path) -> None:
    from tui.screens.detail import DetailScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, "/")
        await pilot.press(*"eid:4625")
        await press(pilot, "enter", *keys_of("timeline.detail"))
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        pane = detail.view_pane
        text = "\n".join(pane.plain_lines())
        assert "SubStatus: 0xc000006a  → user name correct, password wrong" in text
        assert "LogonType: 3  → Network" in text
        for key in keys_of("detail.cursor_down"):
            before = pane.cursor
            await press(pilot, key)
            assert pane.cursor > before
        for key in keys_of("detail.cursor_up"):
            before = pane.cursor
            await press(pilot, key)
            assert pane.cursor < before
        for key in keys_of("detail.last"):
            await press(pilot, "g", key)
            assert pane.cursor == len(pane.entries) - 1
        for key in keys_of("detail.first"):
            await press(pilot, key)
            assert pane.cursor == 1  # the first field after the title
        for key in keys_of("detail.page_down"):
            await press(pilot, "g", key)
            assert pane.cursor > 1
        for key in keys_of("detail.page_up"):
            await press(pilot, "G", key)
            assert pane.cursor < len(pane.entries) - 1
        pane.move_to(next(i for i, e in enumerate(pane.entries) if e.name == "SubStatus"))
        await press(pilot, *keys_of("detail.copy_value"))
        assert app.clipboard == "0xc000006a"
        await press(pilot, *keys_of("detail.toggle_raw"))
        assert pane.raw and any('"SubStatus"' in line for line in pane.plain_lines())
        await press(pilot, *keys_of("detail.toggle_raw"))
        assert not pane.raw
        eid = detail.eid
        await press(pilot, *keys_of("detail.next_event"))
        assert detail.eid != eid and detail.eid == scr.timeline.current_row()["eid"]
        await press(pilot, *keys_of("detail.previous_event"))
        assert detail.eid == eid
        for key in keys_of("detail.back"):
            if app.screen is scr:
                await press(pilot, "enter")
            await press(pilot, key)
            assert app.screen is scr

    drive(case_path, scenario)


@covers("timeline.copy_value")
def test_y_copies_the_stored_value_of_the_focused_cell(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, "l", *keys_of("timeline.copy_value"))
        assert app.clipboard == scr.timeline.current_row()["host"]  # the full name, not the short one
        assert "." in app.clipboard

    drive(case_path, scenario)


@covers("timeline.toggle_side_pane")
def test_a_wide_terminal_shows_a_side_pane_that_follows_the_cursor(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        assert scr.side_visible
        assert scr.side.event["eid"] == scr.timeline.current_row()["eid"]
        await press(pilot, "j", "j")
        assert scr.side.event["eid"] == scr.timeline.current_row()["eid"]
        await press(pilot, *keys_of("timeline.toggle_side_pane"))
        assert not scr.side_visible
        await press(pilot, *keys_of("timeline.toggle_side_pane"))
        assert scr.side_visible

    drive(case_path, scenario, size=(160, 48))

    async def narrow(app: AshiatoApp, pilot: Any) -> None:
        assert not screen_of(app).side_visible

    drive(case_path, narrow, size=(80, 24))


# -- help, palette, saved filters -------------------------------------------------------------------------
@covers("timeline.help", "help.cursor_down", "help.cursor_up", "help.page_down", "help.page_up", "help.back")
def test_question_mark_shows_help_generated_from_the_active_keymap(case_path: Path, tmp_path: Path) -> None:
    from tui.screens.help import HelpScreen

    user = tmp_path / "keys.toml"
    user.write_text('[timeline]\nmark = "M"\n\n[presets.my_hunt]\nkey = "ctrl+k"\ntitle = "My hunt"\nfilter = "eid:4688"\n')

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, *keys_of("timeline.help"))
        helper = app.screen
        assert isinstance(helper, HelpScreen)
        text = helper.query_one("#help-text").render().plain
        assert "My hunt" in text and "ctrl+k" in text
        assert "  M " in text and "mark / unmark the event" in text
        scroller = helper.query_one("#help-scroll")
        for key in keys_of("help.page_down"):
            before = scroller.scroll_y
            await press(pilot, key)
            assert scroller.scroll_y > before
        for key in keys_of("help.page_up"):
            before = scroller.scroll_y
            await press(pilot, key)
            assert scroller.scroll_y < before
        for key in keys_of("help.cursor_down"):
            before = scroller.scroll_y
            await press(pilot, key)
            assert scroller.scroll_y > before
        for key in keys_of("help.cursor_up"):
            before = scroller.scroll_y
            await press(pilot, key)
            assert scroller.scroll_y < before
        for back in keys_of("help.back"):
            if app.screen is scr:
                await press(pilot, *keys_of("timeline.help"))
            assert isinstance(app.screen, HelpScreen)
            await press(pilot, back)
            assert app.screen is scr
        await press(pilot, "M")
        assert scr.session.marks  # the user's key marks

    drive(case_path, scenario, keymap=load_keymap(user, user_config=False))


@covers("timeline.command_palette", "timeline.save_filter")
def test_ctrl_p_finds_hosts_presets_and_saved_filters_by_fuzzy_match(case_path: Path) -> None:
    from textual.command import CommandPalette

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, *keys_of("timeline.command_palette"))
        assert isinstance(app.screen, CommandPalette)
        while app.catalog is None:  # loaded in the background on the first ctrl+p
            await pilot.pause(0.05)
        await pilot.press(*"host fs01")
        await _wait_for_hits(pilot)
        await press(pilot, "enter")
        assert scr.state.filters == ['host:"FS01.corp.local"']
        # save it, then find it by name
        await press(pilot, *keys_of("timeline.save_filter"))
        await pilot.press(*"fileserver")
        await press(pilot, "enter")
        assert ("fileserver", 'host:"FS01.corp.local"') in scr.session.saved_filters
        await press(pilot, "1")
        await press(pilot, "ctrl+p")
        await pilot.press(*"filesrvr")
        await _wait_for_hits(pilot)
        await press(pilot, "enter")
        assert scr.state.filters == ['host:"FS01.corp.local"'] and scr.status.title == "fileserver"
        await press(pilot, "ctrl+p")
        await pilot.press(*"faild logons (4625; failed kerberos")
        await _wait_for_hits(pilot)
        await press(pilot, "enter")
        assert scr.state.filters == [KEYMAP.presets["failed_logons"].filter]

    drive(case_path, scenario)
    # Kept in the case's notes file (SQLite, beside the case), read here without ashiato.
    with sqlite3.connect(f"{case_path}.notes") as db:
        assert db.execute("SELECT name FROM saved_filters").fetchall() == [("fileserver",)]


async def _wait_for_hits(pilot: Any) -> None:
    from textual.command import CommandList

    for _ in range(200):
        await pilot.pause(0.02)
        hits = pilot.app.screen.query(CommandList)
        if hits and hits.first().option_count:
            await pilot.pause(0.1)
            return
    raise AssertionError("no command palette hits")


# -- the meta test ----------------------------------------------------------------------------------------
# -- sessions and failed logons -----------------------------------------------------------------------
async def _moves_like_the_timeline(pilot: Any, table: Any, section: str) -> None:
    """Every movement key of a derived-table view (TableViewScreen) moves its table as it says."""
    for key in keys_of(f"{section}.cursor_down"):
        before = table.cursor
        await press(pilot, key)
        assert table.cursor == before + 1
    for key in keys_of(f"{section}.cursor_up"):
        before = table.cursor
        await press(pilot, key)
        assert table.cursor == before - 1
    for key in keys_of(f"{section}.last"):
        await press(pilot, key)
        assert table.cursor == table.count - 1
    for key in keys_of(f"{section}.first"):
        await press(pilot, key)
        assert table.cursor == 0
    for key in keys_of(f"{section}.page_down"):
        await press(pilot, key)
        assert table.cursor == min(table.count - 1, table.size.height)
        await press(pilot, *keys_of(f"{section}.first"))
    for key in keys_of(f"{section}.page_up"):
        await press(pilot, *keys_of(f"{section}.last"))
        before = table.cursor
        await press(pilot, key)
        assert table.cursor == max(0, before - table.size.height)
    await press(pilot, *keys_of(f"{section}.first"))
    for key in keys_of(f"{section}.column_right"):
        before = table.focus_column
        await press(pilot, key)
        assert table.focus_column == before + 1
    for key in keys_of(f"{section}.column_left"):
        before = table.focus_column
        await press(pilot, key)
        assert table.focus_column == before - 1


def _sessions_screen(app: AshiatoApp) -> Any:
    from tui.screens.sessions import SessionsScreen

    assert isinstance(app.screen, SessionsScreen)
    return app.screen


def _session_count(app: AshiatoApp, text: str) -> int:
    """Counted by the engine on the app's own connection (a second one to the open case is refused)."""
    from engine import sessions

    with app.session.cursor() as cur:
        return int(sessions.resolve(cur, text).count)


@covers("timeline.sessions", "sessions.cursor_down", "sessions.cursor_up", "sessions.page_down", "sessions.page_up",
        "sessions.first", "sessions.last", "sessions.column_left", "sessions.column_right", "sessions.open",
        "sessions.back", "sessions.help")
def test_s_opens_the_sessions_and_enter_shows_every_event_of_one_in_the_timeline(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await press(pilot, *keys_of("timeline.sessions"))
        scr = _sessions_screen(app)
        table = scr.table
        assert table.count == _session_count(app, "")
        await _moves_like_the_timeline(pilot, table, "sessions")
        await press(pilot, *keys_of("sessions.help"))
        assert "Sessions" in str(app.screen.query_one("#help-text").render())
        await press(pilot, "q")
        # alice's RDP session, found by the filter language, opened in the timeline
        for key in keys_of("sessions.filter"):
            await press(pilot, key)
            assert app.screen.__class__.__name__ == "PromptScreen"
            await press(pilot, "escape")
        await press(pilot, keys_of("sessions.filter")[0])
        await pilot.press(*"user:alice type:10")
        await press(pilot, "enter")
        assert table.count == 1
        row = table.current_row()
        await press(pilot, *keys_of("sessions.open"))
        tl = screen_of(app)
        assert app.screen is tl
        text = f'session:"{row["host"]}/{row["boot"]}/0x{row["logon_id"]:x}"'
        assert tl.state.filters == [text]
        with app.session.cursor() as cur:
            assert tl.view.count == views.resolve(cur, text).count > 10
        # back in the sessions view, its filter is kept; q leaves it
        await press(pilot, *keys_of("timeline.sessions"))
        assert _sessions_screen(app).filters == ["user:alice type:10"]
        await press(pilot, *keys_of("sessions.back")[:1])
        assert app.screen is tl

    drive(case_path, scenario, size=(80, 24))


@covers("sessions.filter", "sessions.keep_value", "sessions.exclude_value", "sessions.drop_filter",
        "sessions.search", "sessions.next_match", "sessions.previous_match", "sessions.cancel",
        "sessions.frequency", "sessions.mark", "sessions.export")
def test_the_sessions_view_filters_searches_counts_marks_and_exports_like_the_timeline(
        case_path: Path, tmp_path: Path) -> None:
    from engine import sessions
    from tui.screens.frequency import FrequencyScreen

    out = tmp_path / "sessions.jsonl"

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await press(pilot, *keys_of("timeline.sessions"))
        scr = _sessions_screen(app)
        table = scr.table
        await press(pilot, *keys_of("sessions.filter")[:1])
        await pilot.press(*"type:3")
        await press(pilot, "enter")
        assert table.count == _session_count(app, "type:3") > 2
        # keep the host of the first row, then exclude it again after dropping
        while table.focused_column_name() != "host":
            await press(pilot, keys_of("sessions.column_right")[0])
        host = table.current_row()["host"]
        await press(pilot, *keys_of("sessions.keep_value"))
        assert scr.filters[-1] == f'host:"{host}"'
        assert table.count == _session_count(app, f'type:3 host:"{host}"')
        await press(pilot, *keys_of("sessions.drop_filter"))
        await press(pilot, *keys_of("sessions.exclude_value"))
        assert table.count == _session_count(app, f'type:3 -host:"{host}"')
        await press(pilot, *keys_of("sessions.drop_filter"))
        await press(pilot, *keys_of("sessions.drop_filter"))
        assert scr.filters == [] and table.count == _session_count(app, "")
        # search jumps without filtering
        await press(pilot, *keys_of("sessions.search"))
        await pilot.press(*"user:alice")
        await press(pilot, "enter")
        assert table.current_row()["user"] == "alice"
        first = table.cursor
        await press(pilot, *keys_of("sessions.next_match"))
        assert table.current_row()["user"] == "alice" and table.cursor > first
        await press(pilot, *keys_of("sessions.previous_match"))
        assert table.cursor == first
        await press(pilot, *keys_of("sessions.cancel")[:1])
        assert scr.search is None
        # frequency of the account column; Enter keeps the most common value
        for _ in range(len(table.placed)):
            await press(pilot, keys_of("sessions.column_left")[0])
        while table.focused_column_name() != "account":
            await press(pilot, keys_of("sessions.column_right")[0])
        await press(pilot, *keys_of("sessions.frequency"))
        assert isinstance(app.screen, FrequencyScreen)
        top = app.screen.values[0][0]
        await press(pilot, "enter")
        assert scr.filters == [f'user:"{top}"']
        await press(pilot, *keys_of("sessions.drop_filter"))
        # a mark is kept in the case, by session key
        first_eid = table.current_row()["first_eid"]
        await press(pilot, *keys_of("sessions.mark"))
        assert first_eid in scr.marks
        await press(pilot, *keys_of("sessions.export"))
        app.screen.query_one("#export-path").value = str(out)
        await press(pilot, "enter")
        for _ in range(200):
            if out.exists():
                break
            await pilot.pause(0.05)
        await settle(pilot)
        assert out.exists(), scr.status.message

    drive(case_path, scenario)
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        assert len(sessions.marked(cur)) == 1
        assert len(out.read_text().splitlines()) == sessions.total(cur)


@covers("timeline.failed_logons", "sessions.failed_logons", "logons.cursor_down", "logons.cursor_up",
        "logons.first", "logons.last", "logons.open", "logons.back")
def test_l_shows_the_spray_verdict_first_and_enter_shows_its_failures(case_path: Path) -> None:
    from tui.screens.base import KeyList
    from tui.screens.logons import LogonsScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await press(pilot, *keys_of("timeline.failed_logons"))
        assert isinstance(app.screen, LogonsScreen)
        scr = app.screen
        assert scr.rows[0]["kind"] == "verdict" and scr.rows[0]["verdict"] == "password_spray"
        listing = scr.query_one(KeyList)
        for key in keys_of("logons.cursor_down"):
            await press(pilot, key)
            assert listing.highlighted == 1
            await press(pilot, *keys_of("logons.cursor_up")[:1])
            assert listing.highlighted == 0
        await press(pilot, *keys_of("logons.last")[:1])
        assert listing.highlighted == len(scr.rows) - 1
        await press(pilot, *keys_of("logons.first")[:1])
        assert listing.highlighted == 0
        await press(pilot, *keys_of("logons.open"))
        tl = screen_of(app)
        assert app.screen is tl
        spray = scr.rows[0]
        with app.session.cursor() as cur:
            shown = {int(r[0]) for r in cur.execute(
                "SELECT eid FROM events e WHERE list_contains(?, pos)", [[int(p) for p in tl.view.positions]]
            ).fetchall()}
        assert shown == set(spray["eids"])
        await press(pilot, *keys_of("timeline.sessions"))
        await press(pilot, *keys_of("sessions.failed_logons"))
        assert isinstance(app.screen, LogonsScreen)
        for key in keys_of("logons.back"):
            await press(pilot, key)
            assert not isinstance(app.screen, LogonsScreen)
            await press(pilot, *keys_of("sessions.failed_logons"))

    drive(case_path, scenario)


@covers("logons.search", "logons.next_match", "logons.previous_match", "logons.export", "logons.help")
def test_the_failed_logons_are_searched_exported_and_explained_by_their_keys(case_path: Path, tmp_path: Path) -> None:
    import json

    from tui.screens.base import KeyList
    from tui.screens.logons import LogonsScreen

    out = tmp_path / "failed.jsonl"

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await press(pilot, *keys_of("timeline.failed_logons"))
        scr = app.screen
        assert isinstance(scr, LogonsScreen)
        listing = scr.query_one(KeyList)
        await press(pilot, *keys_of("logons.search"))
        await pilot.press(*"carol")
        await press(pilot, "enter")
        hits = [i for i, text in enumerate(scr.texts) if "carol" in text]
        assert len(hits) >= 2 and listing.highlighted == hits[0]
        await press(pilot, *keys_of("logons.next_match"))
        assert listing.highlighted == hits[1]
        await press(pilot, *keys_of("logons.previous_match"))
        assert listing.highlighted == hits[0]
        await press(pilot, *keys_of("logons.help"))
        assert "Failed logons" in str(app.screen.query_one("#help-text").render())
        await press(pilot, "q")
        assert app.screen is scr
        await press(pilot, *keys_of("logons.export"))
        app.screen.query_one("#export-path").value = str(out)
        await press(pilot, "enter")
        for _ in range(100):
            if out.exists() and out.stat().st_size:
                break
            await pilot.pause(0.05)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["kind"] for r in rows] == [r["kind"] for r in scr.rows]

    drive(case_path, scenario)


@covers("logons.filter", "logons.drop_filter", "logons.frequency", "logons.mark")
def test_the_failed_logon_view_filters_counts_and_marks_its_rows(case_path: Path) -> None:
    from engine import logons
    from tui.screens.base import KeyList
    from tui.screens.frequency import FrequencyScreen
    from tui.screens.logons import LogonsScreen
    from tui.screens.prompt import PromptScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await press(pilot, *keys_of("timeline.failed_logons"))
        scr = app.screen
        assert isinstance(scr, LogonsScreen)
        every = len(scr.rows)
        for key in keys_of("logons.filter"):
            await press(pilot, key)
            assert isinstance(app.screen, PromptScreen)
            await pilot.press(*"kind:verdict")
            await press(pilot, "enter")
            assert scr.rows and all(r["kind"] == "verdict" for r in scr.rows) and len(scr.rows) < every
            await press(pilot, *keys_of("logons.drop_filter"))
            assert len(scr.rows) == every
        # F: failures by source; Enter keeps the most common one.
        await press(pilot, *keys_of("logons.frequency"))
        await press(pilot, "enter")
        assert isinstance(app.screen, FrequencyScreen)
        top, failures = app.screen.values[0]
        assert failures == max(n for _, n in logons.frequency(scr.all_rows, "source"))
        await press(pilot, "enter")
        assert app.screen is scr and scr.rows
        assert all(r.get("source") == top or top in (r.get("sources") or []) for r in scr.rows)
        # m marks the events behind the highlighted row in the timeline's marks, m again unmarks them.
        scr.query_one(KeyList).highlighted = 0
        row = scr.rows[0]
        await press(pilot, *keys_of("logons.mark"))
        with app.session.cursor() as cur:
            eids = set(logons.group_eids(cur, row))
        with sqlite3.connect(f"{case_path}.notes") as db:
            marked = {int(r[0]) for r in db.execute("SELECT eid FROM marks").fetchall()}
        assert eids and eids <= marked and eids <= set(app.session.marks)
        await press(pilot, *keys_of("logons.mark"))
        with sqlite3.connect(f"{case_path}.notes") as db:
            marked = {int(r[0]) for r in db.execute("SELECT eid FROM marks").fetchall()}
        assert not eids & marked

    drive(case_path, scenario)


async def _tree_at_rundll32(app: AshiatoApp, pilot: Any) -> Any:
    """The timeline narrowed to the rundll32 that dumped lsass (Sysmon 1), then T."""
    from tui.screens.tree import ProcessTreeScreen

    screen_of(app).apply_filter_text("image:rundll32.exe eid:1", "rundll32")
    await settle(pilot)
    await press(pilot, *keys_of("timeline.tree"))
    for _ in range(200):
        if isinstance(app.screen, ProcessTreeScreen) and app.screen.ready and app.screen.tree.pending == 0:
            break
        await pilot.pause(0.02)
    await settle(pilot)
    assert isinstance(app.screen, ProcessTreeScreen)
    return app.screen


def _cursor_image(scr: Any) -> str:
    row = scr.current()
    return "" if row is None else str(row["image"]).rsplit("\\", 1)[-1].lower()


@covers("timeline.tree", "tree.cursor_up", "tree.cursor_down", "tree.first", "tree.last", "tree.page_down",
        "tree.page_up", "tree.expand", "tree.collapse", "tree.ancestry", "tree.back")
def test_t_opens_the_tree_at_the_event_s_process_with_its_ancestors_above(case_path: Path) -> None:
    from textual.widgets import Static

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = await _tree_at_rundll32(app, pilot)
        assert _cursor_image(scr) == "rundll32.exe"
        await press(pilot, *keys_of("tree.ancestry")[:1])
        info = str(scr.query_one("#tree-info", Static).render())
        assert "explorer.exe → cmd.exe → rundll32.exe" in info
        for key in keys_of("tree.cursor_up"):
            await press(pilot, key)
            assert _cursor_image(scr) == "cmd.exe"
            await press(pilot, keys_of("tree.cursor_down")[0])
            assert _cursor_image(scr) == "rundll32.exe"
        await press(pilot, keys_of("tree.first")[0])
        assert scr.tree.cursor_line == 0
        await press(pilot, keys_of("tree.last")[0])
        assert scr.tree.cursor_line == scr.tree.last_line
        await press(pilot, keys_of("tree.page_up")[0])
        assert scr.tree.cursor_line == 0
        await press(pilot, keys_of("tree.page_down")[0])
        assert scr.tree.cursor_line == scr.tree.last_line
        # Up to the first cmd.exe (collapsed, not loaded): expanding loads its children.
        await press(pilot, keys_of("tree.first")[0])
        lines = scr.tree.last_line
        for key in keys_of("tree.expand"):
            node = scr.tree.cursor_node
            while not (node.allow_expand and not node.is_expanded):
                await press(pilot, keys_of("tree.cursor_down")[0])
                node = scr.tree.cursor_node
            await press(pilot, key)
            for _ in range(100):
                if scr.tree.pending == 0:
                    break
                await pilot.pause(0.02)
            await settle(pilot)
            assert node.is_expanded and scr.tree.last_line > lines
            await press(pilot, keys_of("tree.collapse")[0])
            assert not node.is_expanded
            lines = scr.tree.last_line
        await press(pilot, keys_of("tree.cursor_down")[0])
        child = scr.tree.cursor_node
        await press(pilot, keys_of("tree.collapse")[-1])
        assert scr.tree.cursor_node is child.parent or not child.is_expanded
        for key in keys_of("tree.back"):
            await press(pilot, key)
            assert app.screen is screen_of(app)
            await press(pilot, *keys_of("timeline.tree"))
            for _ in range(100):
                if getattr(app.screen, "ready", False):
                    break
                await pilot.pause(0.02)

    drive(case_path, scenario)


@covers("tree.open", "process.scroll_down", "process.scroll_up", "process.back", "process.help", "tree.help",
        "process.events", "process.subtree_events", "tree.events", "tree.subtree_events")
def test_enter_shows_the_process_and_plus_minus_narrow_the_timeline_to_it_or_its_subtree(case_path: Path) -> None:
    from textual.widgets import Static

    from tui.screens.help import HelpScreen
    from tui.screens.process import ProcessScreen
    from tui.screens.tree import ProcessTreeScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await _tree_at_rundll32(app, pilot)
        await press(pilot, *keys_of("tree.help"))
        assert isinstance(app.screen, HelpScreen)
        await press(pilot, "escape")
        await press(pilot, *keys_of("tree.open"))
        for _ in range(100):
            if isinstance(app.screen, ProcessScreen) and not app.screen.is_loading:
                break
            await pilot.pause(0.02)
        scr = app.screen
        assert isinstance(scr, ProcessScreen)
        info = str(scr.query_one("#process-info", Static).render())
        assert "comsvcs.dll" in info and "Sysmon 1 + Security 4688" in info and "opened lsass.exe" in info
        for key in keys_of("process.scroll_down") + keys_of("process.scroll_up"):
            await press(pilot, key)
        await press(pilot, *keys_of("process.help"))
        assert isinstance(app.screen, HelpScreen)
        await press(pilot, "escape")
        for key in keys_of("process.events"):
            await press(pilot, key)
            tl = screen_of(app)
            assert app.screen is tl and tl.view.count == 5  # Sysmon 1, 4688, Sysmon 10, 4656, Sysmon 11
            await _tree_at_rundll32(app, pilot)
            await press(pilot, *keys_of("tree.open"))
            await settle(pilot)
        await press(pilot, *keys_of("process.subtree_events"))
        assert app.screen is screen_of(app) and screen_of(app).view.count == 5  # rundll32 started nothing
        for key in keys_of("process.back"):
            await _tree_at_rundll32(app, pilot)
            await press(pilot, *keys_of("tree.open"))
            await settle(pilot)
            await press(pilot, key)
            assert isinstance(app.screen, ProcessTreeScreen)
        await press(pilot, keys_of("tree.cursor_up")[0])  # the cmd.exe that started it
        await press(pilot, *keys_of("tree.events"))
        own = screen_of(app).view.count
        await _tree_at_rundll32(app, pilot)
        await press(pilot, keys_of("tree.cursor_up")[0])
        await press(pilot, *keys_of("tree.subtree_events"))
        assert screen_of(app).view.count > own

    drive(case_path, scenario)


@covers("detail.tree")
def test_t_in_the_event_view_opens_the_tree_at_its_process(case_path: Path) -> None:
    from tui.screens.detail import DetailScreen
    from tui.screens.tree import ProcessTreeScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        screen_of(app).apply_filter_text("image:rundll32.exe eid:1", "rundll32")
        await settle(pilot)
        await press(pilot, *keys_of("timeline.detail"))
        assert isinstance(app.screen, DetailScreen)
        await press(pilot, *keys_of("detail.tree"))
        for _ in range(200):
            if isinstance(app.screen, ProcessTreeScreen) and app.screen.ready:
                break
            await pilot.pause(0.02)
        await settle(pilot)
        assert isinstance(app.screen, ProcessTreeScreen) and _cursor_image(app.screen) == "rundll32.exe"

    drive(case_path, scenario)


@covers("tree.session", "process.session", "sessions.tree", "tree.search", "tree.next_match", "tree.previous_match")
def test_s_goes_from_a_process_to_its_logon_session_and_back_to_its_tree(case_path: Path) -> None:
    from tui.screens.prompt import PromptScreen
    from tui.screens.sessions import SessionsScreen
    from tui.screens.tree import ProcessTreeScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = await _tree_at_rundll32(app, pilot)
        await press(pilot, *keys_of("tree.search"))
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"wevtutil")
        await press(pilot, "enter")
        await settle(pilot)
        assert _cursor_image(scr) == "wevtutil.exe"
        first = scr.tree.cursor_node
        await press(pilot, *keys_of("tree.next_match"))
        assert _cursor_image(scr) == "wevtutil.exe" and scr.tree.cursor_node is not first
        await press(pilot, *keys_of("tree.previous_match"))
        assert scr.tree.cursor_node is first
        await press(pilot, *keys_of("tree.session"))
        await settle(pilot)
        assert isinstance(app.screen, SessionsScreen)
        sessions_screen = app.screen
        assert sessions_screen.view is not None and sessions_screen.view.count == 1
        await press(pilot, *keys_of("sessions.tree"))
        for _ in range(100):
            if isinstance(app.screen, ProcessTreeScreen) and app.screen.ready:
                break
            await pilot.pause(0.02)
        assert isinstance(app.screen, ProcessTreeScreen)
        await press(pilot, *keys_of("tree.open"))
        await settle(pilot)
        await press(pilot, *keys_of("process.session"))
        await settle(pilot)
        assert isinstance(app.screen, SessionsScreen)

    drive(case_path, scenario)


def test_every_binding_of_the_default_keymap_is_pressed_by_a_test() -> None:
    wanted = {f"{screen}.{action}" for screen, actions in ACTIONS.items() for action in actions}
    wanted |= {f"preset.{name}" for name in KEYMAP.presets}
    missing = sorted(wanted - COVERED)
    assert not missing, f"bindings without a Pilot test: {missing}"


def test_with_no_color_the_highlighted_value_of_a_list_is_reversed(case_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Without colour the highlight kept only bold, which the count column of every row has too.
    from tui.screens.base import KeyList

    monkeypatch.setenv("NO_COLOR", "1")

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await press(pilot, "l")
        await press(pilot, *keys_of("timeline.frequency"))
        listing = app.screen.query_one(KeyList)
        await press(pilot, keys_of("frequency.cursor_down")[0])
        assert listing.highlighted == 1
        styles = [[seg.style for seg in listing.render_line(y) if seg.text.strip()] for y in (0, 1)]
        assert not any(s is not None and s.reverse for s in styles[0])
        assert styles[1] and all(s is not None and s.reverse for s in styles[1])
        assert listing.render_line(1).text.startswith(">") and not listing.render_line(0).text.startswith(">")

    drive(case_path, scenario, size=(80, 24))


# -- findings ------------------------------------------------------------------------------------------
def _findings_screen(app: AshiatoApp) -> Any:
    from tui.screens.findings import FindingsScreen

    assert isinstance(app.screen, FindingsScreen), app.screen
    return app.screen


@covers("timeline.findings", "findings.cursor_down", "findings.cursor_up", "findings.page_down", "findings.page_up",
        "findings.first", "findings.last", "findings.column_left", "findings.column_right", "findings.open",
        "findings.back", "findings.help", "findings.filter", "findings.drop_filter", "findings.keep_value",
        "findings.exclude_value", "findings.search", "findings.next_match", "findings.previous_match",
        "findings.cancel", "findings.session", "findings.tree", "findings.allow", "findings.coverage")
def test_bang_opens_the_findings_worst_first_and_each_key_goes_where_it_says(
        case_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import findings

    monkeypatch.setattr(findings.rules, "user_rules_dir", lambda: tmp_path / "rules")
    with Case(case_path, read_only=True) as case:
        expected = findings.listing(case.cursor())
    assert expected

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        tl = screen_of(app)
        assert tl.status.findings == (len(expected), sum(f["rank"] >= 3 for f in expected))
        await press(pilot, *keys_of("timeline.findings"))
        scr = _findings_screen(app)
        table = scr.table
        assert table.count == len(expected) and table.current_row()["id"] == expected[0]["id"]
        await _moves_like_the_timeline(pilot, table, "findings")
        await press(pilot, *keys_of("findings.help"))
        assert "Findings" in str(app.screen.query_one("#help-text").render())
        await press(pilot, "q")
        # filter, then drop it; keep and exclude the focused rule
        for key in keys_of("findings.filter"):
            await press(pilot, key)
            assert app.screen.__class__.__name__ == "PromptScreen"
            await press(pilot, "escape")
        await press(pilot, keys_of("findings.filter")[0])
        await pilot.press(*"rule:lsass-access")
        await press(pilot, "enter")
        lsass = [f for f in expected if f["rule"] == "lsass-access"]
        assert table.count == len(lsass) >= 1
        await press(pilot, *keys_of("findings.drop_filter"))
        assert table.count == len(expected)
        while table.focused_column_name() != "rule":
            await press(pilot, "l")
        first_rule = table.current_row()["rule"]
        await press(pilot, *keys_of("findings.keep_value"))
        assert scr.filters == [f'rule:"{first_rule}"'] or scr.filters == [f"rule:{first_rule}"]
        assert table.count == sum(f["rule"] == first_rule for f in expected)
        await press(pilot, *keys_of("findings.drop_filter"))
        await press(pilot, *keys_of("findings.exclude_value"))
        assert table.count == sum(f["rule"] != first_rule for f in expected)
        await press(pilot, *keys_of("findings.drop_filter"))
        # search jumps between lsass findings without filtering
        await press(pilot, *keys_of("findings.search"))
        await pilot.press(*"rule:lsass*")
        await press(pilot, "enter")
        assert table.current_row()["rule"].startswith("lsass")
        here = table.cursor
        await press(pilot, *keys_of("findings.next_match"))
        await press(pilot, *keys_of("findings.previous_match"))
        assert table.cursor == here and table.count == len(expected)
        await press(pilot, keys_of("findings.cancel")[0])
        assert scr.search is None
        # the lsass finding: its process tree, then its events in the timeline
        target = table.current_row()
        await press(pilot, *keys_of("findings.tree"))
        assert app.screen.__class__.__name__ == "ProcessTreeScreen"
        await press(pilot, "q")
        assert _findings_screen(app) is scr
        await press(pilot, *keys_of("findings.open"))
        assert app.screen is tl and tl.state.filters == [f"finding:{target['id']}"]
        assert tl.view.count == len(target["eids"])
        # a finding with a session: s opens it
        await press(pilot, *keys_of("timeline.findings"))
        scr = _findings_screen(app)
        with_session = next(i for i, f in enumerate(expected) if f["logon_id"] is not None and f["boot"] is not None)
        scr.table.move_to(with_session)
        await settle(pilot)
        await press(pilot, *keys_of("findings.session"))
        assert app.screen.__class__.__name__ == "SessionsScreen" and app.screen.table.count == 1
        await press(pilot, "q")
        # x: the lsass finding's image allowlisted in the user's rules directory; it goes away
        scr = _findings_screen(app)
        index = next(i for i, f in enumerate(expected) if f["rule"] == "lsass-access")
        scr.table.move_to(index)
        await settle(pilot)
        await press(pilot, *keys_of("findings.allow"))
        prompt = app.screen
        assert prompt.__class__.__name__ == "PromptScreen"
        await press(pilot, "enter")
        for _ in range(50):
            await settle(pilot)
            if "allowlisted" in scr.status.message:
                break
        assert "allowlisted" in scr.status.message, scr.status.message
        assert not [f for f in _rows_of(scr) if f["rule"] == "lsass-access"]
        assert "lsass-access" in (tmp_path / "rules" / "allowlist.toml").read_text(encoding="utf-8")
        # C: the coverage panel, per host, says what is not visible
        await press(pilot, *keys_of("findings.coverage"))
        text = str(app.screen.query_one("#help-text").render())
        assert text.startswith("Coverage") and "WS07" in text and "not visible" in text
        await press(pilot, *keys_of("help.back")[:1])
        assert _findings_screen(app) is scr
        await press(pilot, *keys_of("findings.back")[:1])
        assert app.screen is tl

    drive(case_path, scenario, size=(100, 30))


def _rows_of(scr: Any) -> list[dict[str, Any]]:
    from engine import findings

    with scr.session.cursor() as cur:
        return findings.listing(cur)


def test_the_filter_prompt_keeps_the_timeline_visible_behind_it(case_path: Path) -> None:
    from tui.screens.prompt import PromptScreen

    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        await press(pilot, keys_of("timeline.filter")[0])
        assert isinstance(app.screen, PromptScreen)
        shot = app.export_screenshot()  # what the terminal shows: the prompt over the rows
        first = scr.timeline.row_at(0)
        assert "time&#160;(UTC)" in shot and f"{first['ts']:%H:%M:%S}" in shot
        await press(pilot, "escape")

    drive(case_path, scenario, size=(80, 24))


def test_at_160_columns_the_side_pane_leaves_a_preset_the_width_its_columns_need(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        scr = screen_of(app)
        assert scr.side_visible
        # The table first: every default column at its preferred width, the side pane what is left.
        assert [p.name for p in scr.timeline.placed] == scr.timeline.columns
        assert scr.side.outer_size.width >= 36
        await press(pilot, "2")  # failed logons: user, source IP, workstation
        widths = {p.name: p.width for p in scr.timeline.placed}
        assert 36 <= scr.side.outer_size.width < 64
        assert {"user", "src_ip", "workstation", "summary"} <= set(widths) and widths["src_ip"] >= 12

    drive(case_path, scenario, size=(160, 48))
