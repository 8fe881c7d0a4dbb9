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
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .damage import Damage

CHUNK_BYTES = 16 << 20
# How far past junk at its start (a text header, stray bytes) a file is searched for its first
# document: a file with none there is not an event log, rather than thousands of malformed lines.
LOOKAHEAD_BYTES = 1 << 16
LOOKAHEAD_LINES = 100


@dataclass
class Start:
    """Where the documents of a JSON file begin, within its first LOOKAHEAD_BYTES."""

    offset: int  # byte offset of the line the first document starts on
    line: int  # that line's number
    lines: bool  # one document per line (else pretty-printed documents or arrays)
    junk: list[tuple[int, bytes]] = field(default_factory=list)  # non-blank lines before it


def find_start(head: bytes, complete: bool) -> Start | None:
    """The first document of a file whose first LOOKAHEAD_BYTES (BOM removed) are `head`
    (`complete`: the whole file). Junk lines before it are returned to be reported; None when no
    line of the look-ahead starts a document."""
    stripped = head.lstrip(b" \t\r\n")
    begin = head.rfind(b"\n", 0, len(head) - len(stripped)) + 1
    first_line = head.count(b"\n", 0, begin) + 1
    if stripped.startswith(b"{"):
        # As always: JSON lines when the first line parses, else documents (a broken first one is
        # skipped by the document reader, which finds the next at the same indent).
        return Start(begin, first_line, _is_object(stripped.split(b"\n", 1)[0].strip()))
    if stripped.startswith(b"[") and _starts_document(head, begin, complete):
        return Start(begin, first_line, False)
    junk: list[tuple[int, bytes]] = []
    pos, line_no = 0, 1
    while pos < len(head) and line_no <= LOOKAHEAD_LINES:
        newline = head.find(b"\n", pos)
        end = len(head) if newline < 0 else newline
        body = head[pos:end].strip()
        partial = newline < 0 and not complete  # the look-ahead ends inside this line
        if body.startswith(b"{") and not partial and _is_object(body):
            return Start(pos, line_no, True, junk)
        if body[:1] in (b"{", b"[") and _starts_document(head, pos, complete):
            return Start(pos, line_no, body.startswith(b"{") and partial, junk)
        if body:
            junk.append((line_no, head[pos:end]))
        pos, line_no = end + 1, line_no + 1
    return None


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _starts_document(head: bytes, pos: int, complete: bool) -> bool:
    """Whether an array of objects, or an object, starts at `pos`: the array's first non-blank
    character opens an object or closes it (the array reader skips a broken element alone), and
    the object parses, or is cut only by the end of the look-ahead."""
    text = head[pos:].decode("utf-8", errors="replace")
    at = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text.startswith("[", at):
        at = _WS.match(text, at + 1).end()  # type: ignore[union-attr]
        return text[at:at + 1] in ("{", "]")
    if not text.startswith("{", at):
        return False
    try:
        json.JSONDecoder().raw_decode(text, at)
    except json.JSONDecodeError as exc:
        cut = exc.pos >= len(text.rstrip()) - 8 or exc.msg.startswith("Unterminated string")
        return cut and not complete
    except RecursionError:
        return False
    return True



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
        table, lines = _lines_table(data, line_no, damage)
        line_no += lines
        if table.num_rows:
            yield table


def _lines_table(data: bytes, first: int, damage: Damage) -> tuple[pa.Table, int]:
    """The non-empty lines of `data` (whole lines, each ending in a newline but perhaps the last)
    and how many lines it held. Line boundaries are found with numpy and the strings are views of
    `data`: no Python object per line."""
    buf = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buf == 10)
    if not len(newlines) or newlines[-1] != len(data) - 1:
        newlines = np.append(newlines, len(data))
    n = len(newlines)
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    offsets[1:] = np.minimum(newlines + 1, len(data))
    lines = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        lines = pa.array([_decode(data[offsets[i]:offsets[i + 1]], first + i, damage) for i in range(n)],
                         pa.large_string())
    # The newline (and a CRLF file's CR) is not part of the document.
    text = pc.utf8_rtrim(lines, characters="\r\n").cast(pa.string())
    seq = pa.array(np.arange(first, first + n, dtype=np.int64))
    # Empty lines are skipped silently; a line of only blanks is not JSON and is reported as such.
    table = pa.table({"seq": seq, "rec_id": pa.nulls(n, pa.int64()), "line": seq, "doc": text})
    return table.filter(pc.greater(pc.utf8_length(text), 0)), n


