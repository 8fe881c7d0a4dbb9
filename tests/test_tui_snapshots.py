"""SVG snapshots (pytest-textual-snapshot) of each screen at 80×24 and 160×48, TZ=UTC, on the
generated incident. Update with `pytest tests/test_tui_snapshots.py --snapshot-update` after
looking at the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tui.app import AshiatoApp
from tui.testing import build_incident_case, settle, use_utc

use_utc()

SIZES = [(80, 24), (160, 48)]


@pytest.fixture(scope="module")
def case_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_incident_case(tmp_path_factory.mktemp("snap"))


def keys(*pressed: str) -> Any:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run_before


def app_for(case_path: Path) -> AshiatoApp:
    return AshiatoApp(case_path, user_keymap=False)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_timeline_shows_failed_logons_after_pressing_2(snap_compare: Any, case_path: Path,
                                                            size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=keys("2", "j", "j", "l"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_first_view_lists_every_event(snap_compare: Any, case_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=keys())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_detail_pane_explains_a_failed_logon(snap_compare: Any, case_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=keys("2", "j", "enter"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_histogram_marks_log_clears(snap_compare: Any, case_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=keys("i", "j"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_frequency_of_hosts(snap_compare: Any, case_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=keys("l", "F"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_help_lists_the_active_keymap(snap_compare: Any, case_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=keys("question_mark"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_sessions_view_shows_alices_rdp_session_with_its_flags(snap_compare: Any, case_path: Path,
                                                                  size: tuple[int, int]) -> None:
    typed = [*"user:alice"]
    assert snap_compare(app_for(case_path), terminal_size=size,
                        run_before=keys("s", "colon", *typed, "enter"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_failed_logons_view_puts_the_spray_verdict_first(snap_compare: Any, case_path: Path,
                                                             size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=keys("L"))


def _tree_at(image: str, *after: str) -> Any:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        pilot.app.timeline_screen.apply_filter_text(f"image:{image} eid:1", image)
        await settle(pilot)
        for key in ("T", *after):
            await pilot.press(key)
            for _ in range(200):
                if getattr(pilot.app.screen, "ready", True) and not getattr(pilot.app.screen, "is_loading", False):
                    break
                await pilot.pause(0.02)
            await settle(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_process_tree_opens_at_the_lsass_dumping_rundll32(snap_compare: Any, case_path: Path,
                                                              size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=_tree_at("rundll32.exe"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_process_view_shows_how_rundll32_was_started_and_what_it_did(snap_compare: Any, case_path: Path,
                                                                         size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=_tree_at("rundll32.exe", "enter"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_findings_view_puts_the_critical_spray_success_first(snap_compare: Any, case_path: Path,
                                                                 size: tuple[int, int]) -> None:
    assert snap_compare(app_for(case_path), terminal_size=size, run_before=keys("exclamation_mark"))
