"""Real sample data (../shared/corpus): nothing the parsers can read is lost, every shape agrees with
its twin, damaged files keep their good records, and the hot fields mean what domain.md says."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, SYSMON, CorpusCase, count_json_documents, write_jsonl
from test_ingest_damage import expected_from_raw

from engine import Case
from engine.ingest import ingest
from engine.ingest.normalise import canonical_ip
from engine.schema import EVENT_COLUMN_NAMES

pytestmark = pytest.mark.corpus

TYPED = [c for c in EVENT_COLUMN_NAMES if c not in ("eid", "pos", "source_id")]
SIGMA_EVTX = "evtx/sigma-regression"
SIGMA_JSON = "ndjson/sigma-regression-evtxdump"
DAMAGED = [
    "evtx/omerbenamram-evtx/samples/sample_with_a_bad_chunk_magic.evtx",
    "evtx/omerbenamram-evtx/samples/sysmon.evtx",
    "evtx/omerbenamram-evtx/samples/2-vss_0-Microsoft-Windows-RemoteDesktopServices-RdpCoreTS%4Operational.evtx",
    "evtx/omerbenamram-evtx/samples/2-vss_0-Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx",
    "evtx/omerbenamram-evtx/samples/sample-with-zero-data-size-event.evtx",
]
EMPTY_EVTX = "evtx/hayabusa/test_files/evtx/sub/test2.evtx"


def evtx_yield(path: Path) -> int:
    """Records the `evtx` package yields, skipping damaged ones exactly as the engine's reader does."""
    from evtx import PyEvtxParser

    try:
        records = PyEvtxParser(str(path)).records_json()
    except (OSError, RuntimeError, ValueError):
        return 0
    n = 0
    while True:
        try:
            for _ in records:
                n += 1
            return n
        except RuntimeError:
            continue


def typed_rows(cur: Any, path: Path, columns: list[str] = TYPED) -> list[tuple[Any, ...]]:
    return cur.execute(
        f"SELECT {', '.join('e.' + c for c in columns)} FROM events e JOIN sources s USING (source_id) "
        "WHERE s.path = ? ORDER BY e.record_id, e.ts, e.event_id", [str(path)]).fetchall()


def evtx_files() -> list[Path]:
    return sorted(p for p in (CORPUS / "evtx").rglob("*") if p.is_file())


def json_files() -> list[Path]:
    return sorted(p for p in (CORPUS / "ndjson").rglob("*") if p.is_file())


# -- nothing lost -----------------------------------------------------------------------------------
def test_every_evtx_file_is_ingested_and_stores_every_record_the_parser_yields(corpus_case: CorpusCase) -> None:
    files = evtx_files()
    assert len(files) >= 300
    stored = {Path(p): (int(r), int(d)) for p, r, d in corpus_case.cursor().execute(
        "SELECT path, records, duplicates FROM sources").fetchall()}
    reported = {Path(f.path) for f in corpus_case.report.files}
    wrong = []
    for path in files:
        assert path in reported, f"{path} missing from the ingest report"
        assert path in stored, f"{path} has no sources row"
        records, dups = stored[path]
        expected = evtx_yield(path)
        if str(path.relative_to(CORPUS)) in DAMAGED:
            # Beside what the parser yields, the whole records it skipped in a chunk's id range.
            expected = expected_from_raw(path).stored
        if records + dups != expected:
            wrong.append(f"{path.relative_to(CORPUS)}: stored {records} + duplicates {dups}, evtx yields {expected}")
    assert not wrong, "\n".join(wrong)


def test_every_sources_row_counts_the_events_stored_from_it(corpus_case: CorpusCase) -> None:
    mismatched = corpus_case.cursor().execute("""
        SELECT s.path, s.records, count(e.eid) FROM sources s LEFT JOIN events e USING (source_id)
        GROUP BY ALL HAVING s.records <> count(e.eid)""").fetchall()
    assert not mismatched
    orphans = corpus_case.cursor().execute(
        "SELECT count(*) FROM events WHERE source_id NOT IN (SELECT source_id FROM sources)").fetchall()[0][0]
    assert orphans == 0


def test_every_json_file_stores_one_event_per_document(corpus_case: CorpusCase) -> None:
    files = json_files()
    assert len(files) >= 70
    wrong = []
    for path in files:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        expected = count_json_documents(raw)
        _, records, dups, skipped, first_error, shape = corpus_case.source(str(path.relative_to(CORPUS)))
        if records + dups != expected or skipped:
            wrong.append(f"{path.relative_to(CORPUS)} ({shape}): {records} stored + {dups} duplicates, "
                         f"{skipped} skipped ({first_error}); {expected} documents")
    assert not wrong, "\n".join(wrong)


def test_json_shapes_are_detected_by_content(corpus_case: CorpusCase) -> None:
    assert corpus_case.source("ndjson/winlogbeat-golden/1102.evtx.golden.json")[5] == "ecs"
    assert corpus_case.source("ndjson/chainsaw-output/clo_search_qj_simple_string.json")[5] == "evtx-json"
    datasets = corpus_case.cursor().execute(
        "SELECT path, shape FROM sources WHERE path LIKE ?", [str(CORPUS / "ndjson/security-datasets") + "%"]).fetchall()
    shapes = {Path(p).name.split("_20")[0]: s for p, s in datasets}
    assert shapes["empire_enable_rdp"] == "wlb6" and shapes["empire_invoke_runas"] == "wlb6"
    assert shapes["empire_mimikatz_logonpasswords"] == "nxlog"


