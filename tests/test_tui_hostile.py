"""Event text is data: markup, terminal escapes, carriage returns and huge scripts are shown as
literal, escaped, truncated text and never reach the terminal as control."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text

from fixtures.incident import BLOAT_SIZE, HOSTILE_MARKUP, HOSTILE_OSC52
from tui.app import AshiatoApp
from tui.safe_text import CELL_LIMIT, ESC_GLYPH, escape, escape_lines, fit, plain
from tui.testing import build_incident_case, settle, use_utc

use_utc()

CONTROL = {chr(c) for c in range(0x20) if c != 0x0A} | {"\x7f"} | {chr(c) for c in range(0x80, 0xA0)}


# -- the escaping rules ---------------------------------------------------------------------------------------
def test_markup_is_kept_as_the_characters_it_is() -> None:
    assert escape("[bold red]pwned[/]") == "[bold red]pwned[/]"
    text = plain("[bold red]pwned[/]")
    assert text.plain == "[bold red]pwned[/]" and not text.spans


def test_an_osc_52_clipboard_write_is_shown_escaped_not_sent() -> None:
    shown = escape("\x1b]52;c;ZXZpbA==\x07")
    assert shown == f"{ESC_GLYPH}]52;c;ZXZpbA==\\x07"
    assert not set(shown) & CONTROL


def test_a_carriage_return_cannot_overwrite_the_start_of_the_line() -> None:
    assert escape("net user x\rC:\\Windows\\svchost.exe") == "net user x\\rC:\\Windows\\svchost.exe"
    assert escape_lines("a\r\nb\rc") == ["a", "b\\rc"]


def test_c1_controls_and_bidi_overrides_are_made_visible() -> None:
    assert escape("a\x9bb\u202ec\x00") == "a\\x9bb\\u202ec\\x00"
    assert escape("tab\there\nnext") == "tab\\there\\nnext"


def test_a_one_megabyte_value_is_cut_for_display_only() -> None:
    script = "A" * (1 << 20)
    shown = escape(script)
    assert len(shown) == CELL_LIMIT + 1 and shown.endswith("…")
    lines = escape_lines(script, 4000)
    assert sum(len(line) for line in lines) < 4100 and "1,048,576 characters" in lines[-1]
    assert len(script) == 1 << 20  # the value itself is untouched


def test_fit_pads_or_cuts_to_the_exact_width() -> None:
    assert fit("abc", 5) == "abc  "
    assert fit("abcdef", 4) == "abc…"
    assert fit("東京都", 4) == "東…" or len(Text(fit("東京都", 4)).plain) <= 4


# -- the running app ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def case_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_incident_case(tmp_path_factory.mktemp("hostile"))


def run(case_path: Path, scenario: Any, size: tuple[int, int] = (160, 48)) -> None:
    app = AshiatoApp(case_path, user_keymap=False)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await scenario(app, pilot)

    asyncio.run(main())


def _visible_lines(app: AshiatoApp) -> list[str]:
    tl = app.timeline_screen.timeline
    return [tl.render_line(y).text for y in range(tl.size.height)]


def _assert_no_control(strings: list[str]) -> None:
    for s in strings:
        assert not set(s) & CONTROL, repr(s)


async def _search(pilot: Any, text: str) -> None:
    await pilot.press("/")
    await pilot.press(*text)
    await pilot.press("enter")
    await settle(pilot)


def test_hostile_command_lines_render_as_literal_escaped_text(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await _search(pilot, "pwned")
        lines = _visible_lines(app)
        assert any(HOSTILE_MARKUP in line for line in lines)
        assert any(f"{ESC_GLYPH}]52;c;ZXZpbA==\\x07{ESC_GLYPH}[31mall good" in line for line in lines)
        assert any("/domain\\rC:\\Windows" in line for line in lines)
        _assert_no_control(lines)
        # the side pane and the full screen export are clean too
        side = app.timeline_screen.side
        _assert_no_control([side.render_line(y).text for y in range(side.size.height)])
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\x07" not in svg

    run(case_path, scenario, size=(220, 50))


def test_the_detail_pane_shows_the_osc_sequence_escaped_and_copies_it_intact(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await _search(pilot, "ZXZpbA")
        await pilot.press("enter")
        await settle(pilot)
        pane = app.screen.view_pane
        lines = pane.plain_lines()
        _assert_no_control(lines)
        assert any(f"{ESC_GLYPH}]52;c;ZXZpbA==" in line for line in lines)
        pane.move_to(next(i for i, e in enumerate(pane.entries) if e.name == "CommandLine"))
        await pilot.press("y")
        await settle(pilot)
        assert HOSTILE_OSC52 in app.clipboard  # the stored value, for the analyst's clipboard
        await pilot.press("r")
        await settle(pilot)
        _assert_no_control(pane.plain_lines())

    run(case_path, scenario)


def test_a_one_megabyte_script_is_truncated_on_screen_but_not_in_the_case(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        await _search(pilot, "eid:4104 Invoke-Bloat")
        row = app.timeline_screen.timeline.current_row()
        assert len(row["script_text"]) == BLOAT_SIZE
        lines = _visible_lines(app)
        assert all(len(line) <= 160 for line in lines)
        await pilot.press("enter")
        await settle(pilot)
        pane = app.screen.view_pane
        shown = pane.plain_lines()
        assert sum(len(line) for line in shown) < 30_000
        assert any("1,048,576 characters" in line for line in shown)
        pane.move_to(next(i for i, e in enumerate(pane.entries) if e.name == "ScriptBlockText"))
        await pilot.press("y")
        await settle(pilot)
        assert len(app.clipboard) == BLOAT_SIZE
        await pilot.press("r")
        await settle(pilot)
        assert sum(len(line) for line in pane.plain_lines()) < 80_000

    run(case_path, scenario)
