"""Bad inputs: each is reported where it went wrong, and nothing good around it is lost."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, SYSMON, evtx_doc, ingest_into, nxlog_doc, write_jsonl

from engine import Case
from engine.ingest import ingest

CHAINSAW_EVTX = CORPUS / "evtx/chainsaw/tests/evtx/security_sample.evtx"
SIGMA_EVTX = CORPUS / ("evtx/sigma-regression/rules/windows/file/file_event/file_event_win_anydesk_artefact/"
                       "0b9ad457-2554-44c1-82c2-d56a99c42377.evtx")
SIGMA_TWIN = CORPUS / ("ndjson/sigma-regression-evtxdump/rules/windows/file/file_event/file_event_win_anydesk_artefact/"
                       "0b9ad457-2554-44c1-82c2-d56a99c42377.json")


def logon(record_id: int, user: str = "alice") -> dict[str, Any]:
    return evtx_doc(record_id, 4624, f"2021-01-01T00:00:{record_id % 60:02d}.000000Z",
                    data={"TargetUserName": user, "LogonType": "3"})


def stored_record_ids(case_path: Path) -> list[int]:
    with Case(case_path) as case:
        return [r[0] for r in case.cursor().execute("SELECT record_id FROM events ORDER BY record_id").fetchall()]


def result_for(report: Any, path: Path) -> Any:
    matches = [f for f in report.files if Path(f.path) == path]
    assert len(matches) == 1, f"{path} not in report: {[f.path for f in report.files]}"
    return matches[0]


# -- unknown shapes ---------------------------------------------------------------------------------
def test_a_file_of_unknown_shape_is_reported_and_skipped_and_the_others_are_ingested(tmp_path: Path) -> None:
    png = tmp_path / "a-screenshot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    good = write_jsonl(tmp_path / "b-events.jsonl", [logon(1), logon(2)])
    notes = tmp_path / "c-notes.txt"
    notes.write_text("Investigation notes\nnothing here\n")
    report = ingest_into(tmp_path / "case.duckdb", [png, good, notes])
    for path in (png, notes):
        res = result_for(report, path)
        assert res.status == "skipped" and res.records == 0
        assert res.message is not None
        assert res.message.startswith(f"{path}: not a recognised event log (first bytes: ")
    assert "89 50 4e 47" in result_for(report, png).message
    assert result_for(report, good).status == "ingested"
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 2]


def test_the_unknown_file_is_recorded_in_the_case(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    ingest_into(tmp_path / "case.duckdb", [notes])
    with Case(tmp_path / "case.duckdb") as case:
        rows = case.cursor().execute("SELECT path, records, first_error FROM sources").fetchall()
    assert rows == [(str(notes), 0, f"{notes}: not a recognised event log (first bytes: "
                                    f"68 65 6c 6c 6f 0a b'hello\\n')")]


def test_json_of_no_known_event_log_shape_is_reported_and_skipped(tmp_path: Path) -> None:
    other = write_jsonl(tmp_path / "config.json", [{"name": "x", "value": 1}, {"name": "y", "value": 2}])
    good = write_jsonl(tmp_path / "events.jsonl", [logon(1)])
    report = ingest_into(tmp_path / "case.duckdb", [other, good])
    res = result_for(report, other)
    assert res.status == "skipped" and res.records == 0 and res.skipped == 2
    assert any(str(p).startswith(f"{other}: not a recognised event log (first bytes: ") for p in res.problems)
    assert stored_record_ids(tmp_path / "case.duckdb") == [1]


def test_a_missing_path_is_reported_and_the_others_are_ingested(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "events.jsonl", [logon(1)])
    report = ingest_into(tmp_path / "case.duckdb", [tmp_path / "nope.evtx", good])
    assert report.missing == [str(tmp_path / "nope.evtx")]
    assert report.records == 1


# -- malformed JSON -------------------------------------------------------------------------------
def test_a_malformed_json_line_is_reported_with_its_line_and_its_neighbours_are_kept(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [
        logon(1), logon(2), '{"Event": {"System": {"EventID": 4624, "EventRecordID": 3', logon(4), "", logon(5)])
    report = ingest_into(tmp_path / "case.duckdb", [path])
    res = result_for(report, path)
    assert (res.status, res.records, res.skipped) == ("ingested", 4, 1)
    assert res.message is not None and res.message.startswith(f"{path}:3: malformed JSON")
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 2, 4, 5]
    with Case(tmp_path / "case.duckdb") as case:
        assert case.cursor().execute("SELECT location FROM ingest_errors").fetchall() == [(f"{path}:3",)]


def test_a_malformed_first_line_does_not_lose_the_rest_of_the_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", ['{"Event": {"System": broken', logon(2), logon(3)])
    report = ingest_into(tmp_path / "case.duckdb", [path])
    res = result_for(report, path)
    assert (res.records, res.skipped) == (2, 1)
    assert res.message is not None and res.message.startswith(f"{path}:1: malformed JSON")
    assert stored_record_ids(tmp_path / "case.duckdb") == [2, 3]


def test_many_malformed_lines_are_all_counted_but_only_some_are_kept_in_full(tmp_path: Path) -> None:
    lines: list[Any] = [logon(1)] + ["{broken"] * 120 + [logon(2)]
    path = write_jsonl(tmp_path / "events.jsonl", lines)
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (2, 120)
    assert 0 < len(res.problems) < 120


def _pretty_docs(docs: list[dict[str, Any]], broken: int) -> tuple[str, tuple[int, int]]:
    """Pretty-printed documents concatenated; document `broken` loses a colon. Also its line span."""
    texts = [json.dumps(d, indent=2) for d in docs]
    texts[broken] = texts[broken].replace('"Channel":', '"Channel"', 1)
    start = sum(t.count("\n") + 1 for t in texts[:broken]) + 1
    return "\n".join(texts) + "\n", (start, start + texts[broken].count("\n"))


def test_a_broken_document_in_concatenated_pretty_json_is_reported_and_the_others_kept(tmp_path: Path) -> None:
    text, (first, last) = _pretty_docs([logon(1), logon(2), logon(3), logon(4)], broken=2)
    path = tmp_path / "events.json"
    path.write_text(text)
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (3, 1)
    assert res.message is not None and "malformed JSON" in res.message
    line = int(res.message[len(str(path)) + 1:].split(":", 1)[0])
    assert first <= line <= last
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 2, 4]


def test_a_broken_document_inside_a_json_array_is_reported_and_the_others_kept(tmp_path: Path) -> None:
    docs = [json.dumps(logon(i)) for i in range(1, 6)]
    docs[3] = docs[3].replace('"Channel":', '"Channel"', 1)
    path = tmp_path / "events.json"
    path.write_text("[\n" + ",\n".join(docs) + "\n]\n")
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (4, 1)
    assert res.message is not None and res.message.startswith(f"{path}:5: malformed JSON")
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 2, 3, 5]


def test_a_broken_document_inside_a_pretty_printed_array_is_reported_and_the_others_kept(tmp_path: Path) -> None:
    docs = [logon(i) for i in range(1, 5)]
    body, (first, last) = _pretty_docs(docs, broken=1)
    path = tmp_path / "events.json"
    path.write_text("[\n" + body.replace("}\n{", "},\n{") + "]\n")
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (3, 1)
    line = int((res.message or "")[len(str(path)) + 1:].split(":", 1)[0])
    assert first + 1 <= line <= last + 1  # one line down: the opening bracket
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 3, 4]


def test_a_json_line_that_is_not_an_object_is_counted_as_skipped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [logon(1), "[1, 2, 3]", '"text"', "42", "null", logon(2)])
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (2, 4)


# -- encodings and compression --------------------------------------------------------------------
def test_gzip_json_lines_are_ingested(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson.gz"
    path.write_bytes(gzip.compress(b"".join(json.dumps(logon(i)).encode() + b"\n" for i in range(1, 8))))
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.status, res.records, res.skipped, res.shape) == ("ingested", 7, 0, "EVTX JSON (evtx_dump)")


def test_gzip_of_a_json_array_is_ingested_whatever_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "export.bin"
    path.write_bytes(gzip.compress(json.dumps([logon(1), logon(2)]).encode()))
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (2, 0)


def test_gzip_of_an_evtx_file_is_ingested_like_the_file_itself(corpus: Path, tmp_path: Path) -> None:
    gz = tmp_path / "security_sample.evtx.gz"
    gz.write_bytes(gzip.compress(CHAINSAW_EVTX.read_bytes()))
    ingest_into(tmp_path / "gz.duckdb", [gz], dedupe=False)
    ingest_into(tmp_path / "plain.duckdb", [CHAINSAW_EVTX], dedupe=False)
    cols = "ts, host, channel, event_id, record_id, target_user, logon_type, subject_logon_id"

    def rows(p: Path) -> list[Any]:
        with Case(p) as case:
            return case.cursor().execute(f"SELECT {cols} FROM events ORDER BY pos").fetchall()

    assert len(rows(tmp_path / "gz.duckdb")) == 10
    assert rows(tmp_path / "gz.duckdb") == rows(tmp_path / "plain.duckdb")


def test_an_invalid_utf8_byte_keeps_the_event_and_is_noted(tmp_path: Path) -> None:
    bad = json.dumps(logon(2, user="bXb")).encode().replace(b"bXb", b"b\xffb")
    path = write_jsonl(tmp_path / "events.jsonl", [logon(1), bad, logon(3)])
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (3, 0)
    assert res.message is not None and res.message.startswith(f"{path}:2: invalid UTF-8")
    with Case(tmp_path / "case.duckdb") as case:
        users = case.cursor().execute("SELECT target_user FROM events ORDER BY record_id").fetchall()
    assert users == [("alice",), ("b\ufffdb",), ("alice",)]


def test_windows_line_endings_keep_every_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(json.dumps(logon(i)).encode() + b"\r\n" for i in range(1, 4)))
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (3, 0)


def test_a_byte_order_mark_before_json_lines_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(logon(i)).encode() + b"\n" for i in range(1, 4)))
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (3, 0)


def test_a_byte_order_mark_before_a_json_array_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([logon(1), logon(2)], indent=2).encode())
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.skipped) == (2, 0)


def _truncated_gzip(tmp_path: Path, lines: int) -> Path:
    data = gzip.compress(b"".join(json.dumps(logon(i, user=f"user-{i:06d}-{i * 7919 % 104729}")).encode() + b"\n"
                                  for i in range(100, 100 + lines)))
    path = tmp_path / "b-cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_truncated_gzip_does_not_abort_the_ingest(tmp_path: Path) -> None:
    before = write_jsonl(tmp_path / "a-before.jsonl", [logon(1)])
    cut = _truncated_gzip(tmp_path, 5000)
    after = write_jsonl(tmp_path / "c-after.jsonl", [logon(2)])
    report = ingest_into(tmp_path / "case.duckdb", [before, cut, after])
    ids = stored_record_ids(tmp_path / "case.duckdb")
    assert 1 in ids and 2 in ids
    res = result_for(report, cut)
    assert res.skipped > 0 or res.message


def test_a_truncated_gzip_of_an_evtx_file_does_not_abort_the_ingest(corpus: Path, tmp_path: Path) -> None:
    data = gzip.compress(CHAINSAW_EVTX.read_bytes())
    cut = tmp_path / "a-cut.evtx.gz"
    cut.write_bytes(data[: len(data) // 2])
    after = write_jsonl(tmp_path / "b-after.jsonl", [logon(2)])
    report = ingest_into(tmp_path / "case.duckdb", [cut, after])
    assert result_for(report, after).records == 1
    assert result_for(report, cut).message


def test_a_small_truncated_gzip_is_not_called_empty(tmp_path: Path) -> None:
    cut = _truncated_gzip(tmp_path, 10)
    res = result_for(ingest_into(tmp_path / "case.duckdb", [cut]), cut)
    assert "empty file (0 bytes)" not in (res.message or "")


# -- duplicates -------------------------------------------------------------------------------------
def test_ingesting_the_same_file_twice_adds_nothing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [logon(1), logon(2)])
    case_path = tmp_path / "case.duckdb"
    first = ingest_into(case_path, [path])
    second = ingest_into(case_path, [path])
    assert first.records == 2
    res = result_for(second, path)
    assert res.status == "already in case" and res.records == 0
    assert res.message == f"same content as {path}"
    assert stored_record_ids(case_path) == [1, 2]
    with Case(case_path) as case:
        assert case.cursor().execute("SELECT count(*) FROM sources").fetchall()[0][0] == 1


def test_a_copy_of_a_file_under_another_name_in_the_same_command_adds_nothing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [logon(1), logon(2)])
    copy = tmp_path / "b-copy.jsonl"
    shutil.copy(path, copy)
    report = ingest_into(tmp_path / "case.duckdb", [path, copy])
    assert result_for(report, copy).status == "already in case"
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 2]


def test_the_same_events_in_two_different_files_are_stored_once_and_counted_as_duplicates(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [logon(1), logon(2), logon(3)])
    b = tmp_path / "b.json"
    b.write_text(json.dumps([logon(2), logon(3), logon(4)], indent=2))
    report = ingest_into(tmp_path / "case.duckdb", [a, b])
    res = result_for(report, b)
    assert (res.records, res.duplicates) == (1, 2)
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 2, 3, 4]
    with Case(tmp_path / "case.duckdb") as case:
        assert case.cursor().execute(
            "SELECT records, duplicates FROM sources ORDER BY source_id").fetchall() == [(3, 0), (1, 2)]


def test_an_evtx_file_and_its_evtx_dump_export_are_stored_once(corpus: Path, tmp_path: Path) -> None:
    case_path = tmp_path / "case.duckdb"
    report = ingest_into(case_path, [SIGMA_EVTX, SIGMA_TWIN])
    evtx, twin = result_for(report, SIGMA_EVTX), result_for(report, SIGMA_TWIN)
    assert (evtx.records, evtx.duplicates) == (5, 0)
    assert (twin.records, twin.duplicates) == (0, 5)
    assert len(stored_record_ids(case_path)) == 5
    # … in either order, and across two commands.
    other = tmp_path / "other.duckdb"
    ingest_into(other, [SIGMA_TWIN])
    again = result_for(ingest_into(other, [SIGMA_EVTX]), SIGMA_EVTX)
    assert (again.records, again.duplicates) == (0, 5)


def test_a_sysmon_event_logged_minutes_after_it_happened_is_stored_once_from_evtx_json_and_nxlog(
        tmp_path: Path) -> None:
    # EVTX's time is TimeCreated (when logged); NXLog's is Sysmon's UtcTime (when it happened).
    data = {"UtcTime": "2020-09-20 10:00:00.250", "ProcessGuid": "{a-b}", "ProcessId": "4242",
            "Image": "C:\\Windows\\System32\\whoami.exe"}
    logged = evtx_doc(77, 1, "2020-09-20T10:05:31.000000Z", host="WS01.corp.local", channel=SYSMON,
                      provider="Microsoft-Windows-Sysmon", data=data)
    flat = nxlog_doc(77, 1, "2020-09-20 06:05:31", "2020-09-20 06:05:33", "2020-09-20T10:05:33.000Z",
                     host="WS01.corp.local", channel=SYSMON, data=data)
    a = write_jsonl(tmp_path / "a.jsonl", [logged])
    b = write_jsonl(tmp_path / "b.jsonl", [flat])
    res = result_for(ingest_into(tmp_path / "case.duckdb", [a, b]), b)
    assert (res.records, res.duplicates) == (0, 1)
    assert stored_record_ids(tmp_path / "case.duckdb") == [77]


def test_without_dedupe_every_copy_is_stored(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [logon(1), logon(1)])
    copy = tmp_path / "b.jsonl"
    shutil.copy(path, copy)
    report = ingest_into(tmp_path / "case.duckdb", [path, copy], dedupe=False)
    assert report.records == 4 and report.duplicates == 0


def test_events_without_a_record_id_are_never_taken_for_duplicates(tmp_path: Path) -> None:
    doc = logon(1)
    del doc["Event"]["System"]["EventRecordID"]
    path = write_jsonl(tmp_path / "a.jsonl", [doc, doc])
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    assert (res.records, res.duplicates) == (2, 0)


# -- evidence is read, never written ----------------------------------------------------------------
_WATCHED: set[str] = set()
_WRITES: list[tuple[str, Any]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _WATCHED:
        path, mode, flags = args
        if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path) in _WATCHED:
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC | os.O_CREAT))
            if writing:
                _WRITES.append((os.fsdecode(path), mode if mode is not None else flags))


sys.addaudithook(_audit)


def _fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_size


def test_evidence_files_are_opened_read_only_and_never_modified(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    files = [
        write_jsonl(evidence / "a.jsonl", [logon(1), "{broken", logon(2)]),
        evidence / "b.json.gz",
        evidence / "c.txt",
        evidence / "d.json",
    ]
    files[1].write_bytes(gzip.compress(json.dumps([logon(3)]).encode()))
    files[2].write_text("not an event log\n")
    files[3].write_text(json.dumps(logon(4), indent=2) + "\n" + json.dumps(logon(5), indent=2))
    if CHAINSAW_EVTX.is_file():
        shutil.copy(CHAINSAW_EVTX, evidence / "e.evtx")
        (evidence / "f.evtx.gz").write_bytes(gzip.compress(CHAINSAW_EVTX.read_bytes()))
        files += [evidence / "e.evtx", evidence / "f.evtx.gz"]
    before = {p: _fingerprint(p) for p in files}
    _WATCHED.update(str(p) for p in files)
    _WRITES.clear()
    try:
        report = ingest_into(tmp_path / "case.duckdb", [evidence], dedupe=False)
        ingest_into(tmp_path / "case2.duckdb", [evidence], parser="python-evtx")
    finally:
        _WATCHED.clear()
    assert report.records >= 5
    assert _WRITES == []
    assert {p: _fingerprint(p) for p in files} == before
    assert sorted(p.name for p in evidence.iterdir()) == sorted(p.name for p in files)


def test_the_audit_probe_sees_a_write(tmp_path: Path) -> None:
    # Guards the guard above: the hook does record a write-mode open of a watched file.
    target = tmp_path / "x.json"
    target.write_text("{}")
    _WATCHED.add(str(target))
    _WRITES.clear()
    try:
        with open(target, "a"):
            pass
    finally:
        _WATCHED.clear()
    assert _WRITES and _WRITES[0][0] == str(target)
    _WRITES.clear()


# -- interrupted ingest -------------------------------------------------------------------------------
def _write_many(directory: Path, sizes: list[int]) -> int:
    """One NXLog-style JSON lines file per size, named so they are read in this order."""
    import orjson

    directory.mkdir()
    rid = 0
    for f, size in enumerate(sizes):
        lines = []
        for i in range(size):
            lines.append(orjson.dumps({
                "EventID": 4624, "Hostname": f"WS{f:02d}", "Channel": "Security", "RecordNumber": rid,
                "EventTime": f"2020-09-20 {(rid // 3600) % 24:02d}:{(rid // 60) % 60:02d}:{rid % 60:02d}",
                "EventReceivedTime": "2020-09-20 10:00:00", "@timestamp": "2020-09-20T14:00:00Z",
                "TargetUserName": f"user{rid % 97}", "LogonType": "3", "IpAddress": f"10.0.{f}.{i % 250}"}))
            rid += 1
        (directory / f"part{f:03d}.json").write_bytes(b"\n".join(lines) + b"\n")
    return sum(sizes)


def _assert_consistent(case_path: Path) -> int:
    # Opening read-write repairs what an interrupted ingest left: a file committed only in part is
    # dropped (it is in the case whole or not at all), and unordered events get their positions.
    with Case(case_path) as case:
        cur = case.cursor()
        bad_sources = cur.execute("""
            SELECT s.path, s.records, count(e.eid) FROM sources s LEFT JOIN events e USING (source_id)
            GROUP BY ALL HAVING s.records <> count(e.eid)""").fetchall()
        assert bad_sources == []
        orphans = cur.execute(
            "SELECT count(*) FROM events WHERE source_id NOT IN (SELECT source_id FROM sources)").fetchall()[0][0]
        assert orphans == 0
        n, n_data, min_pos, max_pos, distinct_pos, null_pos = cur.execute("""
            SELECT count(*), (SELECT count(*) FROM event_data), min(pos), max(pos), count(DISTINCT pos),
                   count(*) FILTER (WHERE pos IS NULL) FROM events""").fetchall()[0]
        assert n == n_data and null_pos == 0
        if n:
            assert (min_pos, max_pos, distinct_pos) == (0, n - 1, n)
        return int(n)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_an_interrupted_ingest_leaves_a_consistent_case_that_a_rerun_completes(
        tmp_path: Path, sig: signal.Signals) -> None:
    # Many small files grouped into transactions, then one large file that is committed in parts
    # (the first part lands after about 200,000 events, in the middle of it).
    total = _write_many(tmp_path / "evidence", [4000] * 40 + [80_000])
    case_path = tmp_path / "case.duckdb"
    wal = Path(str(case_path) + ".wal")
    exe = Path(sys.executable).with_name("ashiato")
    cmd = [str(exe), "ingest", str(case_path), str(tmp_path / "evidence"), "--quiet"] if exe.exists() else [
        sys.executable, "-m", "tui.cli", "ingest", str(case_path), str(tmp_path / "evidence"), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_sigint_default)
    # Kill it right after its first group of files is committed (the WAL then holds far more than the
    # schema's few kB), or at the latest after a while; if it finished first, the checks below still hold.
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if wal.exists() and wal.stat().st_size > 16 * 1024:
                break
            time.sleep(0.02)
    finally:
        interrupted = proc.poll() is None
        if interrupted:
            os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    partial = _assert_consistent(case_path)
    assert 0 <= partial <= total
    with Case(case_path, read_only=True) as case:  # whole files only, never part of one
        for path, records in case.cursor().execute("SELECT path, records FROM sources").fetchall():
            assert records == Path(path).read_bytes().count(b"\n"), path

    if interrupted and sig == signal.SIGINT and b"ResourceInUseException" not in err:
        # (see test_ctrl_c_while_the_writer_commits_exits_cleanly for the case this leaves out)
        assert proc.returncode == 130, err
        assert b"interrupted: files already committed are kept" in err

    rerun = ingest_into(case_path, [tmp_path / "evidence"])
    assert {f.status for f in rerun.files} <= {"ingested", "already in case"}
    assert _assert_consistent(case_path) == total

    clean = tmp_path / "clean.duckdb"
    ingest_into(clean, [tmp_path / "evidence"])
    assert _assert_consistent(clean) == total
    cols = "ts, host, channel, record_id, target_user, src_ip"
    with Case(case_path) as a, Case(clean) as b:
        q = f"SELECT {cols} FROM events ORDER BY pos"
        assert a.cursor().execute(q).fetchall() == b.cursor().execute(q).fetchall()


def test_ctrl_c_while_the_writer_commits_exits_cleanly(tmp_path: Path) -> None:
    # One file of fewer rows than a DuckDB row group: the reader is done at once and waits for the
    # writer, and the case file only grows when the writer commits. Ctrl-C then.
    _write_many(tmp_path / "evidence", [120_000])
    case_path = tmp_path / "case.duckdb"
    exe = Path(sys.executable).with_name("ashiato")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tui.cli"]
    proc = subprocess.Popen([*cmd, "ingest", str(case_path), str(tmp_path / "evidence"), "--quiet"],
                            preexec_fn=_sigint_default,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if case_path.exists() and case_path.stat().st_size > (1 << 20):
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        proc.communicate()
        pytest.skip("the ingest finished before it could be interrupted")
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    _assert_consistent(case_path)
    assert proc.returncode == 130, err.decode(errors="replace")[-400:]
    assert b"Traceback" not in err


def _sigint_default() -> None:
    """A test run started in the background inherits SIGINT ignored, and Python then never turns
    it into KeyboardInterrupt; the child must see Ctrl-C as a terminal user's process would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _created_local(record_id: int, event_id: int, created: str, **data: Any) -> dict[str, Any]:
    """A flat export line timed by TimeCreated only: local time marked as UTC, @timestamp the same."""
    channel = SYSMON if event_id == 1 else "Security"
    return {"EventID": event_id, "Hostname": data.pop("host", "WS05"), "Channel": channel,
            "SourceName": "Microsoft-Windows-Security-Auditing", "RecordNumber": record_id,
            "TimeCreated": created, "@timestamp": created, **data}


