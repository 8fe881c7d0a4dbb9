"""Sessions as the engine keeps them: updated as files are added, filtered with the language, drawn
as a graph, and failed logons judged with thresholds a user can change."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import ingest_into

from engine import Case, derived, logon_map, logons, sessions, views
from engine.filters import FilterError
from fixtures import sessions as story

SHAPE = "evtx_jsonl"


def _rows(case_path: Path) -> list[tuple[Any, ...]]:
    with Case(case_path, read_only=True) as case:
        return case.cursor().execute("SELECT * FROM sessions ORDER BY ord").fetchall()


@pytest.fixture(scope="module")
def story_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("story")
    paths = story.write(tmp / "files", shapes=[SHAPE])
    case_path = tmp / "case.duckdb"
    ingest_into(case_path, [paths[SHAPE]])
    return case_path


@pytest.fixture
def cur(story_case: Path) -> Any:
    with Case(story_case, read_only=True) as case:
        yield case.cursor()


# -- kept current ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0.3, 0.5, 0.8])
def test_adding_a_later_file_updates_sessions_to_what_one_ingest_of_both_gives(tmp_path: Path, cut: float) -> None:
    evs = story.events()
    split = evs[0].time + (evs[-1].time - evs[0].time) * cut
    first = story.write(tmp_path / "a", shapes=[SHAPE], evs=[e for e in evs if e.time < split])[SHAPE]
    second = story.write(tmp_path / "b", shapes=[SHAPE], evs=[e for e in evs if e.time >= split])[SHAPE]
    step_by_step = tmp_path / "steps.duckdb"
    ingest_into(step_by_step, [first])
    ingest_into(step_by_step, [second])
    at_once = tmp_path / "once.duckdb"
    ingest_into(at_once, [first, second])
    assert _rows(step_by_step) == _rows(at_once)
    # …and both equal a rebuild from scratch.
    with Case(step_by_step) as case:
        derived.refresh(case, full=True)
    assert _rows(step_by_step) == _rows(at_once)


def test_a_file_of_another_host_leaves_the_sessions_of_the_others_as_they_were(tmp_path: Path) -> None:
    evs = story.events()
    ws15 = [e for e in evs if e.computer.startswith("WS15")]
    others = [e for e in evs if not e.computer.startswith("WS15")]
    case_path = tmp_path / "case.duckdb"
    ingest_into(case_path, [story.write(tmp_path / "a", shapes=[SHAPE], evs=others)[SHAPE]])
    before = {r[1:3] + r[3:4]: r[1:] for r in _rows(case_path)}
    ingest_into(case_path, [story.write(tmp_path / "b", shapes=[SHAPE], evs=ws15)[SHAPE]])
    after = {r[1:3] + r[3:4]: r[1:] for r in _rows(case_path)}
    assert {k: v for k, v in after.items() if not k[0].startswith("WS15")} == before
    assert any(k[0].startswith("WS15") for k in after)


def test_a_case_whose_derived_tables_are_stale_says_so_until_opened_read_write(story_case: Path,
                                                                            tmp_path: Path) -> None:
    import shutil

    import duckdb

    copy = tmp_path / "copy.duckdb"
    shutil.copy(story_case, copy)
    con = duckdb.connect(str(copy))
    con.execute("UPDATE meta SET value = 'boots0-sessions0' WHERE key = 'derived_version'")
    con.close()
    with Case(copy, read_only=True) as case:
        assert case.needs_repair()
    with Case(copy) as case:
        assert not case.needs_repair()
    assert _rows(copy) == _rows(story_case)


# -- the filter language over sessions ---------------------------------------------------------------
def _keys(cur: Any, text: str) -> set[tuple[str, int]]:
    return {(r["user"], r["logon_type"]) for r in sessions.query(cur, text)}


def test_session_filters_take_columns_aliases_flags_and_booleans(cur: Any) -> None:
    everything = sessions.query(cur, "")
    assert sessions.query(cur, "privileged:yes") == [r for r in everything if r["privileged"]]
    assert sessions.query(cur, "privileged:no") == [r for r in everything if not r["privileged"]]
    assert sessions.query(cur, "flag:ntlm") == [r for r in everything if "ntlm_network" in r["flags"]]
    assert sessions.query(cur, "type:3,10") == [r for r in everything if r["logon_type"] in (3, 10)]
    assert sessions.query(cur, "-type:5") == [r for r in everything if r["logon_type"] != 5]
    assert sessions.query(cur, "user:ALICE") == [r for r in everything if (r["user"] or "").lower() == "alice"]
    rdp = [r for r in everything if r["rdp_clients"]]
    assert rdp and sessions.query(cur, f"ip:{rdp[0]['src_ip']}") == [
        r for r in everything if r["src_ip"] == rdp[0]["src_ip"]]


def test_a_linked_session_is_found_by_either_of_its_logon_ids(cur: Any) -> None:
    linked = [r for r in sessions.query(cur, "") if r["linked_logon_id"]]
    assert linked
    for row in linked:
        for lid in (row["logon_id"], row["linked_logon_id"]):
            assert [r["logon_id"] for r in sessions.query(cur, f"logon_id:0x{lid:x} host:{row['host']}")] == [
                row["logon_id"]]


def test_after_and_before_bound_the_sessions_span(cur: Any) -> None:
    everything = sessions.query(cur, "")
    middle = sorted(r["start"] for r in everything)[len(everything) // 2]
    later = sessions.query(cur, f"after:{middle.isoformat()}")
    assert later == [r for r in everything if (r["end"] or r["last_seen"] or r["start"]) >= middle]
    earlier = sessions.query(cur, f"before:{middle.isoformat()}")
    assert earlier == [r for r in everything if r["start"] < middle]


def test_a_misspelt_session_column_is_refused_with_the_nearest_name(cur: Any) -> None:
    with pytest.raises(FilterError) as info:
        sessions.query(cur, "privilegd:yes")
    assert info.value.suggestion == "privileged"
    with pytest.raises(FilterError):
        sessions.query(cur, "privileged:maybe")


def test_the_session_term_of_the_timeline_selects_the_events_naming_its_ids_in_its_boot(cur: Any) -> None:
    for row in sessions.query(cur, "type:2,10"):
        key = sessions.key_of(row)
        view = views.resolve(cur, f"session:{key.text()}")
        got = {int(r[0]) for r in cur.execute("SELECT eid FROM events WHERE list_contains(?, pos)",
                                              [[int(p) for p in view.positions]]).fetchall()}
        ids = [row["logon_id"]] + ([row["linked_logon_id"]] if row["linked_logon_id"] else [])
        lo, hi = cur.execute("SELECT start_pos, end_pos FROM boots WHERE host = ? AND boot = ?",
                             [row["host"], row["boot"]]).fetchall()[0]
        by_id = {int(r[0]) for r in cur.execute(
            "SELECT eid FROM events WHERE host = ? AND pos BETWEEN ? AND ? AND (list_contains(?, target_logon_id) "
            "OR list_contains(?, subject_logon_id))", [row["host"], lo, hi, ids, ids]).fetchall()}
        attached = {int(r[0]) for r in cur.execute(
            "SELECT eid FROM session_events WHERE host = ? AND boot = ? AND logon_id = ?",
            [row["host"], row["boot"], row["logon_id"]]).fetchall()}
        started = [r[0] for r in cur.execute(
            "SELECT process_guid FROM events WHERE list_contains(?, eid) AND event_id = 1 AND channel = ?",
            [sorted(by_id), "Microsoft-Windows-Sysmon/Operational"]).fetchall() if r[0]]
        by_process = {int(r[0]) for r in cur.execute(
            "SELECT eid FROM events WHERE host = ? AND channel = ? AND list_contains(?, process_guid)",
            [row["host"], "Microsoft-Windows-Sysmon/Operational", started]).fetchall()}
        assert got == by_id | attached | by_process
        assert row["first_eid"] in got


def test_a_session_term_that_names_no_session_is_refused(cur: Any) -> None:
    with pytest.raises(FilterError) as info:
        views.resolve(cur, "session:WS07")
    assert "HOST/BOOT/0xLOGONID" in str(info.value)


# -- who went where -----------------------------------------------------------------------------------
def test_the_logon_graph_is_graphml_with_a_node_per_account_source_and_host(cur: Any) -> None:
    edges = logon_map.edges(cur)
    root = ET.fromstring(logon_map.graphml(edges))
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    labels = [n.find("g:data[@key='label']", ns).text for n in root.iter("{http://graphml.graphdrawing.org/xmlns}node")]
    expected = ({e["account"] for e in edges} | {e["source"] for e in edges if e["source"]} | {e["host"] for e in edges})
    assert sorted(labels) == sorted(expected)
    arcs = list(root.iter("{http://graphml.graphdrawing.org/xmlns}edge"))
    assert len(arcs) == len(edges) + sum(1 for e in edges if e["source"])
    assert sum(e["successes"] + e["failures"] for e in edges) == cur.execute(
        "SELECT count(*) FROM events WHERE channel = 'Security' AND target_user IS NOT NULL AND (event_id = 4624 "
        "OR event_id = 4625 OR (event_id IN (4768, 4771, 4776) AND coalesce(status, 0) <> 0))").fetchall()[0][0]
    dot = logon_map.dot(edges)
    assert dot.startswith("digraph logons {") and dot.count(" -> ") == len(arcs)


def test_graph_labels_from_the_logs_cannot_break_the_graph_file() -> None:
    hostile = [{"account": 'x"<y>&\x1b]52;c;\x07', "source": "10.0.0.1", "host": "H\\", "logon_type": 3,
                "auth_package": "NTLM", "successes": 1, "failures": 0, "first": None, "last": None}]
    root = ET.fromstring(logon_map.graphml(hostile))
    assert root is not None
    assert "\x1b" not in logon_map.dot(hostile) and '"H\\\\"' in logon_map.dot(hostile)


def test_the_summary_per_account_counts_its_logons_and_failures(cur: Any) -> None:
    users = {u["account"]: u for u in logon_map.by_user(cur)}
    for account, user in users.items():
        ok = cur.execute("SELECT count(*) FROM events WHERE channel = 'Security' AND event_id = 4624 "
                         "AND lower(target_user) = ?", [account]).fetchall()[0][0]
        assert user["successes"] == ok
    assert users["peggy"]["failures"] >= 1 and users["peggy"]["successes"] == 0


# -- failed logons ------------------------------------------------------------------------------------
def test_lower_thresholds_from_a_user_file_turn_the_near_misses_into_verdicts(cur: Any, tmp_path: Path) -> None:
    default = {v["verdict"] for v in logons.verdicts(cur, logons.load_thresholds(logons.DEFAULT_THRESHOLDS))}
    assert {"brute_force", "password_spray"} <= default
    strict = tmp_path / "t.toml"
    strict.write_text("[brute_force]\nfailures = 4\n[password_spray]\naccounts = 2\n")
    thresholds = logons.load_thresholds(logons.DEFAULT_THRESHOLDS, strict)
    assert thresholds.brute_force_failures == 4 and thresholds.brute_force_minutes == 5
    got = logons.verdicts(cur, thresholds)
    sprays = {v["source"] for v in got if v["verdict"] == "password_spray"}
    assert story.NEAR_SPRAYER_IP in sprays and story.SPRAYER_IP in sprays
    brute = [v for v in got if v["verdict"] == "brute_force"]
    assert len(brute) > len([v for v in logons.verdicts(cur, logons.load_thresholds(logons.DEFAULT_THRESHOLDS))
                             if v["verdict"] == "brute_force"])


def test_a_thresholds_file_with_a_typo_names_the_file_the_line_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text("[brute_force]\nminutes = 5\nfailres = 4\n")
    with pytest.raises(logons.ThresholdError) as info:
        logons.load_thresholds(bad)
    assert f"{bad}:3" in str(info.value) and '"failures"' in str(info.value)
    bad.write_text("[password_spary]\naccounts = 2\n")
    with pytest.raises(logons.ThresholdError, match="password_spray"):
        logons.load_thresholds(bad)
    bad.write_text("[password_spray]\naccounts = 0\n")
    with pytest.raises(logons.ThresholdError, match="at least 1"):
        logons.load_thresholds(bad)


def test_the_failed_logon_rows_take_the_filter_language_over_their_columns(cur: Any) -> None:
    rows = logons.failed(cur)
    spray = logons.filter_rows(rows, f"ip:{story.SPRAYER_IP} kind:verdict")
    assert spray and all(r["kind"] == "verdict" and story.SPRAYER_IP in r["sources"] for r in spray)
    assert {r["verdict"] for r in spray} >= {"password_spray"}
    oscar = logons.filter_rows(rows, "user:oscar")
    assert oscar and all("oscar" in ([r.get("account"), *list(r.get("accounts") or [])]) for r in oscar)
    many = logons.filter_rows(rows, "kind:group count:>=4")
    assert many == [r for r in rows if r["kind"] == "group" and r["count"] >= 4]
    # Dates bound the row's span, and words search its text.
    assert logons.filter_rows(rows, "before:2000-01-01") == []
    assert logons.filter_rows(rows, "-kind:verdict") == [r for r in rows if r["kind"] == "group"]
    with pytest.raises(FilterError, match='did you mean "hosts"'):
        logons.filter_rows(rows, "hots:FS01")


def test_the_logons_command_prints_only_the_rows_its_filter_keeps(story_case: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    assert main(["logons", str(story_case), "--failed", "kind:verdict", "--format", "jsonl"]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert got and all(r["kind"] == "verdict" for r in got)
    assert main(["logons", str(story_case), "--failed", "-kind:verdict", "--format", "jsonl"]) == 0
    groups = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert groups and all(r["kind"] == "group" for r in groups)


def test_the_timeline_filter_of_each_verdict_shows_exactly_its_events(cur: Any) -> None:
    from tui.screens.logons import timeline_filter

    verdicts = logons.verdicts(cur)
    assert verdicts
    for v in verdicts:
        view = views.resolve(cur, timeline_filter(v))
        got = {int(r[0]) for r in cur.execute("SELECT eid FROM events WHERE list_contains(?, pos)",
                                              [[int(p) for p in view.positions]]).fetchall()}
        assert got == set(v["eids"]), v["verdict"]


def test_a_verdict_of_success_after_failures_names_the_session_it_opened(cur: Any) -> None:
    (hit,) = [v for v in logons.verdicts(cur) if v["verdict"] == "success_after_failures"]
    session = hit["session"]
    row = sessions.get(cur, sessions.SessionKey(session["host"], session["boot"], session["logon_id"]))
    assert row is not None and row["user"].lower() == hit["account"] and row["src_ip"] == hit["source"]


# -- the CLI faces ---------------------------------------------------------------------------------------
def test_sessions_output_never_replaces_a_file_unless_forced(story_case: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    out = tmp_path / "logons.graphml"
    out.write_text("keep me")
    assert main(["sessions", str(story_case), "--by", "edge", "--format", "graphml", "-o", str(out)]) == 2
    assert out.read_text() == "keep me" and "--force" in capsys.readouterr().err
    assert main(["sessions", str(story_case), "--by", "edge", "--format", "graphml", "-o", str(out), "--force"]) == 0
    assert ET.parse(out).getroot().tag.endswith("graphml")
    assert main(["sessions", str(story_case), "--format", "graphml"]) == 2
    assert "--by edge" in capsys.readouterr().err


def test_sessions_csv_and_jsonl_carry_the_same_sessions(story_case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    from tui.cli import main

    assert main(["sessions", str(story_case), "-type:5", "--format", "jsonl"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["sessions", str(story_case), "-type:5", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [o["session"] for o in objs] == [r["session"] for r in rows]
    assert all(o["logon_type"] != 5 for o in objs)
    assert [" ".join(o["flags"]) for o in objs] == [r["flags"] for r in rows]


def test_an_rdp_session_says_how_its_rdp_events_were_tied_to_it(cur: Any) -> None:
    (rdp,) = [r for r in sessions.query(cur, "type:10") if r["reconnects"]]
    by_id = cur.execute("SELECT count(*) FROM events WHERE host = ? AND event_id IN (4778, 4779) "
                        "AND target_logon_id = ?", [rdp["host"], rdp["logon_id"]]).fetchall()[0][0]
    attached = cur.execute("SELECT count(*) FROM session_events WHERE host = ? AND logon_id = ? "
                           "AND how = 'account+time'", [rdp["host"], rdp["logon_id"]]).fetchall()[0][0]
    assert rdp["rdp_by_logon_id"] == by_id > 0
    assert rdp["rdp_by_account_time"] == attached > 0


@pytest.mark.parametrize("width", [80, 160])
def test_the_sessions_table_is_one_line_a_session_laid_out_as_the_tui_lays_it_out(
        story_case: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    from tui.cli import main
    from tui.widgets.columns import SESSION_COLUMNS, layout

    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["sessions", str(story_case), "--limit", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    with Case(story_case, read_only=True) as case:
        total = sessions.total(case.cursor())
    assert len(lines) == total + 1 and all(len(line) <= width for line in lines)
    assert lines[0].split() == [w for c in layout(SESSION_COLUMNS, width) for w in c.title.split()]
    assert lines[0].split()[:3] == ["start", "host", "account"]


# -- regressions from a review: each case built from a few events ------------------------------------
def _logon(record: int, when: str, lid: str, user: str = "alice", *, host: str = "WS01.corp.local",
           logon_type: str = "2", linked: str | None = None, ip: str = "-", elevated: str = "%%1843") -> dict[str, Any]:
    from conftest import evtx_doc

    data = {"TargetUserName": user, "TargetDomainName": "CORP", "TargetLogonId": lid, "LogonType": logon_type,
            "TargetUserSid": f"S-1-5-21-1-2-3-{1000 + len(user)}", "AuthenticationPackageName": "Negotiate",
            "IpAddress": ip, "ElevatedToken": elevated}
    if linked:
        data["TargetLinkedLogonId"] = linked
    return evtx_doc(record, 4624, when, host=host, data=data)


def _event(record: int, event_id: int, when: str, *, channel: str = "Security", host: str = "WS01.corp.local",
           provider: str = "Microsoft-Windows-Security-Auditing", **data: str) -> dict[str, Any]:
    from conftest import evtx_doc

    return evtx_doc(record, event_id, when, host=host, channel=channel, provider=provider, data=data)


def _ingest_each(tmp_path: Path, *files: list[dict[str, Any]]) -> Path:
    from conftest import write_jsonl

    case_path = tmp_path / "case.duckdb"
    for i, docs in enumerate(files):
        ingest_into(case_path, [write_jsonl(tmp_path / f"f{i}.jsonl", docs)])
    return case_path


def _full(case_path: Path) -> list[tuple[Any, ...]]:
    with Case(case_path) as case:
        derived.refresh(case, full=True)
    return _rows(case_path)


def test_two_4608_minutes_apart_with_no_shutdown_between_are_two_boots(tmp_path: Path) -> None:
    case_path = _ingest_each(tmp_path, [
        _event(1, 4608, "2024-01-01T10:00:00Z"), _logon(2, "2024-01-01T10:01:00Z", "0x7000"),
        _event(3, 4608, "2024-01-01T10:05:00Z"), _logon(4, "2024-01-01T10:06:00Z", "0x7000", "bob")])
    with Case(case_path, read_only=True) as case:
        rows = sessions.query(case.cursor(), "")
    assert sorted((r["boot"], r["user"], r["end_reason"]) for r in rows) == [(1, "alice", "reboot"), (2, "bob", "open")]


def test_a_later_file_naming_only_the_second_id_of_a_linked_pair_keeps_the_pair_whole(tmp_path: Path) -> None:
    security = [_event(1, 4608, "2024-01-01T09:00:00Z"),
                _logon(2, "2024-01-01T10:00:00Z", "0x1000", linked="0x1001", elevated="%%1842"),
                _logon(3, "2024-01-01T10:00:00Z", "0x1001", linked="0x1000")]
    sysmon = [_event(1, 1, "2024-01-01T10:05:00Z", channel="Microsoft-Windows-Sysmon/Operational",
                     provider="Microsoft-Windows-Sysmon", LogonId="0x1001", ProcessId="77",
                     Image="C:\\Windows\\explorer.exe", User="CORP\\alice", ProcessGuid="{aaaa}")]
    case_path = _ingest_each(tmp_path, security, sysmon)
    rows = _rows(case_path)
    with Case(case_path, read_only=True) as case:
        (row,) = sessions.query(case.cursor(), "")
    assert (row["logon_id"], row["linked_logon_id"], row["elevated_token"], row["processes"]) == (0x1000, 0x1001, True, 1)
    assert _full(case_path) == rows


def test_a_system_log_added_after_the_security_log_ends_the_boot_by_its_shutdown(tmp_path: Path) -> None:
    security = [_event(1, 4608, "2024-01-01T09:00:00Z"), _logon(2, "2024-01-01T10:00:00Z", "0x5000"),
                _event(3, 4608, "2024-01-01T12:00:00Z")]
    system = [_event(1, 6005, "2024-01-01T09:00:01Z", channel="System", provider="EventLog"),
              _event(2, 6006, "2024-01-01T11:00:00Z", channel="System", provider="EventLog"),
              _event(3, 6005, "2024-01-01T12:00:01Z", channel="System", provider="EventLog")]
    case_path = _ingest_each(tmp_path, security, system)
    rows = _rows(case_path)
    with Case(case_path, read_only=True) as case:
        (row,) = sessions.query(case.cursor(), "user:alice")
    assert row["end_reason"] == "shutdown" and row["end"].hour == 11
    assert _full(case_path) == rows


def test_an_rdp_event_moves_to_the_newer_session_a_later_file_brings(tmp_path: Path) -> None:
    lsm = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"
    first = [_event(1, 4608, "2024-01-01T08:00:00Z"),
             _logon(2, "2024-01-01T09:00:00Z", "0xa000", logon_type="10", ip="10.0.0.9"),
             _event(3, 25, "2024-01-01T11:10:00Z", channel=lsm, provider="Microsoft-Windows-TerminalServices-LocalSessionManager",
                    User="CORP\\alice", Address="10.0.0.9")]
    second = [_logon(10, "2024-01-01T11:00:00Z", "0xb000", logon_type="10", ip="10.0.0.9")]
    case_path = _ingest_each(tmp_path, first, second)
    rows = _rows(case_path)
    with Case(case_path, read_only=True) as case:
        got = {r["logon_id"]: r["rdp_by_account_time"] for r in sessions.query(case.cursor(), "type:10")}
    assert got == {0xA000: 0, 0xB000: 1}
    assert _full(case_path) == rows


def test_a_session_mark_stays_on_its_session_when_a_log_with_an_earlier_boot_arrives(tmp_path: Path) -> None:
    later = [_event(10, 4608, "2024-01-02T08:00:00Z"), _logon(11, "2024-01-02T09:00:00Z", "0x5000")]
    case_path = _ingest_each(tmp_path, later)
    with Case(case_path) as case:
        (row,) = sessions.query(case.cursor(), "")
        sessions.toggle_mark(case.cursor(), row["first_eid"])
    earlier = [_event(1, 4608, "2024-01-01T08:00:00Z"), _logon(2, "2024-01-01T09:00:00Z", "0x5000", "mallory")]
    ingest_into(case_path, [__import__("conftest").write_jsonl(tmp_path / "early.jsonl", earlier)])
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        marked = [r for r in sessions.query(cur, "") if r["first_eid"] in sessions.marked(cur)]
    assert [(r["user"], r["boot"]) for r in marked] == [("alice", 2)]


def test_one_wrong_password_on_a_dc_logged_as_4625_and_4776_counts_once(tmp_path: Path) -> None:
    docs = []
    for i in range(3):
        when = f"2024-01-01T10:00:0{i}Z"
        docs.append(_event(2 * i + 1, 4625, when, host="DC01.corp.local", TargetUserName="bob", IpAddress="10.0.0.66",
                           Status="0xc000006d", SubStatus="0xc000006a", LogonType="3"))
        docs.append(_event(2 * i + 2, 4776, when, host="DC01.corp.local", TargetUserName="bob", Workstation="KALI",
                           Status="0xc000006a"))
    case_path = _ingest_each(tmp_path, docs)
    with Case(case_path, read_only=True) as case:
        verdicts = logons.verdicts(case.cursor())
    assert [v for v in verdicts if v["verdict"] == "brute_force"] == []


def test_a_spray_followed_by_a_logon_from_the_sprayer_is_a_success_verdict_with_its_session(tmp_path: Path) -> None:
    from fixtures.incident import ATTACKER_IP
    from tui.screens.logons import timeline_filter
    from tui.testing import build_incident_case

    case_path = build_incident_case(tmp_path, noise=0)
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        verdicts = logons.verdicts(cur)
        (spray,) = [v for v in verdicts if v["verdict"] == "password_spray" and v["source"] == ATTACKER_IP]
        (worked,) = [v for v in verdicts if v.get("after") == "password_spray"]
        first_logon = cur.execute(
            "SELECT eid, lower(target_user) FROM events WHERE event_id = 4624 AND src_ip = ? AND ts >= ? "
            "ORDER BY pos LIMIT 1", [ATTACKER_IP, spray["first"]]).fetchall()[0]
        assert (worked["eids"][-1], worked["account"]) == first_logon
        assert set(worked["eids"][:-1]) == set(spray["eids"])
        row = sessions.get(cur, sessions.SessionKey(**worked["session"]))
        assert row is not None and row["first_eid"] == first_logon[0]
        view = views.resolve(cur, timeline_filter(worked))
        shown = {int(r[0]) for r in cur.execute("SELECT eid FROM events WHERE list_contains(?, pos)",
                                                [[int(p) for p in view.positions]]).fetchall()}
        assert shown == set(worked["eids"])


def test_the_events_of_alices_rdp_session_include_what_its_processes_did_on_the_network(tmp_path: Path) -> None:
    from tui.testing import build_incident_case

    case_path = build_incident_case(tmp_path, noise=0)
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        (rdp,) = sessions.query(cur, "user:alice type:10")
        view = views.resolve(cur, f'session:"{sessions.key_of(rdp).text()}"')
        kinds = {(c, e) for c, e in cur.execute(
            "SELECT channel, event_id FROM events WHERE list_contains(?, pos)",
            [[int(p) for p in view.positions]]).fetchall()}
    sysmon = "Microsoft-Windows-Sysmon/Operational"
    assert {("Security", 4624), ("Security", 4672), ("Security", 4688), (sysmon, 1), (sysmon, 3),
            (sysmon, 22), ("Security", 4648)} <= kinds


def test_a_tgt_issued_after_kerberos_failures_is_a_success_verdict_seen_from_the_dc(tmp_path: Path) -> None:
    docs = [_event(i + 1, 4771, f"2024-01-01T10:00:0{i}Z", host="DC01.corp.local", TargetUserName="alice",
                   IpAddress="::ffff:10.0.0.5", Status="0x18") for i in range(4)]
    docs.append(_event(9, 4768, "2024-01-01T10:01:00Z", host="DC01.corp.local", TargetUserName="alice",
                       IpAddress="::ffff:10.0.0.5", Status="0x0"))
    case_path = _ingest_each(tmp_path, docs)
    with Case(case_path, read_only=True) as case:
        (hit,) = [v for v in logons.verdicts(case.cursor()) if v["verdict"] == "success_after_failures"]
    assert (hit["account"], hit["source"], hit["count"], hit["session"]) == ("alice", "10.0.0.5", 4, None)
    assert "validated by the domain controller" in hit["reason"]