# -- twins agree ------------------------------------------------------------------------------------
def _loose(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # The evtx_dump twins were exported by a tool that trims trailing blanks of values (e.g. a
    # ParentCommandLine `"...cmd.exe" ` is `"...cmd.exe"` in the twin): compare without them.
    return tuple(v.rstrip() if isinstance(v, str) else v for v in row)


def test_sigma_regression_evtx_and_their_evtx_dump_twins_give_the_same_rows(corpus_case: CorpusCase) -> None:
    evtx = sorted((CORPUS / SIGMA_EVTX).rglob("*.evtx"))
    assert len(evtx) >= 20
    cur = corpus_case.cursor()
    for path in evtx:
        twin = CORPUS / SIGMA_JSON / path.relative_to(CORPUS / SIGMA_EVTX).with_suffix(".json")
        assert twin.is_file(), f"no twin for {path}"
        a, b = typed_rows(cur, path), typed_rows(cur, twin)
        assert a, f"{path} stored nothing"
        assert [_loose(r) for r in a] == [_loose(r) for r in b], f"{path.relative_to(CORPUS)} differs from its twin"


def test_chainsaw_evtx_and_its_attribute_split_json_exports_agree(corpus_case: CorpusCase) -> None:
    cur = corpus_case.cursor()
    evtx = {r[TYPED.index("record_id")]: r for r in typed_rows(cur, CORPUS / "evtx/chainsaw/tests/evtx/security_sample.evtx")}
    for name in ("clo_search_q_jsonl_simple_string.jsonl", "clo_search_qj_simple_string.json"):
        rows = typed_rows(cur, CORPUS / "ndjson/chainsaw-output" / name)
        assert rows
        for row in rows:
            assert _loose(row) == _loose(evtx[row[TYPED.index("record_id")]])


PY_EVTX_FILES = [
    SIGMA_EVTX,
    "evtx/chainsaw/tests/evtx/security_sample.evtx",
    "evtx/evtx-attack-samples/Credential Access/sysmon_10_lsass_mimikatz_sekurlsa_logonpasswords.evtx",
    "evtx/evtx-attack-samples/Lateral Movement/LM_WMI_4624_4688_TargetHost.evtx",
    "evtx/evtx-attack-samples/Command and Control/DE_RDP_Tunneling_4624.evtx",
    "evtx/python-evtx/tests/data/issue_38.evtx",
    # Script text with CR LF line ends, which an XML parser would turn into LF.
    "evtx/evtx-attack-samples/Credential Access/Powershell_4104_MiniDumpWriteDump_Lsass.evtx",
    "evtx/python-evtx/tests/data/dns_log_malformed.evtx",  # python-evtx reads only part: left out below
]


@pytest.fixture(scope="module")
def python_evtx_case(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("python-evtx") / "case.duckdb"
    case = Case(path)
    ingest(case, [corpus / p for p in PY_EVTX_FILES], parser="python-evtx", dedupe=False)
    yield case
    case.close()


def _python_evtx_pairs(corpus_case: CorpusCase, python_evtx_case: Case) -> list[tuple[Path, list[Any], list[Any]]]:
    counts = dict(python_evtx_case.cursor().execute("SELECT path, records FROM sources").fetchall())
    assert counts and set(python_evtx_case.cursor().execute(
        "SELECT DISTINCT parser FROM sources").fetchall()) == {("python-evtx",)}
    pairs = []
    for path_text, n in sorted(counts.items()):
        path = Path(path_text)
        if n < evtx_yield(path):
            continue  # python-evtx cannot read all of this file
        pairs.append((path, typed_rows(corpus_case.cursor(), path), typed_rows(python_evtx_case.cursor(), path)))
    assert len(pairs) >= 20
    return pairs


def test_python_evtx_and_evtx_store_the_same_events(corpus_case: CorpusCase, python_evtx_case: Case) -> None:
    key = [TYPED.index(c) for c in ("record_id", "event_id", "host", "channel", "provider")]
    for path, a, b in _python_evtx_pairs(corpus_case, python_evtx_case):
        assert [[r[i] for i in key] for r in a] == [[r[i] for i in key] for r in b], path


def _blank_is_missing(value: Any) -> Any:
    return None if value == "" else value


def test_python_evtx_and_evtx_agree_on_every_typed_column_but_time(
        corpus_case: CorpusCase, python_evtx_case: Case) -> None:
    # Empty text and missing are taken as the same here; test_..._exactly below holds the difference.
    cols = [i for i, c in enumerate(TYPED) if c != "ts"]
    for path, a, b in _python_evtx_pairs(corpus_case, python_evtx_case):
        for ra, rb in zip(a, b, strict=True):
            diff = {TYPED[i]: (ra[i], rb[i]) for i in cols if _blank_is_missing(ra[i]) != _blank_is_missing(rb[i])}
            assert not diff, f"{path.relative_to(CORPUS)} record {ra[TYPED.index('record_id')]}: {diff}"


def test_python_evtx_and_evtx_agree_on_every_typed_column_but_time_exactly(
        corpus_case: CorpusCase, python_evtx_case: Case) -> None:
    cols = [i for i, c in enumerate(TYPED) if c != "ts"]
    for path, a, b in _python_evtx_pairs(corpus_case, python_evtx_case):
        for ra, rb in zip(a, b, strict=True):
            diff = {TYPED[i]: (ra[i], rb[i]) for i in cols if ra[i] != rb[i]}
            assert not diff, f"{path.relative_to(CORPUS)} record {ra[TYPED.index('record_id')]}: {diff}"


def test_python_evtx_and_evtx_times_agree_within_two_microseconds(
        corpus_case: CorpusCase, python_evtx_case: Case) -> None:
    # python-evtx turns the FILETIME into seconds since 1601 as a float: one ulp there is about 1.9 µs.
    i = TYPED.index("ts")
    for path, a, b in _python_evtx_pairs(corpus_case, python_evtx_case):
        for ra, rb in zip(a, b, strict=True):
            assert abs(ra[i] - rb[i]) <= timedelta(microseconds=2), path


def test_python_evtx_and_evtx_times_agree_exactly(corpus_case: CorpusCase, python_evtx_case: Case) -> None:
    i = TYPED.index("ts")
    for path, a, b in _python_evtx_pairs(corpus_case, python_evtx_case):
        assert [r[i] for r in a] == [r[i] for r in b], path


# -- damaged and empty files ------------------------------------------------------------------------
@pytest.mark.parametrize("relpath", DAMAGED, ids=[Path(p).name for p in DAMAGED])
def test_a_damaged_evtx_file_keeps_its_good_records_and_counts_what_it_skipped(
        corpus_case: CorpusCase, relpath: str) -> None:
    source_id, records, dups, skipped, first_error, shape = corpus_case.source(relpath)
    assert shape == "evtx"
    expected = expected_from_raw(CORPUS / relpath)
    assert records > 0 and records + dups == expected.stored >= evtx_yield(CORPUS / relpath)
    # Records, from the chunk headers' id ranges (a chunk whose header cannot tell counts as 1).
    assert skipped == expected.skipped > 0
    assert first_error and first_error.startswith(str(CORPUS / relpath))
    assert "chunk" in first_error.lower() or "record" in first_error.lower()
    logged = corpus_case.cursor().execute(
        "SELECT count(*) FROM ingest_errors WHERE source_id = ?", [source_id]).fetchall()[0][0]
    # The parser's errors are kept as notes beside the lines that count the records per chunk.
    assert logged > 0


def test_a_bad_chunk_is_located_by_its_number(corpus_case: CorpusCase) -> None:
    first_error = corpus_case.source(DAMAGED[0])[4]
    assert ": chunk 6:" in first_error


def test_the_damaged_files_are_reported_by_the_ingest(corpus_case: CorpusCase) -> None:
    by_path = {Path(f.path): f for f in corpus_case.report.files}
    for relpath in DAMAGED:
        result = by_path[CORPUS / relpath]
        assert result.status == "ingested" and result.skipped > 0 and result.problems


def test_an_empty_evtx_file_is_reported_and_the_rest_of_the_command_goes_on(corpus_case: CorpusCase) -> None:
    results = corpus_case.report.files
    index = next(i for i, f in enumerate(results) if Path(f.path) == CORPUS / EMPTY_EVTX)
    assert results[index].status == "skipped"
    assert "empty file (0 bytes)" in (results[index].message or "")
    assert any(f.status == "ingested" for f in results[index + 1:])
    assert corpus_case.source(EMPTY_EVTX)[1] == 0


def test_filetime_zero_is_kept_without_a_time_and_its_document_keeps_1601(corpus_case: CorpusCase) -> None:
    # A zeroed record (FILETIME 0, event ID 0): kept, timeless (it sorts last, not first), as written.
    rows = corpus_case.cursor().execute("""
        SELECT e.ts, json_extract_string(d.raw, '$.Event.System.TimeCreated.#attributes.SystemTime')
        FROM events e JOIN sources s USING (source_id) JOIN event_data d USING (eid)
        WHERE s.path = ? AND (e.ts IS NULL OR e.ts < TIMESTAMP '1700-01-01')""",
        [str(CORPUS / "evtx/omerbenamram-evtx/samples/Microsoft-Windows-HelloForBusiness%4Operational.evtx")]).fetchall()
    assert len(rows) == 1 and rows[0][0] is None and rows[0][1].startswith("1601-01-01")


# -- domain facts on real data ----------------------------------------------------------------------
SECURITY_EVTX = "evtx/omerbenamram-evtx/samples/security.evtx"


def test_4624_logon_types_of_a_real_security_log(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT e.logon_type, count(*) FROM events e JOIN sources s USING (source_id)
        WHERE s.path = ? AND e.event_id = 4624 GROUP BY ALL""", [str(CORPUS / SECURITY_EVTX)]).fetchall()
    counts = dict(rows)
    assert {0, 2, 3, 5, 7} <= set(counts)
    assert sum(counts.values()) == 583
    assert None not in counts


def test_logon_ids_are_unsigned_integers_whatever_the_hex_case(corpus_case: CorpusCase) -> None:
    cur = corpus_case.cursor()
    types = cur.execute("SELECT DISTINCT typeof(target_logon_id), typeof(subject_logon_id) FROM events "
                        "WHERE target_logon_id IS NOT NULL").fetchall()
    assert types == [("UBIGINT", "UBIGINT")]
    rows = cur.execute("""
        SELECT e.target_logon_id, e.subject_logon_id,
               json_extract_string(d.raw, '$.Event.EventData.TargetLogonId'),
               json_extract_string(d.raw, '$.Event.EventData.SubjectLogonId')
        FROM events e JOIN event_data d USING (eid) WHERE e.event_id = 4624 AND d.raw LIKE '{"Event"%'""").fetchall()
    assert len(rows) > 1000
    for target, subject, raw_target, raw_subject in rows:
        assert target == int(raw_target, 16)
        assert subject == int(raw_subject, 16)
    assert any(raw == "0x3e7" and target == 999 for target, _, raw, _ in rows)


def test_logon_process_names_are_trimmed(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT e.logon_process, json_extract_string(d.raw, '$.Event.EventData.LogonProcessName')
        FROM events e JOIN event_data d USING (eid)
        WHERE e.event_id = 4624 AND d.raw LIKE '{"Event"%'""").fetchall()
    padded = [(stored, raw) for stored, raw in rows if raw and raw != raw.strip()]
    assert len(padded) > 100
    assert all(stored == raw.strip() for stored, raw in padded)
    assert {"Advapi", "User32"} <= {stored for stored, _ in padded}


def test_4688_parent_pid_is_the_hex_creator_process_id(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT s.path, e.parent_pid, e.process_pid,
               json_extract_string(d.raw, '$.Event.EventData.ProcessId'),
               json_extract_string(d.raw, '$.Event.EventData.NewProcessId')
        FROM events e JOIN event_data d USING (eid) JOIN sources s USING (source_id)
        WHERE e.event_id = 4688 AND e.channel = 'Security' AND s.shape = 'evtx'""").fetchall()
    assert sum(1 for r in rows if r[0].endswith("deepbluecli/evtx/sliver-security.evtx")) >= 20
    for path, parent_pid, process_pid, creator, new in rows:
        assert parent_pid == int(creator, 16), path
        assert process_pid == int(new, 16), path


def test_sysmon_10_granted_access_is_an_integer(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT typeof(e.granted_access), e.granted_access, json_extract_string(d.raw, '$.Event.EventData.GrantedAccess')
        FROM events e JOIN event_data d USING (eid)
        WHERE e.event_id = 10 AND e.channel = ? AND d.raw LIKE '{"Event"%'""", [SYSMON]).fetchall()
    assert len(rows) > 100
    for typ, value, raw in rows:
        assert typ == "UINTEGER" and value == int(raw, 16)
    assert any(raw.lower() == "0x1010" for _, _, raw in rows)


def _parse(text: str) -> datetime:
    """ISO 8601 text → naive UTC (text without an offset is taken as UTC); 100 ns digits truncated."""
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo is None else dt.astimezone(UTC).replace(tzinfo=None)


def test_nxlog_sysmon_events_are_timed_by_their_utc_time(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT e.ts, e.utc_time, json_extract_string(d.data, '$.UtcTime') FROM events e JOIN event_data d USING (eid)
        JOIN sources s USING (source_id)
        WHERE s.shape = 'nxlog' AND e.channel = ? AND json_extract_string(d.data, '$.UtcTime') IS NOT NULL""",
        [SYSMON]).fetchall()
    assert len(rows) > 10_000
    for ts, utc_time, raw in rows:
        assert ts == utc_time == _parse(raw)


def test_nxlog_security_events_are_shifted_from_local_event_time_to_utc(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT e.ts, d.data FROM events e JOIN event_data d USING (eid) JOIN sources s USING (source_id)
        WHERE s.shape = 'nxlog' AND e.channel = 'Security'""").fetchall()
    checked = 0
    for ts, data in rows:
        doc = json.loads(data)
        if not {"EventTime", "EventReceivedTime", "@timestamp"} <= set(doc):
            continue
        # The collector's offset: UTC receive time minus local receive time, to the quarter hour.
        received_utc = _parse(doc["@timestamp"])
        offset = received_utc - datetime.fromisoformat(doc["EventReceivedTime"])
        quarter_hours = round(offset.total_seconds() / 900)
        assert ts == datetime.fromisoformat(doc["EventTime"]) + timedelta(minutes=15 * quarter_hours), doc
        assert ts <= received_utc
        checked += 1
    assert checked > 5000


def test_nxlog_security_events_sit_beside_the_sysmon_events_of_the_same_process(corpus_case: CorpusCase) -> None:
    # A 4688 and the Sysmon 1 of the same process happen within a second of each other, also in the
    # exports whose TimeCreated is the collector's local time marked as UTC (hours off, unshifted).
    rows = corpus_case.cursor().execute("""
        SELECT s.path, abs(epoch(a.ts) - epoch(b.ts)) AS gap
        FROM events a JOIN events b ON a.source_id = b.source_id AND a.host = b.host
             AND a.process_pid = b.process_pid AND lower(a.process_image) = lower(b.process_image)
        JOIN sources s ON s.source_id = a.source_id
        WHERE s.shape = 'nxlog' AND a.channel = 'Security' AND a.event_id = 4688 AND b.channel = ?
          AND b.event_id = 1""", [SYSMON]).fetchall()
    paths = {p for p, _ in rows}
    assert len(paths) >= 10 and any("cmd_bitsadmin_download_psh_script" in p for p in paths)
    assert max(gap for _, gap in rows) < 2, sorted(rows, key=lambda r: -r[1])[:3]


def test_nxlog_lower_case_channel_is_canonical(corpus_case: CorpusCase) -> None:
    channels = {c for (c,) in corpus_case.cursor().execute("SELECT DISTINCT channel FROM events").fetchall()}
    assert "Security" in channels and "security" not in channels


def test_every_json_event_of_the_corpus_has_a_time_and_a_host(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT s.path, count(*) FROM events e JOIN sources s USING (source_id)
        WHERE s.shape <> 'evtx' AND (e.ts IS NULL OR e.host IS NULL) GROUP BY ALL""").fetchall()
    assert not rows, rows


# -- winlogbeat ECS -----------------------------------------------------------------------------------
ECS_4688 = "ndjson/winlogbeat-ecs/security/test/testdata/ingest/security-windows2019_4688_Process_Created.golden.json.ndjson"
ECS_SYSMON_1 = "ndjson/winlogbeat-ecs/sysmon/test/testdata/ingest/sysmon-12-processcreate.golden.json.ndjson"


def _ecs_doc(relpath: str) -> dict[str, Any]:
    return json.loads((CORPUS / relpath).read_text().splitlines()[0])


def _only_row(case: Case, columns: str) -> tuple[Any, ...]:
    rows = case.cursor().execute(f"SELECT {columns} FROM events").fetchall()
    assert len(rows) == 1
    return tuple(rows[0])


def test_ecs_4688_process_fields_come_back_from_the_module_fields(corpus_case: CorpusCase, corpus: Path) -> None:
    doc = _ecs_doc(ECS_4688)
    source_id = corpus_case.source(ECS_4688)[0]
    row = corpus_case.cursor().execute("""
        SELECT process_pid, parent_pid, process_image, parent_image, command_line, host, ts, subject_logon_id
        FROM events WHERE source_id = ?""", [source_id]).fetchall()
    assert len(row) == 1
    pid, ppid, image, parent_image, cmd, host, ts, logon_id = row[0]
    assert "NewProcessId" not in doc["winlog"]["event_data"]  # moved to process.pid by the module
    assert pid == doc["process"]["pid"]
    assert ppid == int(doc["winlog"]["event_data"]["ProcessId"], 16) == doc["process"]["parent"]["pid"]
    assert image == doc["process"]["executable"]
    assert parent_image == doc["process"]["parent"]["executable"]
    assert cmd == doc["process"]["command_line"]
    assert host == doc["winlog"]["computer_name"]
    assert ts == _parse(doc["@timestamp"]) == datetime(2019, 11, 14, 17, 10, 15, 151551)
    assert logon_id == int(doc["winlog"]["event_data"]["SubjectLogonId"], 16)


def test_ecs_command_line_moved_out_of_event_data_is_kept(corpus: Path, tmp_path: Path) -> None:
    doc = _ecs_doc(ECS_4688)
    del doc["winlog"]["event_data"]["CommandLine"]
    path = write_jsonl(tmp_path / "moved.ndjson", [doc])
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [path])
        assert _only_row(case, "command_line, process_pid") == (doc["process"]["command_line"], doc["process"]["pid"])


def test_ecs_sysmon_1_moved_fields_come_back(corpus_case: CorpusCase) -> None:
    doc = _ecs_doc(ECS_SYSMON_1)
    assert "CommandLine" not in doc["winlog"]["event_data"]
    row = corpus_case.cursor().execute("""
        SELECT process_pid, process_image, command_line, parent_image, process_guid, parent_guid, ts, utc_time
        FROM events WHERE source_id = ?""", [corpus_case.source(ECS_SYSMON_1)[0]]).fetchall()[0]
    p = doc["process"]
    assert row[:4] == (p["pid"], p["executable"], p["command_line"], p["parent"]["executable"])
    assert row[4] == p["entity_id"].strip("{}").lower()
    assert row[5] == p["parent"]["entity_id"].strip("{}").lower()
    assert row[6] == row[7]


def test_ecs_host_is_the_originating_computer_not_the_forwarder(corpus: Path, tmp_path: Path) -> None:
    doc = _ecs_doc(ECS_4688)
    doc["host"] = {"name": "wef-collector.corp.local", "hostname": "wef-collector"}
    doc["agent"] = {"hostname": "wef-collector", "type": "winlogbeat"}
    path = write_jsonl(tmp_path / "forwarded.ndjson", [doc])
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [path])
        assert _only_row(case, "host") == (doc["winlog"]["computer_name"],)


def test_elasticsearch_hits_are_unwrapped_from_source(corpus: Path, tmp_path: Path) -> None:
    doc = _ecs_doc(ECS_4688)
    hits = [{"_index": "winlogbeat-8.5.0", "_id": "abc", "_score": 1.0, "_source": doc}]
    one_per_line = write_jsonl(tmp_path / "hits.ndjson", hits)
    response = tmp_path / "search.json"
    doc2 = json.loads(json.dumps(doc))
    doc2["winlog"]["record_id"] = "5011"
    response.write_text(json.dumps({"took": 3, "hits": {"total": {"value": 1}, "hits": [
        {"_index": "winlogbeat-8.5.0", "_id": "def", "_source": doc2}]}}, indent=2))
    with Case(tmp_path / "case.duckdb") as case:
        report = ingest(case, [one_per_line, response])
        assert [f.records for f in report.files] == [1, 1]
        rows = case.cursor().execute(
            "SELECT record_id, event_id, process_pid, host, channel FROM events ORDER BY record_id").fetchall()
        assert rows == [(5010, 4688, 4556, "vagrant", "Security"), (5011, 4688, 4556, "vagrant", "Security")]


ECS_INGEST = "ndjson/winlogbeat-ecs/security/test/testdata/ingest/"


@pytest.mark.parametrize(("golden", "subject", "target"), [
    # Account management: user.* is the subject, user.target.* the account acted on (TargetSid).
    ("security-windows2016_4720_Account_Created.golden.json.ndjson", "user", "user.target"),
    ("security-windows2016_4740_Account_Locked_Out.golden.json.ndjson", "user", "user.target"),
    # Group membership: Target* is the group, in user.target.group.*.
    ("security-windows2016_4732.golden.json.ndjson", "user", "user.target.group"),
])
def test_ecs_account_events_put_the_subject_and_the_target_back_in_their_own_fields(
        corpus: Path, tmp_path: Path, golden: str, subject: str, target: str) -> None:
    doc = _ecs_doc(ECS_INGEST + golden)
    data = doc["winlog"]["event_data"]
    expected = (data["SubjectUserName"], data["SubjectUserSid"], data["TargetUserName"], data["TargetDomainName"],
                data["TargetSid"])

    def at(path: str) -> dict[str, Any]:
        node: Any = doc
        for part in path.split("."):
            node = node[part]
        return node  # type: ignore[no-any-return]

    # The golden files agree with their event data …
    assert (at(subject)["name"], at(subject)["id"]) == expected[:2]
    assert (at(target)["name"], at(target)["domain"], at(target)["id"]) == expected[2:]
    with Case(tmp_path / "whole.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "whole.ndjson", [doc])])
        assert _only_row(case, "subject_user, subject_sid, target_user, target_domain, target_sid") == expected
        # … and nothing the event did not carry is made up under a Windows name.
        stored = json.loads(case.cursor().execute("SELECT data FROM event_data").fetchall()[0][0])
        assert "TargetUserSid" not in stored
    # … so the same values come back from the module fields alone.
    for key in ("SubjectUserName", "SubjectUserSid", "TargetUserName", "TargetDomainName", "TargetSid"):
        del data[key]
    with Case(tmp_path / "moved.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "moved.ndjson", [doc])])
        assert _only_row(case, "subject_user, subject_sid, target_user, target_domain, target_sid") == expected


def test_ecs_4776_user_is_the_account_being_validated_not_a_subject(corpus: Path, tmp_path: Path) -> None:
    doc = _ecs_doc(ECS_INGEST + "security-windows2012_4776.golden.json.ndjson")
    del doc["winlog"]["event_data"]["TargetUserName"]
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.ndjson", [doc])])
        assert _only_row(case, "subject_user, target_user") == (None, doc["user"]["name"])


def test_target_sid_is_read_from_target_sid_in_account_and_kerberos_events(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT e.target_sid, json_extract_string(d.raw, '$.Event.EventData.TargetSid')
        FROM events e JOIN event_data d USING (eid)
        WHERE e.channel = 'Security' AND e.event_id IN (4720, 4726, 4732, 4768, 4771)
          AND json_extract_string(d.raw, '$.Event.EventData.TargetSid') NOT IN ('-', '')""").fetchall()
    assert rows
    assert all(stored == raw for stored, raw in rows)


# -- fields of the RDP, account, service and DNS events -------------------------------------------------
# (channel, event ids, column, where the value is in the EVTX document, how the column holds it)
_EVENT_DATA = "$.Event.EventData."
_USER_DATA = "$.Event.UserData.EventXML."
FIELD_RULES: list[tuple[str, tuple[int, ...], str, str, Any]] = [
    ("Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational", (1149,), "target_user",
     _USER_DATA + "Param1", lambda v: v or None),
    ("Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational", (1149,), "src_ip",
     _USER_DATA + "Param3", lambda v: v or None),
    ("Security", (4776,), "workstation", _EVENT_DATA + "Workstation", lambda v: None if v in (None, "", "-") else v),
    ("System", (7045,), "command_line", _EVENT_DATA + "ImagePath", lambda v: v),
    (SYSMON, (22,), "dst_host", _EVENT_DATA + "QueryName", lambda v: v),
    ("Security", (4728, 4732), "member_sid", _EVENT_DATA + "MemberSid", lambda v: None if v in (None, "-") else v),
    # System 104 names the log that was cleared
    ("System", (104,), "object_name", "$.Event.UserData.LogFileCleared.Channel", lambda v: v),
]


@pytest.mark.parametrize(("channel", "eids", "column", "path", "expect"), FIELD_RULES,
                         ids=[f"{r[1][0]}-{r[2]}" for r in FIELD_RULES])
def test_event_specific_fields_land_in_their_columns(corpus_case: CorpusCase, channel: str, eids: tuple[int, ...],
                                                     column: str, path: str, expect: Any) -> None:
    rows = corpus_case.cursor().execute(f"""
        SELECT e.{column}, json_extract_string(d.raw, ?) FROM events e JOIN event_data d USING (eid)
        JOIN sources s USING (source_id)
        WHERE s.shape = 'evtx' AND e.channel = ? AND e.event_id IN (SELECT unnest(?))""",
        [path, channel, list(eids)]).fetchall()
    assert len(rows) >= 4, (channel, eids)
    assert all(stored == expect(raw) for stored, raw in rows), [r for r in rows if r[0] != expect(r[1])][:3]


def test_sysmon_10_is_attributed_to_the_source_user_when_sysmon_logs_one(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT e.subject_domain, e.subject_user, json_extract_string(d.raw, '$.Event.EventData.SourceUser')
        FROM events e JOIN event_data d USING (eid)
        WHERE e.channel = ? AND e.event_id = 10
          AND json_extract_string(d.raw, '$.Event.EventData.SourceUser') IS NOT NULL""", [SYSMON]).fetchall()
    assert rows
    for domain, user, source_user in rows:
        assert f"{domain}\\{user}" == source_user


def test_every_stored_event_has_its_document_and_no_document_is_left_without_an_event(
        corpus_case: CorpusCase) -> None:
    cur = corpus_case.cursor()
    assert cur.execute("SELECT count(*) FROM events e ANTI JOIN event_data d USING (eid)").fetchall()[0][0] == 0
    assert cur.execute("SELECT count(*) FROM event_data d ANTI JOIN events e USING (eid)").fetchall()[0][0] == 0
    assert cur.execute("SELECT count(*) - count(DISTINCT eid) FROM event_data").fetchall()[0][0] == 0
    # An EVTX event whose data is a UserData object keeps it beside the document.
    assert cur.execute("""SELECT count(*) FROM events e JOIN event_data d USING (eid) JOIN sources s USING (source_id)
                          WHERE s.shape = 'evtx' AND e.event_id = 1102 AND d.data IS NOT NULL
                            AND d.raw IS NOT NULL""").fetchall()[0][0] > 0


def test_evtx_events_dropped_as_duplicates_leave_no_document_behind(corpus: Path, tmp_path: Path) -> None:
    # EVTX batches store their documents straight from the batch: the duplicates must stay out.
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [corpus / SIGMA_JSON])
        report = ingest(case, [corpus / SIGMA_EVTX])
        assert report.duplicates > 0 and report.records == 0
        cur = case.cursor()
        assert cur.execute("SELECT count(*) FROM event_data d ANTI JOIN events e USING (eid)").fetchall()[0][0] == 0
        assert cur.execute("SELECT count(*) FROM events e ANTI JOIN event_data d USING (eid)").fetchall()[0][0] == 0


# -- NXLog: UserData events carry their fields only in the rendered Message ---------------------------
def _message_value(message: str, label: str) -> str:
    for line in message.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and name == label:
            return value.strip()
    raise AssertionError(f"no {label} in {message!r}")


def test_nxlog_cleared_security_logs_name_who_cleared_them_from_the_message(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT e.subject_user, e.subject_domain, e.subject_sid, e.subject_logon_id,
               json_extract_string(d.data, '$.Message')
        FROM events e JOIN event_data d USING (eid) JOIN sources s USING (source_id)
        WHERE s.shape = 'nxlog' AND e.channel = 'Security' AND e.event_id = 1102""").fetchall()
    assert len(rows) >= 3
    for user, domain, sid, logon_id, message in rows:
        assert user == _message_value(message, "Account Name")
        assert domain == _message_value(message, "Domain Name")
        assert sid == _message_value(message, "Security ID")
        assert logon_id == int(_message_value(message, "Logon ID"), 16)


def test_nxlog_rdp_events_carry_the_account_and_client_from_the_message(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT e.event_id, e.target_user, e.target_domain, e.src_ip, json_extract_string(d.data, '$.Message')
        FROM events e JOIN event_data d USING (eid) JOIN sources s USING (source_id)
        WHERE s.shape = 'nxlog' AND ((e.channel = ? AND e.event_id = 1149) OR (e.channel = ? AND e.event_id IN (24, 25)))""",
        ["Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational",
         "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"]).fetchall()
    assert {r[0] for r in rows} == {1149, 24, 25}
    for eid, user, domain, ip, message in rows:
        if eid == 1149:
            assert (domain, user) == (_message_value(message, "Domain"), _message_value(message, "User"))
        else:
            assert f"{domain}\\{user}" == _message_value(message, "User")
        assert ip == _message_value(message, "Source Network Address")


def test_nxlog_system_log_clears_name_the_log_from_the_message(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT e.object_name, json_extract_string(d.data, '$.Message')
        FROM events e JOIN event_data d USING (eid) JOIN sources s USING (source_id)
        WHERE s.shape = 'nxlog' AND e.channel = 'System' AND e.event_id = 104""").fetchall()
    assert rows
    for name, message in rows:
        assert message == f"The {name} log file was cleared."


def test_ip_addresses_are_stored_in_one_spelling(corpus_case: CorpusCase) -> None:
    import ipaddress

    rows = corpus_case.cursor().execute("""
        SELECT DISTINCT v FROM (SELECT src_ip AS v FROM events UNION ALL SELECT dst_ip FROM events)
        WHERE contains(v, ':')""").fetchall()
    assert len(rows) >= 10
    for (value,) in rows:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            continue  # not an address at all: kept as written
        assert value == str(addr) and not value.startswith("::ffff:"), value
    # Sysmon spells the loopback 0:0:0:0:0:0:0:1, the Security log ::1: one value in the case.
    assert corpus_case.cursor().execute(
        "SELECT count(*) FROM events WHERE src_ip = '0:0:0:0:0:0:0:1' OR dst_ip = '0:0:0:0:0:0:0:1'"
    ).fetchall()[0][0] == 0


# -- classic and network events: fields written as text or under their own names ----------------------
def _field(name: str) -> str:
    return (f"coalesce(json_extract_string(d.data, '$.\"{name}\"'), "
            f"json_extract_string(d.raw, '$.Event.EventData.\"{name}\"'))")


def _classic_text(data: str | None, raw: str | None) -> str:
    """The unnamed text of a classic event as each shape keeps it (EVTX Data, NXLog Message, param1-3)."""
    if raw and '"Event"' in raw[:20]:
        part = json.loads(raw)["Event"]["EventData"]["Data"]
        text = part.get("#text") if isinstance(part, dict) else part
        return "\n".join(text) if isinstance(text, list) else str(text)
    doc = json.loads(data or "{}")
    return doc.get("Message") or "\n".join(str(doc.get(f"param{i}", "")) for i in (1, 2, 3))


def test_windows_powershell_events_carry_the_host_command_line_and_the_user_in_every_shape(
        corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute("""
        SELECT s.shape, e.event_id, e.command_line, e.subject_domain, e.subject_user, d.data, d.raw
        FROM events e JOIN event_data d USING (eid) JOIN sources s USING (source_id)
        WHERE e.channel = 'Windows PowerShell' AND e.event_id IN (400, 403, 600, 800)""").fetchall()
    shapes = set()
    for shape, eid, command_line, domain, user, data, raw in rows:
        if shape == "ecs" and json.loads(data or "{}").get("CommandLine"):
            assert command_line == json.loads(data)["CommandLine"]  # the module parsed it already
            continue
        text = _classic_text(data, raw)
        host_app = re.search(r"HostApplication=([^\r\n]*)", text)
        assert command_line == (host_app.group(1).strip() or None if host_app else None), (shape, eid)
        account = re.search(r"UserId=([^\r\n]*)", text)
        if account and account.group(1).strip():
            assert f"{domain}\\{user}" == account.group(1).strip(), (shape, eid)
        shapes.add(shape)
    assert {"evtx", "nxlog", "wlb6"} <= shapes
    cur = corpus_case.cursor()
    assert cur.execute("SELECT count(*) FROM events WHERE channel = 'Windows PowerShell' AND command_line ILIKE '%-enc %'"
                       ).fetchall()[0][0] > 100


def test_firewall_connections_carry_their_addresses_ports_and_program(corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute(f"""
        SELECT e.src_ip, e.src_port, e.dst_ip, e.dst_port, e.process_image, {_field('SourceAddress')},
               {_field('SourcePort')}, {_field('DestAddress')}, {_field('DestPort')}, {_field('Application')}
        FROM events e JOIN event_data d USING (eid) WHERE e.channel = 'Security' AND e.event_id = 5156""").fetchall()
    assert len(rows) > 100
    for src, sport, dst, dport, image, *raw in rows:
        assert (src, sport, dst, dport, image) == (
            canonical_ip(raw[0]), int(raw[1]), canonical_ip(raw[2]), int(raw[3]), raw[4])


@pytest.mark.parametrize(("channel", "eids", "column", "field"), [
    (SYSMON, (6, 7), "object_name", "ImageLoaded"),
    ("System", (7036, 7040), "service_name", "param1"),
])
def test_the_object_of_loads_and_service_changes_is_named(corpus_case: CorpusCase, channel: str,
                                                          eids: tuple[int, ...], column: str, field: str) -> None:
    rows = corpus_case.cursor().execute(f"""
        SELECT e.{column}, {_field(field)} FROM events e JOIN event_data d USING (eid)
        WHERE e.channel = ? AND e.event_id IN (SELECT unnest(?))""", [channel, list(eids)]).fetchall()
    assert len(rows) > 20
    assert all(stored == raw for stored, raw in rows if raw not in (None, "", "-")), rows[:3]
    assert sum(stored is not None for stored, _ in rows) > 20


def test_powershell_module_logging_carries_the_host_command_line_the_user_and_the_payload(
        corpus_case: CorpusCase) -> None:
    rows = corpus_case.cursor().execute(f"""
        SELECT s.shape, e.command_line, e.subject_domain, e.subject_user, e.script_text,
               {_field('ContextInfo')}, {_field('Payload')}
        FROM events e JOIN event_data d USING (eid) JOIN sources s USING (source_id)
        WHERE e.channel = 'Microsoft-Windows-PowerShell/Operational' AND e.event_id = 4103""").fetchall()
    checked = set()
    for shape, command_line, domain, user, script_text, context, payload in rows:
        if context is None:
            continue  # the winlogbeat module parsed ContextInfo into its own fields
        values = {name.strip(): value.strip() for name, _, value in
                  (line.partition(" = ") for line in context.splitlines() if " = " in line)}
        assert command_line == (values.get("Host Application") or None), shape
        if values.get("User"):
            assert f"{domain}\\{user}" == values["User"], shape
        assert script_text == payload
        checked.add(shape)
    assert {"nxlog", "wlb6"} <= checked