def test_local_time_marked_as_utc_is_shifted_by_the_offset_sysmon_shows_on_the_same_host(tmp_path: Path) -> None:
    lines = [
        _created_local(1, 4688, "2020-10-23T02:36:43.542Z", NewProcessId="0x242c"),
        _created_local(2, 1, "2020-10-23T02:36:43.547Z", UtcTime="2020-10-23 06:36:43.542", ProcessId="9260"),
        _created_local(3, 4624, "2020-10-23T02:40:00.000Z", host="OTHER"),
    ]
    path = write_jsonl(tmp_path / "a.jsonl", lines)
    res = result_for(ingest_into(tmp_path / "case.duckdb", [path]), path)
    with Case(tmp_path / "case.duckdb") as case:
        got = dict(case.con.execute("SELECT record_id, strftime(ts, '%H:%M:%S.%g') FROM events").fetchall())
    # Shifted by the +4 h that Sysmon's UtcTime shows on WS05; OTHER has no Sysmon: left as written, and said.
    assert got == {1: "06:36:43.542", 2: "06:36:43.542", 3: "02:40:00.000"}
    assert res.records == 3 and res.skipped == 0
    notes = [p.message for p in res.problems]
    assert len(notes) == 1 and notes[0].startswith("1 events of other are timed by TimeCreated as written")


