"""The case file: events keep a dense timeline position in a deterministic order, whatever order the
evidence arrives in, and a case left half-ordered is repaired when it is opened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import SYSMON, evtx_doc, ingest_into, write_jsonl

from engine import Case, CaseError
from engine.schema import ORDER_KEY, SCHEMA_VERSION


def doc(record_id: int, when: str, host: str = "WS01", channel: str = "Security") -> dict[str, Any]:
    return evtx_doc(record_id, 4624, when, host=host, channel=channel, data={"TargetUserName": f"u{record_id}"})


def positions(case_path: Path) -> list[tuple[Any, ...]]:
    """(pos, ts, host, channel, record_id) in stored position order."""
    with Case(case_path) as case:
        return case.cursor().execute(
            "SELECT pos, ts, host, channel, record_id FROM events ORDER BY pos").fetchall()


def assert_dense_and_ordered(case_path: Path) -> list[tuple[Any, ...]]:
    with Case(case_path) as case:
        cur = case.cursor()
        by_pos = cur.execute("SELECT eid FROM events ORDER BY pos").fetchall()
        by_key = cur.execute(f"SELECT eid FROM events ORDER BY {ORDER_KEY}").fetchall()
        pos = [p for (p,) in cur.execute("SELECT pos FROM events ORDER BY pos").fetchall()]
        # Timeline windows are range reads that zone maps narrow only if rows are stored in pos order.
        stored = [p for (p,) in cur.execute("SELECT pos FROM events ORDER BY rowid").fetchall()]
    assert pos == list(range(len(pos))), "pos is not dense 0..N-1"
    assert stored == pos, "events are not stored in pos order"
    assert by_pos == by_key, "pos order is not (ts, host, channel, record_id, eid) order"
    return positions(case_path)


def test_a_second_ingest_of_earlier_events_keeps_positions_dense_and_in_time_order(tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    later = write_jsonl(tmp_path / "later.jsonl", [doc(i, f"2021-01-02T00:00:{i:02d}Z") for i in range(10, 20)])
    earlier = write_jsonl(tmp_path / "earlier.jsonl", [doc(i, f"2021-01-01T00:00:{i:02d}Z") for i in range(0, 10)])
    ingest_into(case_path, [later])
    assert [r[0] for r in positions(case_path)] == list(range(10))
    ingest_into(case_path, [earlier])
    rows = assert_dense_and_ordered(case_path)
    assert [r[4] for r in rows] == list(range(20))


def test_interleaved_events_from_a_second_ingest_are_merged_into_the_timeline(tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    even = write_jsonl(tmp_path / "even.jsonl", [doc(i, f"2021-01-01T00:00:{i:02d}Z") for i in range(0, 40, 2)])
    odd = write_jsonl(tmp_path / "odd.jsonl", [doc(i, f"2021-01-01T00:00:{i:02d}Z", host="WS02")
                                               for i in range(1, 40, 2)])
    ingest_into(case_path, [even])
    ingest_into(case_path, [odd])
    rows = assert_dense_and_ordered(case_path)
    assert [r[4] for r in rows] == list(range(40))


def test_a_second_ingest_of_later_events_appends_them(tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    first = write_jsonl(tmp_path / "a.jsonl", [doc(i, f"2021-01-01T00:00:{i:02d}Z") for i in range(5)])
    second = write_jsonl(tmp_path / "b.jsonl", [doc(i, f"2021-01-01T00:01:{i:02d}Z") for i in range(5, 10)])
    ingest_into(case_path, [first])
    before = {r[4]: r[0] for r in positions(case_path)}
    ingest_into(case_path, [second])
    rows = assert_dense_and_ordered(case_path)
    assert [r[4] for r in rows] == list(range(10))
    assert {r[4]: r[0] for r in rows if r[4] < 5} == before


def test_equal_times_sort_by_host_then_channel_then_record_id(tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    t = "2021-01-01T00:00:00Z"
    ingest_into(case_path, [write_jsonl(tmp_path / "a.jsonl", [doc(5, t, host="WS02"), doc(9, t, host="WS01")])])
    # The second file ties on time with the first: the whole timeline is re-sorted.
    ingest_into(case_path, [write_jsonl(tmp_path / "b.jsonl", [
        doc(3, t, host="WS02"), doc(1, t, host="WS01", channel=SYSMON), doc(2, t, host="WS01")])])
    rows = assert_dense_and_ordered(case_path)
    assert [(r[2], r[3], r[4]) for r in rows] == [
        ("WS01", SYSMON, 1), ("WS01", "Security", 2), ("WS01", "Security", 9),
        ("WS02", "Security", 3), ("WS02", "Security", 5)]


def test_events_without_a_time_sort_after_every_timed_event(tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    untimed = doc(1, "not a time")
    ingest_into(case_path, [write_jsonl(tmp_path / "a.jsonl", [doc(2, "2021-01-01T00:00:00Z"), untimed])])
    ingest_into(case_path, [write_jsonl(tmp_path / "b.jsonl", [doc(3, "2021-01-02T00:00:00Z")])])
    rows = assert_dense_and_ordered(case_path)
    assert [(r[4], r[1] is None) for r in rows] == [(2, False), (3, False), (1, True)]


def test_the_timeline_order_does_not_depend_on_the_order_files_arrive_in(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [doc(i, f"2021-01-01T00:00:{(i * 7) % 60:02d}Z", host="WS01")
                                           for i in range(30)])
    b = write_jsonl(tmp_path / "b.jsonl", [doc(i, f"2021-01-01T00:00:{(i * 11) % 60:02d}Z", host="WS02")
                                           for i in range(30)])
    ingest_into(tmp_path / "ab.duckdb", [a])
    ingest_into(tmp_path / "ab.duckdb", [b])
    ingest_into(tmp_path / "ba.duckdb", [b])
    ingest_into(tmp_path / "ba.duckdb", [a])
    ingest_into(tmp_path / "both.duckdb", [a, b])
    orders = [[r[1:] for r in assert_dense_and_ordered(tmp_path / n)] for n in ("ab.duckdb", "ba.duckdb", "both.duckdb")]
    assert orders[0] == orders[1] == orders[2]


def test_a_case_with_unordered_rows_is_repaired_when_opened(tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    ingest_into(case_path, [write_jsonl(tmp_path / "a.jsonl", [doc(i, f"2021-01-01T00:00:{i:02d}Z")
                                                               for i in range(0, 20, 2)])])
    ingest_into(case_path, [write_jsonl(tmp_path / "b.jsonl", [doc(i, f"2021-01-01T00:00:{i:02d}Z")
                                                               for i in range(1, 20, 2)])])
    # Simulate an ingest that committed its files but died before ordering them.
    con = duckdb.connect(str(case_path))
    con.execute("UPDATE events SET pos = NULL WHERE record_id % 2 = 1 OR record_id = 4")
    assert con.execute("SELECT count(*) FROM events WHERE pos IS NULL").fetchall()[0][0] == 11
    con.close()
    with Case(case_path) as case:
        assert case.unordered_events() == 0
    rows = assert_dense_and_ordered(case_path)
    assert [r[4] for r in rows] == list(range(20))


def test_a_file_left_half_ingested_is_dropped_on_open_and_ingested_whole_again(tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    a = write_jsonl(tmp_path / "a.jsonl", [doc(i, f"2021-01-01T00:00:{i:02d}Z") for i in range(5)])
    b = write_jsonl(tmp_path / "b.jsonl", [doc(i, f"2021-01-01T00:01:{i:02d}Z", host="WS02") for i in range(6)])
    ingest_into(case_path, [a, b])
    # Simulate an ingest killed after committing part of b: its sources row is not complete, and
    # only some of its events are there.
    con = duckdb.connect(str(case_path))
    con.execute("UPDATE sources SET complete = FALSE WHERE path = ?", [str(b)])
    con.execute("DELETE FROM events WHERE host = 'WS02' AND record_id >= 3")
    con.close()
    with Case(case_path) as case:
        cur = case.cursor()
        assert cur.execute("SELECT path FROM sources").fetchall() == [(str(a),)]
        assert cur.execute("SELECT count(*) FROM events WHERE host = 'WS02'").fetchall()[0][0] == 0
        assert cur.execute("SELECT count(*) FROM event_data").fetchall()[0][0] == 5
    report = ingest_into(case_path, [a, b])
    assert [f.status for f in report.files] == ["already in case", "ingested"]
    rows = assert_dense_and_ordered(case_path)
    assert len(rows) == 11


def test_a_read_only_open_does_not_touch_an_unordered_case(tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    ingest_into(case_path, [write_jsonl(tmp_path / "a.jsonl", [doc(1, "2021-01-01T00:00:00Z")])])
    con = duckdb.connect(str(case_path))
    con.execute("UPDATE events SET pos = NULL")
    con.close()
    with Case(case_path, read_only=True) as case:
        assert case.unordered_events() == 1
    with Case(case_path) as case:
        assert case.unordered_events() == 0


def test_reorder_with_nothing_new_changes_nothing(tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    ingest_into(case_path, [write_jsonl(tmp_path / "a.jsonl", [doc(i, f"2021-01-01T00:00:{i:02d}Z")
                                                               for i in range(5)])])
    before = positions(case_path)
    with Case(case_path) as case:
        case.reorder()
    assert positions(case_path) == before


def test_opening_a_missing_case_read_only_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="no such case file"):
        Case(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


def test_a_duckdb_file_that_is_not_a_case_is_refused_read_only(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    with pytest.raises(CaseError, match="not an ashiato case"):
        Case(path, read_only=True)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(CaseError, match="cannot open case"):
        Case(path)


def test_a_case_from_a_newer_ashiato_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "case.duckdb"
    Case(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    with pytest.raises(CaseError, match="newer ashiato"):
        Case(path)


def test_a_new_case_records_its_schema_version_and_starts_empty(tmp_path: Path) -> None:
    with Case(tmp_path / "case.duckdb") as case:
        assert case.event_count() == 0
        assert case.field_names() == []
        assert case.cursor().execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [
            (str(SCHEMA_VERSION),)]
    # Opening it again (read-write) neither fails nor duplicates the meta rows.
    with Case(tmp_path / "case.duckdb") as case:
        keys = [r[0] for r in case.cursor().execute("SELECT key FROM meta ORDER BY key").fetchall()]
        assert keys == ["case_id", "derived_version", "findings_digest", "findings_failed", "findings_rules",
                        "findings_seconds", "findings_sources", "process_marks", "schema_version"]


def test_sessions_run_in_utc(tmp_path: Path) -> None:
    with Case(tmp_path / "case.duckdb") as case:
        assert case.cursor().execute("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]


def test_a_failed_transaction_is_rolled_back(tmp_path: Path) -> None:
    with Case(tmp_path / "case.duckdb") as case:
        with pytest.raises(RuntimeError), case.transaction() as con:
            con.execute("INSERT INTO saved_filters VALUES ('a', 'eid:4624')")
            raise RuntimeError("boom")
        assert case.cursor().execute("SELECT count(*) FROM saved_filters").fetchall()[0][0] == 0


def _older_case(tmp_path: Path, version: int) -> Path:
    """A case as an older ashiato wrote it: without the columns later schemas added, no derived tables."""
    from engine.schema import ADDED_IN

    case_path = tmp_path / "case.duckdb"
    logon = evtx_doc(7, 4624, "2021-01-01T00:00:05Z", data={
        "TargetUserName": "alice", "TargetDomainName": "CORP", "TargetLogonId": "0x1a2b", "LogonType": "3",
        "AuthenticationPackageName": "NTLM", "LogonProcessName": "NtLmSsp ", "KeyLength": "0",
        "LmPackageName": "NTLM V2", "ElevatedToken": "%%1842", "ImpersonationLevel": "%%1833",
        "IpAddress": "10.0.0.66", "SubjectUserSid": "S-1-0-0"})
    member = evtx_doc(8, 4732, "2021-01-01T00:00:06Z", data={
        "MemberName": "CN=Bob,OU=Users,DC=corp,DC=local", "MemberSid": "S-1-5-21-1-2-3-1104"})
    evidence = write_jsonl(tmp_path / "a.jsonl", [logon, member])
    ingest_into(case_path, [evidence])
    con = duckdb.connect(str(case_path))
    for v in range(version + 1, SCHEMA_VERSION + 1):
        for column in ADDED_IN.get(v, ["member_name", "member_sid"]):
            con.execute(f"ALTER TABLE events DROP COLUMN {column}")
    for table in ("sessions", "session_events", "boots", "derived_sources"):
        con.execute(f"DROP TABLE {table}")
    con.execute("DELETE FROM meta WHERE key = 'derived_version'")
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(version)])
    con.close()
    return case_path


def test_a_case_of_the_previous_schema_is_upgraded_when_opened_and_its_sessions_built(tmp_path: Path) -> None:
    case_path = _older_case(tmp_path, 2)
    with Case(case_path, read_only=True) as case:
        assert case.outdated and case.needs_repair()
    with Case(case_path) as case:
        cur = case.cursor()
        assert case.schema_version() == SCHEMA_VERSION and not case.needs_repair()
        row = cur.execute("SELECT elevated_token, impersonation_level, lm_package, key_length, logon_process "
                          "FROM events WHERE event_id = 4624").fetchall()
        assert row == [(True, "%%1833", "NTLM V2", 0, "NtLmSsp")]
        assert cur.execute("SELECT member_name, member_sid FROM events WHERE event_id = 4732").fetchall() == [
            ("Bob", "S-1-5-21-1-2-3-1104")]
        assert cur.execute("SELECT host, logon_id, \"user\", flags FROM sessions").fetchall() == [
            ("WS01.corp.local", 0x1A2B, "alice", ["ntlm_network", "pass_the_hash"])]


def test_a_schema_1_case_is_refused_untouched_with_how_to_ingest_its_evidence_again(tmp_path: Path) -> None:
    import hashlib

    case_path = _older_case(tmp_path, 1)
    before = hashlib.sha256(case_path.read_bytes()).hexdigest()
    for read_only in (True, False):
        with pytest.raises(CaseError) as info:
            Case(case_path, read_only=read_only)
        assert "older ashiato (schema 1" in str(info.value)
        assert f"ashiato ingest new-case.duckdb {tmp_path / 'a.jsonl'}" in str(info.value)
    assert hashlib.sha256(case_path.read_bytes()).hexdigest() == before


def test_the_cli_upgrades_an_older_case_by_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    case_path = _older_case(tmp_path, 2)
    assert main(["sessions", str(case_path), "user:alice", "--format", "jsonl"]) == 0
    assert '"logon_id":6699' in capsys.readouterr().out
