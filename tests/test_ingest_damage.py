"""Damage at the edges of a file: junk before the first JSON document, an EVTX copy cut short.

Neither may lose the good events around it. Expected figures come from a plain reading of the raw
bytes: python-evtx over the intact original (records whose bytes lie wholly before the cut), and
line counts of the JSON written.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
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