@pytest.mark.parametrize("batch_rows", [1, 2, 50_000])
def test_an_offset_shown_only_by_a_later_batch_still_shifts_the_events_before_it(tmp_path: Path,
                                                                                  batch_rows: int) -> None:
    lines = [
        _created_local(1, 4688, "2020-10-23T02:30:00.000Z"),
        _created_local(2, 4624, "2020-10-23T02:31:00.000Z"),
        _created_local(3, 1, "2020-10-23T02:36:43.547Z", UtcTime="2020-10-23 06:36:43.542", ProcessId="9260"),
        _created_local(4, 4689, "2020-10-23T02:40:00.000Z"),
        _created_local(5, 4624, "2020-10-23T02:41:00.000Z", host="OTHER"),
    ]
    # A JSON array: read whole, split into batches of batch_rows documents.
    path = tmp_path / "a.json"
    path.write_text(json.dumps(lines))
    with Case(tmp_path / "case.duckdb") as case:
        report = ingest(case, [path], batch_rows=batch_rows)
        got = dict(case.con.execute("SELECT record_id, strftime(ts, '%H:%M') FROM events").fetchall())
    assert got == {1: "06:30", 2: "06:31", 3: "06:36", 4: "06:40", 5: "02:41"}
    notes = [p.message for p in report.files[0].problems]
    assert len(notes) == 1 and notes[0].startswith("1 events of other are timed by TimeCreated")


