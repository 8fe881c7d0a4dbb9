"""Damage in a file: junk before the first JSON document, an EVTX copy cut short, a damaged EVTX chunk
in the middle of a file.

None may lose the good events around it, and what is skipped is counted in records. Expected figures
come from a plain reading of the raw bytes: python-evtx over the intact original (records whose bytes
lie wholly before the cut, or clear of the damaged bytes), chunk headers read with struct, and line
counts of the JSON written.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, evtx_doc, ingest_into, write_jsonl

from engine import Case

SMB_EVTX = CORPUS / "evtx/deepbluecli/evtx/smb-password-guessing-security.evtx"
BITSADMIN_JSON = CORPUS / ("ndjson/security-datasets/atomic/windows/defense_evasion/host/cmd_bitsadmin_download_psh_script/"
                           "cmd_bitsadmin_download_psh_script_2020-10-2302365189.json.gz")
HEADER = 4096
CHUNK = 65536


def stored_record_ids(case_path: Path) -> list[int]:
    with Case(case_path) as case:
        return [r[0] for r in case.cursor().execute("SELECT record_id FROM events ORDER BY record_id").fetchall()]


# -- a truncated EVTX -------------------------------------------------------------------------------
@functools.cache
def records_of(original: Path) -> list[tuple[int, int, int]]:
    """(byte offset, size, EventRecordID) of every record of the intact file: where each lies, by
    python-evtx walking the record headers, and its EventRecordID, by the Rust parser over the
    intact file (keyed by the record number both read from the record header)."""
    import Evtx.Evtx as pyevtx
    from evtx import PyEvtxParser

    event_ids = {r["event_record_id"]: json.loads(r["data"])["Event"]["System"]["EventRecordID"]
                 for r in PyEvtxParser(str(original)).records_json()}
    out = []
    with pyevtx.Evtx(str(original)) as log:
        for chunk in log.chunks():
            for record in chunk.records():
                out.append((record.offset(), record.size(), int(event_ids[record.record_num()])))
    return out


def cut_copy(tmp_path: Path, cut: int) -> Path:
    path = tmp_path / "cut.evtx"
    path.write_bytes(SMB_EVTX.read_bytes()[:cut])
    return path


HALF = SMB_EVTX.stat().st_size // 2 if SMB_EVTX.exists() else 0
CUTS = {
    "cut-in-half": HALF,
    "a-chunk-boundary-and-part-of-a-chunk": HEADER + 10 * CHUNK + 5000,
    "inside-the-chunk-tables": HEADER + 10 * CHUNK + 300,
    "one-byte-short-of-a-chunk": HEADER + 10 * CHUNK + CHUNK - 1,
}


@pytest.mark.corpus
@pytest.mark.parametrize(("cut", "parser"), [*((c, "evtx") for c in CUTS.values()), (HEADER + 3 * CHUNK + 20000, "python-evtx")],
                         ids=[*CUTS, "part-of-a-chunk-python-evtx"])
def test_a_truncated_evtx_keeps_every_record_whose_bytes_lie_before_the_cut_and_counts_the_rest(
        corpus: Path, tmp_path: Path, cut: int, parser: str) -> None:
    records = records_of(SMB_EVTX)
    chunk_start = cut - (cut - HEADER) % CHUNK
    whole = sorted(rid for off, size, rid in records if off + size <= cut)
    in_cut_chunk = [rid for off, _, rid in records if chunk_start <= off < chunk_start + CHUNK]
    lost = len([rid for rid in in_cut_chunk if rid not in whole])
    path = cut_copy(tmp_path, cut)
    report = ingest_into(tmp_path / "case.duckdb", [path], parser=parser)
    result = report.files[0]
    assert stored_record_ids(tmp_path / "case.duckdb") == whole  # each once
    assert (result.records, result.skipped) == (len(whole), lost)
    chunk_no = (chunk_start - HEADER) // CHUNK
    said = [p for p in result.problems if p.location == f"{path}: chunk {chunk_no}"]
    assert len(said) == 1
    assert said[0].message.startswith(f"{lost} records of the cut chunk lost" if lost else "the file ends ")
    assert any("cut short" in p.message for p in result.problems)


@pytest.mark.corpus
def test_the_file_cut_in_half_recovers_the_47_whole_records_of_its_cut_chunk(corpus: Path, tmp_path: Path) -> None:
    path = cut_copy(tmp_path, HALF)
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    # 24 whole chunks of 107 records, then 47 of the cut chunk's 107.
    assert (result.records, result.skipped) == (24 * 107 + 47, 107 - 47)
    assert any("47 whole records before the cut were recovered" in p.message for p in result.problems)


@pytest.mark.corpus
def test_a_cut_past_the_last_record_of_a_partly_filled_chunk_loses_nothing(corpus: Path, tmp_path: Path) -> None:
    records = records_of(SMB_EVTX)
    last_end = max(off + size for off, size, _ in records)
    path = cut_copy(tmp_path, last_end + 100)
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    assert (result.records, result.skipped) == (len(records), 0)
    assert any("none of its records is lost" in p.message for p in result.problems)


@pytest.mark.corpus
def test_a_copy_cut_on_a_chunk_boundary_keeps_its_whole_chunks_and_notes_no_cut_chunk(
        corpus: Path, tmp_path: Path) -> None:
    records = records_of(SMB_EVTX)
    cut = HEADER + 10 * CHUNK
    path = cut_copy(tmp_path, cut)
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    assert result.records == len([r for r in records if r[0] + r[1] <= cut]) and result.skipped == 0
    assert not any("cut chunk" in p.message for p in result.problems)


@pytest.mark.corpus
def test_a_gzipped_truncated_evtx_is_recovered_like_the_plain_one(corpus: Path, tmp_path: Path) -> None:
    packed = tmp_path / "cut.evtx.gz"
    packed.write_bytes(gzip.compress(SMB_EVTX.read_bytes()[:HALF], mtime=0))
    result = ingest_into(tmp_path / "case.duckdb", [packed]).files[0]
    assert (result.records, result.skipped) == (24 * 107 + 47, 60)


# -- a damaged chunk in the middle of an EVTX file ---------------------------------------------------
@dataclass(frozen=True)
class Expected:
    """What a damaged EVTX file holds, read without the engine."""

    yielded: int  # records the Rust parser yields
    recovered: int  # records of a header's id range it does not yield, whole in the chunk and readable by python-evtx
    lost: int  # records of a header's id range neither gives
    damaged_headers: int  # chunks with bytes but no chunk signature, or ids that cannot be

    @property
    def stored(self) -> int:
        return self.yielded + self.recovered

    @property
    def skipped(self) -> int:
        return self.lost + self.damaged_headers


@functools.cache
def expected_from_raw(path: Path) -> Expected:
    """The Rust parser's record ids; each whole 64 KiB chunk's header (signature, first and last
    EventRecordID at offsets 24 and 32, free-space offset at 48) read with struct; and, for the ids
    of a header's range the parser does not give, every 8-byte-aligned record signature of the used
    part of the chunk whose size is copied at its end and whose XML python-evtx can render."""
    import Evtx.Evtx as pyevtx
    from evtx import PyEvtxParser

    yielded: set[int] = set()
    records = PyEvtxParser(str(path)).records_json()
    while True:
        try:
            for r in records:
                yielded.add(r["event_record_id"])
            break
        except RuntimeError:
            continue
    data = path.read_bytes()
    recovered = lost = damaged = 0
    for start in range(HEADER, len(data) - CHUNK + 1, CHUNK):
        chunk = data[start:start + CHUNK]
        if chunk[:8] != b"ElfChnk\x00":
            damaged += any(chunk)
            continue
        first, last = struct.unpack_from("<QQ", chunk, 24)
        if not 0 < first <= last < first + CHUNK // 28:
            damaged += 1
            continue
        missing = set(range(first, last + 1)) - yielded
        if not missing:
            continue
        free = struct.unpack_from("<I", chunk, 48)[0]
        header = pyevtx.ChunkHeader(chunk, 0)
        for off in range(0x200, free - 27, 8):
            if chunk[off:off + 4] != b"**\x00\x00":
                continue
            size, rid = struct.unpack_from("<IQ", chunk, off + 4)
            if rid in missing and 28 <= size <= free - off and struct.unpack_from("<I", chunk, off + size - 4)[0] == size:
                try:
                    pyevtx.Record(chunk, off, header).xml()
                except Exception:
                    continue
                missing.discard(rid)
                recovered += 1
        lost += len(missing)
    return Expected(len(yielded), recovered, lost, damaged)


DAMAGED_CORPUS = {
    "bad-chunk-magic": "evtx/omerbenamram-evtx/samples/sample_with_a_bad_chunk_magic.evtx",
    "sysmon": "evtx/omerbenamram-evtx/samples/sysmon.evtx",
    "rdpcorets-vss": "evtx/omerbenamram-evtx/samples/"
                     "2-vss_0-Microsoft-Windows-RemoteDesktopServices-RdpCoreTS%4Operational.evtx",
    "rcm-vss": "evtx/omerbenamram-evtx/samples/"
               "2-vss_0-Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx",
    "zero-data-size-event": "evtx/omerbenamram-evtx/samples/sample-with-zero-data-size-event.evtx",
}


def skipped_in_sources(case_path: Path, path: Path) -> int:
    with Case(case_path) as case:
        return int(case.cursor().execute("SELECT skipped FROM sources WHERE path = ?", [str(path)]).fetchall()[0][0])


@pytest.mark.corpus
@pytest.mark.parametrize("parser", ["evtx", "python-evtx"])
@pytest.mark.parametrize("relpath", list(DAMAGED_CORPUS.values()), ids=list(DAMAGED_CORPUS))
def test_a_damaged_corpus_evtx_counts_skipped_records_from_its_chunk_headers(
        corpus: Path, tmp_path: Path, relpath: str, parser: str) -> None:
    path = corpus / relpath
    expected = expected_from_raw(path)
    result = ingest_into(tmp_path / "case.duckdb", [path], parser=parser, dedupe=False).files[0]
    assert (result.records, result.skipped) == (expected.stored, expected.skipped)
    assert skipped_in_sources(tmp_path / "case.duckdb", path) == result.skipped
    lines = [p for p in result.problems if " lost: the chunk header lists records " in p.message
             or p.message.startswith("damaged header; how many records it held cannot be told")]
    assert len(lines) == len([p for p in lines if ": chunk " in p.location])
    assert sum(int(p.message.split(" ")[0].replace(",", "")) for p in lines if " lost: " in p.message) == expected.lost
    assert len([p for p in lines if p.message.startswith("damaged header")]) == expected.damaged_headers


def damage_copy(tmp_path: Path, at: int, junk: bytes) -> Path:
    data = bytearray(SMB_EVTX.read_bytes())
    data[at:at + len(junk)] = junk
    path = tmp_path / "damaged.evtx"
    path.write_bytes(bytes(data))
    return path


def chunk_ids(chunk_no: int) -> tuple[int, int]:
    start = HEADER + chunk_no * CHUNK
    return struct.unpack_from("<QQ", SMB_EVTX.read_bytes(), start + 24)


@pytest.mark.corpus
@pytest.mark.parametrize("parser", ["evtx", "python-evtx"])
@pytest.mark.parametrize(("record_index", "length"), [(50, 8), (50, 1500), (3, 24)],
                         ids=["one-record-signature", "three-records-zeroed", "an-early-record-header"])
def test_a_damaged_stretch_inside_a_mid_file_chunk_loses_only_the_records_it_touches(
        corpus: Path, tmp_path: Path, parser: str, record_index: int, length: int) -> None:
    records = records_of(SMB_EVTX)
    chunk_no = 7
    start = HEADER + chunk_no * CHUNK
    in_chunk = [r for r in records if start <= r[0] < start + CHUNK]
    at = in_chunk[record_index][0]
    touched = {rid for off, size, rid in records if off < at + length and at < off + size}
    path = damage_copy(tmp_path, at, bytes(length))
    result = ingest_into(tmp_path / "case.duckdb", [path], parser=parser).files[0]
    assert stored_record_ids(tmp_path / "case.duckdb") == sorted(rid for _, _, rid in records if rid not in touched)
    assert (result.records, result.skipped) == (len(records) - len(touched), len(touched))
    assert result.records + result.skipped == len(records)
    first, last = chunk_ids(chunk_no)
    said = [p for p in result.problems if p.location == f"{path}: chunk {chunk_no}"
            and f"records {first}–{last}" in p.message]
    assert len(said) == 1
    assert said[0].message.startswith(f"{len(touched)} record{'s' if len(touched) > 1 else ''} lost")


@pytest.mark.corpus
@pytest.mark.parametrize("parser", ["evtx", "python-evtx"])
def test_a_mid_file_chunk_whose_signature_is_damaged_is_read_record_by_record_and_counts_as_one(
        corpus: Path, tmp_path: Path, parser: str) -> None:
    records = records_of(SMB_EVTX)
    path = damage_copy(tmp_path, HEADER + 7 * CHUNK, b"XXXXXXXX")
    result = ingest_into(tmp_path / "case.duckdb", [path], parser=parser).files[0]
    # Its records are intact: all of them come back, and the one skipped says the count is unknown.
    assert stored_record_ids(tmp_path / "case.duckdb") == sorted(rid for _, _, rid in records)
    assert (result.records, result.skipped) == (len(records), 1)
    said = [str(p) for p in result.problems if p.message.startswith("damaged header")]
    assert said == [f"{path}: chunk 7: damaged header; how many records it held cannot be told (counted as 1 "
                    f"skipped); 107 whole records recovered with python-evtx"]


@pytest.mark.corpus
def test_a_mid_file_chunk_whose_whole_header_is_zeroed_counts_as_one_and_keeps_the_other_chunks(
        corpus: Path, tmp_path: Path) -> None:
    records = records_of(SMB_EVTX)
    start = HEADER + 7 * CHUNK
    path = damage_copy(tmp_path, start, bytes(0x200))
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    others = sorted(rid for off, _, rid in records if not start <= off < start + CHUNK)
    stored = stored_record_ids(tmp_path / "case.duckdb")
    assert set(others) <= set(stored) and len(stored) == len(set(stored))
    assert result.skipped == 1
    assert any(str(p).startswith(f"{path}: chunk 7: damaged header; how many records it held cannot be told")
               for p in result.problems)


@pytest.mark.corpus
def test_records_skipped_in_a_damaged_chunk_and_malformed_json_lines_add_up_in_the_report(
        corpus: Path, tmp_path: Path) -> None:
    records = records_of(SMB_EVTX)
    in_chunk = [r for r in records if HEADER + 7 * CHUNK <= r[0] < HEADER + 8 * CHUNK]
    evtx = damage_copy(tmp_path, in_chunk[50][0], bytes(8))
    lines = write_jsonl(tmp_path / "export.jsonl", [logon(1), "{broken", logon(2)])
    report = ingest_into(tmp_path / "case.duckdb", [evtx, lines])
    assert [(f.records, f.skipped) for f in report.files] == [(len(records) - 1, 1), (2, 1)]
    assert report.skipped == 2
    with Case(tmp_path / "case.duckdb") as case:
        assert sorted(case.cursor().execute("SELECT records, skipped FROM sources").fetchall()) == [
            (2, 1), (len(records) - 1, 1)]


# -- junk before the first JSON document ------------------------------------------------------------
def logon(record_id: int) -> dict[str, Any]:
    return evtx_doc(record_id, 4624, f"2021-01-01T00:{record_id // 60 % 60:02d}:{record_id % 60:02d}.000000Z",
                    data={"TargetUserName": "alice", "LogonType": "3"})


def random_junk() -> bytes:
    junk = random.Random(20240612).randbytes(100)
    # Not a start the reader takes for JSON (or for gzip, or UTF-16): stray bytes, not a document.
    assert junk[:1] not in (b"{", b"[", b" ", b"\t", b"\r", b"\n", b"\x1f", b"\xff", b"\xfe", b"\xef")
    return junk


JUNK = {
    "random-bytes": random_junk(),
    "nul-bytes": b"\0\0\0\0",
    "a-text-header": b"exported by nxlog-ce 3.2 on WS05 at 2021-01-01 00:00:00",
    "two-header-lines-and-a-blank": b"# export of Security\n# host WS05\n",
    "a-bracketed-header": b"[nxlog export 2021-01-01]",
}


def junk_lines(junk: bytes) -> int:
    return len([line for line in junk.split(b"\n") if line.strip()])


@pytest.mark.parametrize("junk", list(JUNK.values()), ids=list(JUNK))
def test_junk_before_the_first_json_line_loses_only_its_own_lines(tmp_path: Path, junk: bytes) -> None:
    good = [logon(i) for i in range(1, 425)]
    path = write_jsonl(tmp_path / "export.jsonl", [junk, *good])
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    assert result.status == "ingested"
    assert (result.records, result.skipped) == (424, junk_lines(junk))
    assert stored_record_ids(tmp_path / "case.duckdb") == list(range(1, 425))
    assert str(result.problems[0]).startswith(f"{path}:1: ")
    assert "before the first document" in result.problems[0].message


@pytest.mark.parametrize("junk", list(JUNK.values()), ids=list(JUNK))
def test_junk_at_line_1_loses_what_the_same_junk_at_line_200_loses(tmp_path: Path, junk: bytes) -> None:
    good = [logon(i) for i in range(1, 425)]
    first = write_jsonl(tmp_path / "first.jsonl", [junk, *good])
    middle = write_jsonl(tmp_path / "middle.jsonl", [*good[:199], junk, *good[199:]])
    a = ingest_into(tmp_path / "a.duckdb", [first]).files[0]
    b = ingest_into(tmp_path / "b.duckdb", [middle]).files[0]
    assert (a.records, a.skipped) == (b.records, b.skipped) == (424, junk_lines(junk))


@pytest.mark.corpus
@pytest.mark.parametrize("junk", list(JUNK.values()), ids=list(JUNK))
def test_a_corpus_export_behind_a_bad_first_line_keeps_all_its_lines(corpus: Path, tmp_path: Path, junk: bytes) -> None:
    good = gzip.decompress(BITSADMIN_JSON.read_bytes())
    expected = len([line for line in good.split(b"\n") if line.strip()])
    assert expected == 424
    path = tmp_path / "export.json.gz"
    path.write_bytes(gzip.compress(junk + b"\n" + good, mtime=0))
    result = ingest_into(tmp_path / "case.duckdb", [path], dedupe=False).files[0]
    assert (result.records, result.skipped) == (expected, junk_lines(junk))


def test_a_later_malformed_line_is_still_named_by_its_own_line_number(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "export.jsonl", [b"\0\0\0\0", logon(1), logon(2), '{"Event": {', logon(4)])
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    assert (result.records, result.skipped) == (3, 2)
    assert [p.location for p in result.problems] == [f"{path}:1", f"{path}:4"]


@pytest.mark.parametrize("indent", [None, 2], ids=["one-line-array", "pretty-printed-array"])
def test_a_text_header_before_a_json_array_loses_only_the_header(tmp_path: Path, indent: int | None) -> None:
    path = tmp_path / "export.json"
    path.write_text("Exported by Get-WinEvent | ConvertTo-Json\n\n" + json.dumps([logon(i) for i in range(1, 6)],
                                                                                 indent=indent))
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    assert (result.records, result.skipped) == (5, 1)
    assert stored_record_ids(tmp_path / "case.duckdb") == [1, 2, 3, 4, 5]


def test_a_text_header_before_pretty_printed_objects_loses_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text("header\n" + "\n".join(json.dumps(logon(i), indent=4) for i in range(1, 4)) + "\n")
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    assert (result.records, result.skipped) == (3, 1)


@pytest.mark.parametrize("content", [
    b"Investigation notes\n" + b"nothing { here\n" * 5000,
    b"time,host,event_id\n" + b"2021-01-01T00:00:00Z,WS05,4624\n" * 5000,
    b"[2021-01-01 10:00:00] service started\n" * 5000,
    b"[settings]\nname = x\n{ not json }\n" * 2000,
], ids=["text", "csv", "text-log-with-bracketed-times", "ini-with-braces"])
def test_a_file_that_is_not_json_is_still_not_a_recognised_event_log(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    assert result.status == "skipped" and (result.records, result.skipped) == (0, 0)
    assert result.message is not None and result.message.startswith(f"{path}: not a recognised event log")


def test_json_found_only_after_the_look_ahead_is_not_taken_for_an_event_log(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "export.jsonl", [f"note {i}" for i in range(150)] + [logon(1)])
    result = ingest_into(tmp_path / "case.duckdb", [path]).files[0]
    assert result.status == "skipped" and (result.records, result.skipped) == (0, 0)
    assert result.message is not None and "not a recognised event log" in result.message
