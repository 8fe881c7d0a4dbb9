"""Shared fixtures and small event builders for the engine tests.

The real sample corpus sits beside the repository (`../shared/corpus`); tests that need it take the
`corpus` fixture and skip with a clear reason when it is absent. Everything else builds its own
tiny evidence files in `tmp_path`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine import Case
from engine.ingest import IngestReport, ingest

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
SECURITY = "Security"
SYSMON = "Microsoft-Windows-Sysmon/Operational"


# -- the real corpus --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "evtx").is_dir() or not (CORPUS / "ndjson").is_dir():
        pytest.skip(f"real sample corpus not found at {CORPUS} (expected ../shared/corpus beside the repo)")
    return CORPUS


@dataclass
class CorpusCase:
    """The whole corpus (EVTX and JSON) ingested once, without dedupe, into one case."""

    case: Case
    path: Path
    report: IngestReport

    def cursor(self) -> Any:
        return self.case.cursor()

    def source(self, relpath: str) -> tuple[Any, ...]:
        """The `sources` row (source_id, records, duplicates, skipped, first_error, shape) of a corpus file."""
        rows = self.cursor().execute(
            "SELECT source_id, records, duplicates, skipped, first_error, shape FROM sources WHERE path = ?",
            [str(CORPUS / relpath)]).fetchall()
        assert rows, f"{relpath} has no sources row"
        return tuple(rows[0])


@pytest.fixture(scope="session")
def corpus_case(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusCase]:
    path = tmp_path_factory.mktemp("corpus-case") / "corpus.duckdb"
    case = Case(path)
    report = ingest(case, [corpus / "evtx", corpus / "ndjson"], dedupe=False)
    try:
        yield CorpusCase(case, path, report)
    finally:
        case.close()


# -- small generated evidence -----------------------------------------------------------------------
def evtx_doc(record_id: int, event_id: int, when: str, *, host: str = "WS01.corp.local",
             channel: str = SECURITY, provider: str = "Microsoft-Windows-Security-Auditing",
             data: dict[str, Any] | None = None, user_sid: str | None = None) -> dict[str, Any]:
    """One event in evtx_dump's JSON layout (the same layout the Rust parser's records_json() gives)."""
    system: dict[str, Any] = {
        "Provider": {"#attributes": {"Name": provider}},
        "EventID": event_id,
        "Level": 0,
        "TimeCreated": {"#attributes": {"SystemTime": when}},
        "EventRecordID": record_id,
        "Channel": channel,
        "Computer": host,
    }
    if user_sid:
        system["Security"] = {"#attributes": {"UserID": user_sid}}
    return {"Event": {"#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
                      "System": system, "EventData": dict(data or {})}}


def nxlog_doc(record_id: int, event_id: int, event_time_local: str, received_local: str, received_utc: str, *,
              host: str = "SRV02.corp.local", channel: str = "security",
              data: dict[str, Any] | None = None) -> dict[str, Any]:
    """One NXLog-style flat event (Security-Datasets): event data at the top level, local EventTime."""
    return {
        "EventID": event_id, "Hostname": host, "Channel": channel,
        "SourceName": "Microsoft-Windows-Security-Auditing", "RecordNumber": record_id,
        "EventTime": event_time_local, "EventReceivedTime": received_local, "@timestamp": received_utc,
        "Severity": "INFO", **(data or {}),
    }


def write_jsonl(path: Path, docs: Iterable[dict[str, Any] | str | bytes]) -> Path:
    """Write documents one per line (strings and bytes are written as they are)."""
    out = bytearray()
    for d in docs:
        if isinstance(d, bytes):
            out += d
        elif isinstance(d, str):
            out += d.encode()
        else:
            out += json.dumps(d).encode()
        out += b"\n"
    path.write_bytes(bytes(out))
    return path


def ingest_into(case_path: Path, paths: Iterable[str | Path], **kw: Any) -> IngestReport:
    """Ingest into the case at `case_path` (created if needed) and close it again."""
    with Case(case_path) as case:
        return ingest(case, list(paths), **kw)


def count_json_documents(raw: bytes) -> int:
    """Documents in a JSON export, counted independently of the engine.

    JSON lines: the non-blank lines. A JSON array: its length. Concatenated (pretty-printed)
    objects: decoded one after another with raw_decode.
    """
    text = raw.decode("utf-8-sig", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("["):
        return len(json.loads(stripped))
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        for line in lines:
            json.loads(line)
    except ValueError:
        pass
    else:
        return len(lines)
    decoder = json.JSONDecoder()
    n = 0
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return n
        _, pos = decoder.raw_decode(text, pos)
        n += 1