# -- from an audit with hostile and damaged evidence ------------------------------------------------
VELOCIDEX_SECURITY = CORPUS / "evtx/velocidex-evtx/testdata/Security.evtx"
# An offset inside a template of that file's chunk 3: one byte there damages an element name of
# every record using the template.
TEMPLATE_BYTE = 0x71695


@pytest.mark.corpus
@pytest.mark.parametrize(("byte", "stored", "skipped"), [(0x0F, 739, 0), (0x22, 652, 87)],
                         ids=["control-character", "quote"])
def test_a_record_the_parser_renders_as_broken_json_is_repaired_or_skipped_alone(
        corpus: Path, tmp_path: Path, byte: int, stored: int, skipped: int) -> None:
    data = bytearray(VELOCIDEX_SECURITY.read_bytes())
    data[TEMPLATE_BYTE] = byte
    damaged = tmp_path / "damaged.evtx"
    damaged.write_bytes(bytes(data))
    good = write_jsonl(tmp_path / "good.jsonl", [logon(1), logon(2)])
    report = ingest_into(tmp_path / "case.duckdb", [damaged, good])
    result = result_for(report, damaged)
    assert (result.records, result.skipped) == (stored, skipped)
    assert result_for(report, good).records == 2
    word = "kept" if skipped == 0 else "skipped"
    assert any("record " in p.location and f"damaged EVTX record {word}" in p.message for p in result.problems)