def _decode(line: bytes, line_no: int, damage: Damage) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Keep the event: a wrong byte becomes U+FFFD, and the file's report says where.
        damage.note(str(line_no), f"invalid UTF-8 at byte {exc.start}, replaced with U+FFFD")
        return line.decode("utf-8", errors="replace")


_WS = re.compile(r"\s*")


def read_json_documents(text: str, damage: Damage, batch_size: int, first_line: int = 1) -> Iterator[pa.Table]:
    """Documents of JSON arrays, or of concatenated (pretty-printed) JSON values, or both: several
    arrays appended to one file (`>>`) are read one after the other. `text` starts at the file's
    line `first_line`."""
    line_starts = [0] * (first_line - 1) + _line_starts(text)
    first_seq = 0
    decoder = json.JSONDecoder()
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    in_array = False
    resync: re.Pattern[str] | None = None
    indent = 0
    seqs: list[int] = []
    lines: list[int] = []
    docs: list[str] = []
    malformed = 0
    while pos < len(text):
        if not in_array and text.startswith("[", pos):
            in_array = True
            pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
            continue
        if in_array and text.startswith("]", pos):
            in_array = False
            pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
            continue
        if resync is None:
            # Documents start where the first one does: at the same indent after a line break.
            indent = _column(text, pos)
            resync = re.compile(r"\n" + re.escape(text[pos - indent : pos]) + r"\{") if indent else re.compile(r"\n\{")
        try:
            value, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            at = exc.pos if isinstance(exc, json.JSONDecodeError) else pos
            line = _line_of(line_starts, at)
            reason = (f"{exc.msg} (column {exc.colno})" if isinstance(exc, json.JSONDecodeError)
                      else "nested too deeply")
            damage.add(str(line), f"malformed JSON: {reason}; document skipped")
            malformed += 1
            if malformed >= MAX_MALFORMED_DOCUMENTS:
                # Each error costs a pass over the text before it: a file of nothing but broken
                # documents would take hours. What is left is named, not guessed at.
                damage.note(str(line), f"more than {MAX_MALFORMED_DOCUMENTS:,} malformed documents: the last "
                                       f"{len(text) - at:,} characters of the file are not read", always=True)
                break
            if in_array:
                # The element ends where its brackets close: a one-line array (ConvertTo-Json
                # -Compress, jq -c -s) has no line breaks to find the next one by, and objects
                # nested in the broken one must not be taken for documents.
                after = _element_end(text, pos)
                if after is None:
                    break
                pos = after
                if text.startswith(",", pos):
                    pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
                continue
            found = resync.search(text, at)
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


MAX_MALFORMED_DOCUMENTS = 1000
_STRUCTURE = re.compile(r'["\[\]{},]')
_STRING_REST = re.compile(r'(?:[^"\\]|\\.)*"', re.S)


def _element_end(text: str, start: int) -> int | None:
    """Where the array element that starts at `start` ends: the `,` or `]` after it at depth 0,
    skipping strings. None when the text ends first."""
    depth = 0
    pos = start
    while True:
        m = _STRUCTURE.search(text, pos)
        if m is None:
            return None
        ch, pos = m.group(), m.end()
        if ch == '"':
            closed = _STRING_REST.match(text, pos)
            if closed is None:
                return None
            pos = closed.end()
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            if depth == 0:
                return m.start()  # the array's own end
            depth -= 1
        elif depth == 0:
            return m.start()


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
