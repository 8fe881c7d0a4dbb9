"""Keymaps: the default, the user's layered over it, and strict errors that say where and what."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.keymap import ACTIONS, DEFAULT_PATH, KeymapError, find_line, load_keymap, normalize_key


def write(tmp_path: Path, text: str, name: str = "keymap.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> KeymapError:
    with pytest.raises(KeymapError) as info:
        load_keymap(path, user_config=False)
    return info.value


def test_the_default_keymap_binds_every_action_and_the_required_hotkeys() -> None:
    km = load_keymap(user_config=False)
    for screen, actions in ACTIONS.items():
        for action in actions:
            assert km.keys(screen, action), f"{screen}.{action} has no key"
    by_key = {key: p for p in km.presets.values() for key in p.keys}
    assert by_key["1"].filter == "channel:Security eid:4624"
    assert "4625" in by_key["2"].filter and "4771" in by_key["2"].filter and "4776" in by_key["2"].filter
    assert "4672" in by_key["3"].filter
    assert "Microsoft-Windows-Sysmon/Operational" in by_key["4"].filter and "4688" in by_key["4"].filter
    assert "eid:3" in by_key["5"].filter
    assert "lsass" in by_key["6"].filter
    assert all(i in by_key["7"].filter for i in ("1102", "104")) and "1100" not in by_key["7"].filter
    assert "4104" in by_key["8"].filter and "4103" in by_key["8"].filter
    assert all(i in by_key["9"].filter for i in ("7045", "4697", "4698", "4702"))
    assert all(str(i) in by_key["0"].filter for i in (*range(4720, 4739), 4756))
    names = set(km.presets)
    assert {"kerberos_ntlm", "rdp", "registry", "files", "explicit_credentials", "shares"} <= names


def test_textual_key_names_and_characters_are_both_accepted() -> None:
    assert normalize_key("?") == "question_mark"
    assert normalize_key("question_mark") == "question_mark"
    assert normalize_key("ctrl+f") == "ctrl+f"
    assert normalize_key("G") == "G"
    assert normalize_key("PgDn") == "pagedown"
    assert normalize_key("ctlr+f") is None
    assert normalize_key("pagdown") is None


def test_a_user_keymap_rebinds_an_action_and_takes_its_key_from_the_default(tmp_path: Path) -> None:
    km = load_keymap(write(tmp_path, '[timeline]\nhistogram = "m"\n'), user_config=False)
    assert km.keys("timeline", "histogram") == ["m"]
    assert km.keys("timeline", "mark") == []  # m moved to the histogram
    assert km.textual()["timeline.histogram"] == "m"


def test_an_empty_list_unbinds_an_action(tmp_path: Path) -> None:
    km = load_keymap(write(tmp_path, "[timeline]\nsave_filter = []\n"), user_config=False)
    assert km.keys("timeline", "save_filter") == []


def test_a_user_preset_is_added_and_a_default_one_can_be_changed(tmp_path: Path) -> None:
    path = write(tmp_path, """
[presets.psexec]
key = "P"
title = "PsExec"
filter = 'service:PSEXESVC'
columns = ["time", "host", "summary"]

[presets.logons]
columns = ["time", "host", "user", "src_ip"]
""")
    km = load_keymap(path, user_config=False)
    assert km.presets["psexec"].keys == ["P"] and km.presets["psexec"].source == str(path)
    assert km.presets["logons"].filter == "channel:Security eid:4624"  # kept from the default
    assert km.presets["logons"].columns == ["time", "host", "user", "src_ip"]


def test_the_user_config_dir_keymap_is_read_and_keymap_file_goes_on_top(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    (config / "ashiato").mkdir(parents=True)
    (config / "ashiato" / "keymap.toml").write_text('[timeline]\nhelp = "H"\nmark = "M"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    km = load_keymap(write(tmp_path, '[timeline]\nhelp = "F1"\n'))
    assert km.keys("timeline", "mark") == ["M"]
    assert km.keys("timeline", "help") == ["f1"]
    assert km.presets["shares"].keys == []  # H was the shares preset's key until the user took it
    assert len(km.files) == 3


def test_an_unknown_action_names_the_file_the_line_and_the_closest_action(tmp_path: Path) -> None:
    path = write(tmp_path, '# mine\n[timeline]\ncursor_down = "j"\ncurser_up = "k"\n')
    err = error_of(path)
    assert err.path == str(path) and err.line == 4
    assert '"curser_up"' in str(err) and err.suggestion == "cursor_up"
    assert str(err).startswith(f"{path}:4: unknown action")


def test_an_unknown_key_name_suggests_the_real_one(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, '[detail]\n\nback = ["q", "escpe"]\n'))
    assert err.line == 3 and '"escpe"' in str(err) and err.suggestion == "escape"
    err = error_of(write(tmp_path, '[timeline]\nfilter = "ctlr+f"\n'))
    assert err.line == 2 and err.suggestion == "ctrl+f"


def test_an_unknown_section_or_preset_field_or_column_is_an_error(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "[timline]\nhelp = 'x'\n"))
    assert err.line == 1 and err.suggestion == "timeline"
    err = error_of(write(tmp_path, '[presets.logons]\nkey = "1"\nfilters = "eid:4624"\n'))
    assert err.line == 3 and '"filters"' in str(err) and err.suggestion == "filter"
    err = error_of(write(tmp_path, '[presets.logons]\ncolumns = ["time", "hots"]\n'))
    assert err.line == 2 and '"hots"' in str(err) and err.suggestion == "host"


def test_a_new_preset_needs_a_key_and_a_filter_and_the_filter_must_parse(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, '[presets.mine]\nkey = "P"\n'))
    assert err.line == 1 and 'needs a "filter"' in str(err)
    err = error_of(write(tmp_path, '[presets.mine]\nkey = "P"\nfilter = "eid:4624 after:yesterday"\n'))
    assert err.line == 3 and "after:" in str(err)
    err = error_of(write(tmp_path, '[presets.mine]\nkey = "P"\nfilter = \'"unclosed\'\n'))
    assert err.line == 3 and "unclosed quote" in str(err)


def test_two_actions_on_one_key_in_the_same_file_is_an_error(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, '[timeline]\nhelp = "x"\n\n[presets.mine]\nkey = "x"\nfilter = "eid:1"\n'))
    assert 'key "x" is bound to both "help" and "preset:mine"' in str(err) and err.line == 5


def test_broken_toml_reports_its_line(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, '[timeline]\nhelp = "?"\nmark = \n'))
    assert err.line == 3 and "not valid TOML" in str(err)


def test_a_missing_keymap_file_is_an_error_naming_it(tmp_path: Path) -> None:
    err = error_of(tmp_path / "absent.toml")
    assert "absent.toml" in str(err) and "cannot read" in str(err)


def test_find_line_locates_keys_in_tables_and_dotted_keys() -> None:
    text = '[a]\nx = 1\n[presets."b c"]\nkey = "1"\n'
    assert find_line(text, ("a",), "x") == 2
    assert find_line(text, ("presets", "b c"), "key") == 4
    assert find_line('timeline.help = "?"\n', ("timeline",), "help") == 1
    assert find_line(DEFAULT_PATH.read_text(), ("presets", "logons"), "filter") is not None


def test_run_app_prints_a_keymap_error_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.app import run_app

    bad = write(tmp_path, '[timeline]\nhelpp = "?"\n')
    with pytest.raises(SystemExit) as info:
        run_app(str(tmp_path / "no-case.duckdb"), keymap_path=str(bad))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and 'did you mean "help"' in err