def test_a_damaged_gzip_keeps_what_decodes_before_the_damage(tmp_path: Path) -> None:
    lines = [json.dumps(logon(i)) for i in range(1, 3001)]
    packed = bytearray(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    middle = tmp_path / "middle.jsonl.gz"
    corrupt = bytearray(packed)
    corrupt[len(corrupt) // 2: len(corrupt) // 2 + 64] = b"\xff" * 64
    middle.write_bytes(bytes(corrupt))
    checksum = tmp_path / "checksum.jsonl.gz"
    packed[-8] ^= 1  # the CRC of the trailer
    checksum.write_bytes(bytes(packed))
    report = ingest_into(tmp_path / "case.duckdb", [middle, checksum], dedupe=False)
    damaged = result_for(report, middle)
    # Damaged deflate data is either refused where it breaks or decoded into garbage lines that the
    # checksum then condemns: either way what came before is kept and the gzip damage is named.
    assert damaged.records > 1000
    assert any("corrupt gzip data" in p.message or "checksum does not match" in p.message for p in damaged.problems)
    whole = result_for(report, checksum)
    assert whole.records == 3000 and any("checksum does not match" in p.message for p in whole.problems)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_exports_from_powershell_are_read_like_utf8(tmp_path: Path, encoding: str) -> None:
    array = tmp_path / "export.json"
    array.write_bytes(json.dumps([logon(1), logon(2, "bob")], indent=4).replace("\n", "\r\n").encode(encoding))
    lines = tmp_path / "export.jsonl.gz"
    lines.write_bytes(gzip.compress("\n".join(json.dumps(logon(i, "carol")) for i in (3, 4)).encode(encoding)))
    report = ingest_into(tmp_path / "case.duckdb", [array, lines])
    assert report.records == 4 and report.skipped == 0
    with Case(tmp_path / "case.duckdb") as case:
        assert case.cursor().execute("SELECT list(target_user ORDER BY record_id) FROM events").fetchall()[0][0] == [
            "alice", "bob", "carol", "carol"]


def test_a_broken_document_in_a_one_line_array_loses_only_itself(tmp_path: Path) -> None:
    parts = [json.dumps(logon(i)) for i in range(1, 6)]
    parts[1] = parts[1].replace('"EventID":', '"EventID" ', 1)
    path = tmp_path / "compressed.json"
    path.write_text("[" + ",".join(parts) + "]")
    report = ingest_into(tmp_path / "case.duckdb", [path])
    assert (report.records, report.skipped) == (4, 1)
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 3, 4, 5]


def test_arrays_appended_to_one_file_are_all_read_and_text_after_them_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "appended.json"
    path.write_text(json.dumps([logon(1), logon(2)], indent=2) + "\n" + json.dumps([logon(3)], indent=2)
                    + "\nnot json\n")
    report = ingest_into(tmp_path / "case.duckdb", [path])
    assert (report.records, report.skipped) == (3, 1)
    assert "malformed JSON" in report.files[0].problems[0].message


def test_a_document_nested_too_deeply_is_skipped_and_the_file_goes_on(tmp_path: Path) -> None:
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(logon(1), indent=1) + "\n" + deep + "\n" + json.dumps(logon(2), indent=1) + "\n")
    report = ingest_into(tmp_path / "case.duckdb", [path])
    assert (report.records, report.skipped) == (2, 1)
    assert "nested too deeply" in report.files[0].problems[0].message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_that_cannot_be_read_is_reported_and_the_others_are_ingested(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "ev" / "good.jsonl", [logon(1)])
    locked = write_jsonl(tmp_path / "ev" / "locked.jsonl", [logon(2)])
    locked.chmod(0)
    try:
        report = ingest_into(tmp_path / "case.duckdb", [tmp_path / "ev"])
    finally:
        locked.chmod(0o600)
    assert result_for(report, good).records == 1
    assert "cannot read" in (result_for(report, locked).message or "")


