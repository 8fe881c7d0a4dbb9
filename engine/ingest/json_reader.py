"""JSON readers: documents out as their original text, each tagged with the line it starts on.

JSON lines never go through a Python JSON parser: lines are split in C, handed over as one Arrow
array, and DuckDB validates and normalises them (a malformed line comes back marked, and is
reported with its line number). Pretty-printed documents, concatenated objects and JSON arrays
are cut into documents by a scanner that can resynchronise after a broken one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc

from .damage import Damage

CHUNK_BYTES = 16 << 20


def read_json_lines(stream: IO[bytes], damage: Damage, first_line: int = 1) -> Iterator[pa.Table]:
    """Yield tables (seq = line number, rec_id = NULL, doc) of the non-blank lines of `stream`."""
    line_no = first_line
    carry = b""
    while True:
        chunk = stream.read(CHUNK_BYTES)
        if not chunk and not carry:
            break
        data = carry + chunk
        if chunk:
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            data, carry = data[: cut + 1], data[cut + 1 :]
        else:
            carry = b""
        # CRLF files: dropping the CR here is one C-speed pass instead of a trim per line.
        lines = data.replace(b"\r\n", b"\n").split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        table = _lines_table(lines, line_no, damage)
        line_no += len(lines)
        if table.num_rows:
            yield table


def _lines_table(lines: list[bytes], first: int, damage: Damage) -> pa.Table:
    binary = pa.array(lines, pa.binary())
    try:
        text = binary.cast(pa.string())
    except pa.ArrowInvalid:
        text = pa.array([_decode(line, first + i, damage) for i, line in enumerate(lines)], pa.string())
    seq = pa.array(range(first, first + len(lines)), pa.int64())
    # Empty lines are skipped silently; a line of only blanks is not JSON and is reported as such.
    keep = pc.greater(pc.binary_length(binary), 0)
    table = pa.table({"seq": seq, "rec_id": pa.nulls(len(lines), pa.int64()), "line": seq, "doc": text})
    return table.filter(keep)


def _decode(line: bytes, line_no: int, damage: Damage) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Keep the event: a wrong byte becomes U+FFFD, and the file's report says where.
        damage.note(str(line_no), f"invalid UTF-8 at byte {exc.start}, replaced with U+FFFD")
        return line.decode("utf-8", errors="replace")


_WS = re.compile(r"\s*")


def read_json_documents(text: str, damage: Damage, batch_size: int) -> Iterator[pa.Table]:
    """Documents of a JSON array, or of concatenated (pretty-printed) JSON values."""
    line_starts = _line_starts(text)
    first_seq = 0
    decoder = json.JSONDecoder()
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    in_array = text.startswith("[", pos)
    if in_array:
        pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
    indent = _column(text, pos)
    resync = re.compile(r"\n" + re.escape(text[pos - indent : pos]) + r"\{") if indent else re.compile(r"\n\{")
    seqs: list[int] = []
    lines: list[int] = []
    docs: list[str] = []
    while pos < len(text):
        if in_array and text.startswith("]", pos):
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            line = _line_of(line_starts, exc.pos)
            damage.add(str(line), f"malformed JSON: {exc.msg} (column {exc.colno}); document skipped")
            found = resync.search(text, exc.pos)
            if not found:
                break
            pos = found.start() + 1 + indent
            continue
        line = _line_of(line_starts, pos)
        for doc_text in _documents(value, text[pos:end]):
            seqs.append(first_seq + len(seqs))
            lines.append(line)
            docs.append(doc_text)
        if len(docs) >= batch_size:
            yield _docs_table(seqs, lines, docs)
            first_seq += len(seqs)
            seqs, lines, docs = [], [], []
        pos = _WS.match(text, end).end()  # type: ignore[union-attr]
        if in_array and text.startswith(",", pos):
            pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
    if docs:
        yield _docs_table(seqs, lines, docs)


def _documents(value: object, original: str) -> list[str]:
    """An Elasticsearch search response holds its documents under hits.hits; anything else is one."""
    if isinstance(value, dict):
        hits = value.get("hits")
        if isinstance(hits, dict) and isinstance(hits.get("hits"), list):
            return [json.dumps(h, ensure_ascii=False) for h in hits["hits"]]
    if isinstance(value, list):
        return [json.dumps(v, ensure_ascii=False) for v in value]
    return [original]


def _docs_table(seqs: list[int], lines: list[int], docs: list[str]) -> pa.Table:
    return pa.table({
        "seq": pa.array(seqs, pa.int64()),
        "rec_id": pa.nulls(len(seqs), pa.int64()),
        "line": pa.array(lines, pa.int64()),
        "doc": pa.array(docs, pa.string()),
    })


def _line_starts(text: str) -> list[int]:
    starts = [0]
    find = text.find
    i = find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = find("\n", i + 1)
    return starts


def _line_of(starts: list[int], offset: int) -> int:
    from bisect import bisect_right

    return bisect_right(starts, offset)


def _column(text: str, pos: int) -> int:
    start = text.rfind("\n", 0, pos) + 1
    return pos - start if text[start:pos].strip() == "" else 0
