"""Timeline columns at the sizes responders use: what survives at 80 columns, and how a cell is cut."""

from __future__ import annotations

import pytest

from tui.keymap import load_keymap
from tui.widgets.columns import DEFAULT_COLUMNS, OWN_VIEW_SUMMARY_MINIMUM, fit_cell, layout, own_columns, spec


def _widths(columns: list[str], width: int) -> dict[str, int]:
    return {p.name: p.width for p in layout(columns, width)}


@pytest.mark.parametrize("preset", [None, "failed_logons", "lsass_access", "logons", "rdp"])
def test_at_80_columns_time_id_host_and_a_readable_summary_stay_and_the_views_own_columns_come_next(
        preset: str | None) -> None:
    columns = DEFAULT_COLUMNS if preset is None else load_keymap(user_config=False).presets[preset].columns
    widths = {p.name: p.width for p in layout(columns, 80, None, own_columns(columns))}
    own = [c for c in columns if c in own_columns(columns)]
    assert widths["summary"] >= (OWN_VIEW_SUMMARY_MINIMUM if own else 24)
    assert {"time", "event_id", "host"} <= set(widths)
    assert sum(w + 1 for w in widths.values()) + 1 <= 80
    if preset is None:
        assert "channel" in widths  # an Application 4625 must not read as a failed logon
    else:  # the preset's first own column (its user, its process) is what it was chosen for: readable
        assert widths[own[0]] == spec(own[0]).pref


def test_at_80_columns_the_lsass_preset_shows_the_whole_process_name_and_access_mask() -> None:
    columns = load_keymap(user_config=False).presets["lsass_access"].columns
    widths = {p.name: p.width for p in layout(columns, 80, None, own_columns(columns))}
    assert widths["process"] >= len("Outflank-Dumpert") and widths["granted_access"] >= len("0x1fffff")


def test_at_160_columns_a_view_with_its_own_columns_still_gives_the_host_its_width() -> None:
    columns = load_keymap(user_config=False).presets["lsass_access"].columns
    widths = {p.name: p.width for p in layout(columns, 160, {"host": 15}, own_columns(columns))}
    assert widths["host"] == 15 and widths["object_name"] == spec("object_name").pref


def test_an_object_path_too_long_for_its_column_keeps_its_end() -> None:
    assert fit_cell(r"\Device\HarddiskVolume2\Windows\System32\lsass.exe", "object_name", 20) == "…\\System32\\lsass.exe"


def test_at_80_columns_the_failed_logons_preset_shows_who_and_from_where() -> None:
    columns = load_keymap(user_config=False).presets["failed_logons"].columns
    assert {"user", "src_ip"} <= {p.name for p in layout(columns, 80, None, own_columns(columns))}


def test_wider_terminals_give_the_preset_columns_back_in_the_order_given() -> None:
    columns = load_keymap(user_config=False).presets["failed_logons"].columns
    placed = [p.name for p in layout(columns, 120)]
    assert placed == [c for c in columns if c in placed]
    assert {"user", "src_ip", "summary"} <= set(placed)
    assert all(p.x + p.width <= 120 for p in layout(columns, 120))


def test_an_account_too_long_for_the_user_column_loses_its_domain_first() -> None:
    assert fit_cell("theshire.local\\lrodriguez", "user", 12).rstrip() == "lrodriguez"
    assert fit_cell("CORP\\bob", "user", 12).rstrip() == "CORP\\bob"
    assert fit_cell("theshire.local\\lrodriguez", "summary", 12) == "theshire.lo…"


def test_hosts_too_long_for_their_column_keep_the_end_that_tells_them_apart() -> None:
    from tui.widgets.columns import host_width

    cut = {fit_cell(h, "host", 10) for h in ("WORKSTATION5", "WORKSTATION6", "WORKSTATION7")}
    assert cut == {"WORK…TION5", "WORK…TION6", "WORK…TION7"}
    assert fit_cell("WS01", "host", 10).rstrip() == "WS01"
    # The column is as wide as the case's longest host as shown (without its domain).
    assert host_width(["WS01.corp.local", "DC01"]) == 8
    assert host_width(["WORKSTATION5.corp.local", None]) == 12
    assert host_width(["X" * 40]) == 24