def test_a_symlink_loop_is_named_as_such(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    report = ingest_into(tmp_path / "case.duckdb", [loop, write_jsonl(tmp_path / "a.jsonl", [logon(1)])])
    assert report.records == 1 and report.missing == [f"{loop} (a symbolic link to nothing, or in a loop)"]


def test_ingesting_the_directory_that_holds_the_case_leaves_the_case_file_out(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [logon(1)])
    ingest_into(tmp_path / "case.duckdb", [tmp_path / "a.jsonl"])
    report = ingest_into(tmp_path / "case.duckdb", [tmp_path])
    assert [Path(f.path).name for f in report.files] == ["a.jsonl"]


@pytest.mark.corpus
def test_a_truncated_evtx_file_is_noted_as_cut_short(corpus: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.evtx"
    cut.write_bytes(VELOCIDEX_SECURITY.read_bytes()[: 4096 + 3 * 65536 + 12345])
    report = ingest_into(tmp_path / "case.duckdb", [cut])
    assert report.records > 0
    assert any("cut short" in p.message for p in report.files[0].problems)


@pytest.mark.corpus
def test_python_evtx_reads_the_chunks_beyond_the_header_count_as_the_rust_parser_does(
        corpus: Path, tmp_path: Path) -> None:
    rust = ingest_into(tmp_path / "rust.duckdb", [VELOCIDEX_SECURITY])
    python = ingest_into(tmp_path / "python.duckdb", [VELOCIDEX_SECURITY], parser="python-evtx")
    assert python.records == rust.records == 739
    assert python.skipped == 0


def test_objects_nested_in_a_broken_document_of_a_one_line_array_are_not_taken_for_documents(tmp_path: Path) -> None:
    docs = [{**logon(i), "nested": [{"a": 1}, {"b": 2}]} for i in range(1, 6)]
    parts = [json.dumps(d) for d in docs]
    parts[1] = parts[1].replace('"EventID":', '"EventID":,', 1)
    path = tmp_path / "compressed.json"
    path.write_text("[" + ",".join(parts) + "]")
    report = ingest_into(tmp_path / "case.duckdb", [path])
    assert (report.records, report.skipped) == (4, 1)
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 3, 4, 5]


def test_a_file_of_nothing_but_broken_documents_stops_after_a_thousand_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "garbage.json"
    path.write_text("[" + ",".join(['{"EventID": 1,,}'] * 20_000) + "]")
    report = ingest_into(tmp_path / "case.duckdb", [path])
    assert report.records == 0 and report.skipped == 1000
    assert "more than 1,000 malformed documents" in report.files[0].problems[-1].message


def test_zero_padding_between_gzip_members_loses_neither_member(tmp_path: Path) -> None:
    first = gzip.compress((json.dumps(logon(1)) + "\n").encode())
    second = gzip.compress((json.dumps(logon(2)) + "\n").encode())
    path = tmp_path / "padded.jsonl.gz"
    path.write_bytes(first + b"\x00" * 512 + second + b"\x00" * 100)
    report = ingest_into(tmp_path / "case.duckdb", [path])
    assert (report.records, report.skipped) == (2, 0) and not report.files[0].problems
