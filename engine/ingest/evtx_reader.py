"""EVTX readers: records out as the Rust parser's JSON text, damage counted, never aborting a file.

The default is the `evtx` package (Rust, fast). `python-evtx` (pure Python) is the fallback for
platforms without that wheel; its XML is turned into the same JSON layout so both feed one
normaliser.
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from .damage import Damage

Batch = tuple[list[int], list[int | None], list[str]]  # seq, EventRecordID, document

# A file that yields nothing but errors this many times in a row is not going to recover.
MAX_CONSECUTIVE_ERRORS = 10_000

HEADER_BYTES = 4096
CHUNK_BYTES = 65536
CHUNK_MAGIC = b"ElfChnk\x00"
RECORD_MAGIC = b"\x2a\x2a\x00\x00"
# Where a chunk's records start: after its 128-byte header, 64 string and 32 template offsets.
CHUNK_RECORDS_START = 0x200
# The smallest record: its 24-byte header and the size copy at its end (the Rust parser refuses less).
MIN_RECORD_BYTES = 28


def read_evtx_rust(path: Path, damage: Damage, batch_size: int) -> Iterator[Batch]:
    from evtx import PyEvtxParser

    try:
        # One parser thread: measured faster than the default pool here, and it leaves the other
        # core to DuckDB, which normalises the previous batch meanwhile.
        parser = PyEvtxParser(str(path), number_of_threads=1)
    except (OSError, RuntimeError, ValueError) as exc:
        damage.add(None, f"cannot read EVTX header: {exc}")
        return
    records = parser.records_json()
    seqs: list[int] = []
    ids: list[int | None] = []
    docs: list[str] = []
    seq = 0
    consecutive = 0
    while True:
        try:
            for rec in records:
                consecutive = 0
                seqs.append(seq)
                seq += 1
                ids.append(rec["event_record_id"])  # type: ignore[index]
                docs.append(rec["data"])  # type: ignore[index]
                if len(docs) >= batch_size:
                    yield seqs, ids, docs
                    seqs, ids, docs = [], [], []
            break
        except (RuntimeError, OSError, ValueError) as exc:
            # The Rust parser raises once per damaged record or chunk, then carries on after it.
            consecutive += 1
            damage.add(_where(str(exc)), f"damaged EVTX data skipped: {exc}")
            if consecutive >= MAX_CONSECUTIVE_ERRORS:
                damage.add(None, "giving up on the rest of the file after repeated errors")
                break
    if docs:
        yield seqs, ids, docs


def _where(message: str) -> str | None:
    for word in ("chunk", "record"):
        marker = f"{word} number "
        if marker in message:
            tail = message.split(marker, 1)[1]
            digits = "".join(ch for ch in tail[:20] if ch.isdigit() or ch == " ").split()
            if digits:
                return f"{word} {digits[0]}"
    return None


def _exact_filetime(qword: int) -> datetime:
    """FILETIME → UTC in integer arithmetic, truncating the 100 ns ticks as the Rust parser does.
    python-evtx goes through a float and lands a microsecond off for some records."""
    try:
        return datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=qword // 10)
    except OverflowError:
        return datetime.min


def read_evtx_python(path: Path, damage: Damage, batch_size: int) -> Iterator[Batch]:
    import Evtx.BinaryParser
    import Evtx.Evtx as pyevtx

    Evtx.BinaryParser.parse_filetime = _exact_filetime

    seqs: list[int] = []
    ids: list[int | None] = []
    docs: list[str] = []
    seq = 0
    try:
        log = pyevtx.Evtx(str(path))
        log.__enter__()
        # Every chunk the file holds, as the Rust parser reads them: the header's chunk count can be
        # stale (a log that wrapped, a copy taken while it was written) and would hide records.
        header = log.get_file_header()
        declared = header.chunk_count()
        chunks = header.chunks(include_inactive=True)
    except Exception as exc:  # python-evtx raises assorted types on bad headers
        damage.add(None, f"cannot read EVTX header: {exc}")
        return
    try:
        for chunk_no, chunk in enumerate(chunks):
            try:
                if not chunk.check_magic():
                    if chunk_no < declared:  # beyond them, a chunk never written is only zeros
                        damage.add(f"chunk {chunk_no}", "damaged EVTX chunk skipped: bad chunk header magic")
                    continue
                records = list(chunk.records())
            except Exception as exc:
                damage.add(f"chunk {chunk_no}", f"damaged EVTX chunk skipped: {exc}")
                continue
            for record in records:
                try:
                    doc = xml_to_evtx_json(record.xml())
                    rec_id = record.record_num()
                except Exception as exc:
                    damage.add(f"chunk {chunk_no}", f"damaged EVTX record skipped: {exc}")
                    continue
                seqs.append(seq)
                seq += 1
                ids.append(rec_id)
                docs.append(doc)
                if len(docs) >= batch_size:
                    yield seqs, ids, docs
                    seqs, ids, docs = [], [], []
    finally:
        log.__exit__(None, None, None)
    if docs:
        yield seqs, ids, docs


@dataclass(frozen=True)
class CutChunk:
    """The last chunk of a file that ends inside it (a copy cut short): its bytes up to the cut
    and the record ids its header says it holds (None when the header is cut or implausible)."""

    number: int
    data: bytes
    first_id: int | None
    last_id: int | None

    @property
    def ids(self) -> range:
        if self.first_id is None or self.last_id is None:
            return range(0)
        return range(self.first_id, self.last_id + 1)


def cut_chunk(path: Path) -> CutChunk | None:
    """The chunk the file ends inside, or None when it ends on a chunk boundary."""
    size = path.stat().st_size
    tail = (size - HEADER_BYTES) % CHUNK_BYTES if size > HEADER_BYTES else 0
    if not tail:
        return None
    with open(path, "rb") as f:
        f.seek(size - tail)
        data = f.read(tail)
    first = last = None
    if data.startswith(CHUNK_MAGIC) and len(data) >= 40:
        # The header's first and last event record identifiers (offsets 24 and 32); 8 and 16 are
        # the record numbers, equal to them in every log seen.
        first, last = struct.unpack_from("<QQ", data, 24)
        if not 0 < first <= last or last - first >= CHUNK_BYTES // MIN_RECORD_BYTES:
            first = last = None
    return CutChunk((size - tail - HEADER_BYTES) // CHUNK_BYTES, data, first, last)


def read_cut_chunk(cut: CutChunk, damage: Damage, have: set[int], first_seq: int) -> Iterator[Batch]:
    """The whole records of a chunk cut short, which the Rust parser refuses as a chunk (python-evtx
    skips it too): each is read on its own with python-evtx, the chunk's string and template
    tables preceding it. Records in `have` (already read) are left out. What cannot be recovered is
    counted from the record ids in the chunk header, and said."""
    import Evtx.BinaryParser
    import Evtx.Evtx as pyevtx

    Evtx.BinaryParser.parse_filetime = _exact_filetime
    where = f"chunk {cut.number}"
    cut_at = f"the file ends {len(cut.data):,} bytes into chunk {cut.number} (it was cut short)"
    if not cut.data.startswith(CHUNK_MAGIC):
        if cut.data.strip(b"\x00"):
            damage.note(where, f"{cut_at} and the chunk has no chunk header: any records in it are lost",
                        always=True)
        return
    seqs: list[int] = []
    ids: list[int | None] = []
    docs: list[str] = []
    failed: set[int] = set()
    recovered = 0
    if len(cut.data) >= CHUNK_RECORDS_START:
        # Zeros after the cut: no record reaches into them (each is checked whole below), and
        # python-evtx reads the chunk from a full-size buffer.
        buf = cut.data + bytes(CHUNK_BYTES - len(cut.data))
        chunk = pyevtx.ChunkHeader(buf, 0)
        free = struct.unpack_from("<I", buf, 48)[0]  # where the chunk's free space starts
        end = min(len(cut.data), free) if CHUNK_RECORDS_START < free <= CHUNK_BYTES else len(cut.data)
        offset = CHUNK_RECORDS_START
        while offset + 24 <= end and buf[offset:offset + 4] == RECORD_MAGIC:
            size, rec_id = struct.unpack_from("<IQ", buf, offset + 4)
            if size < MIN_RECORD_BYTES or offset + size > end:
                break  # the record the cut goes through
            if struct.unpack_from("<I", buf, offset + size - 4)[0] != size:
                break  # not a record whose length is what it says: nothing after it can be trusted
            if rec_id not in have:
                try:
                    doc = xml_to_evtx_json(pyevtx.Record(buf, offset, chunk).xml())
                except Exception as exc:  # python-evtx raises assorted types on damaged data
                    failed.add(rec_id)
                    damage.add(f"record {rec_id}", f"damaged EVTX record of the cut chunk {cut.number} "
                                                   f"skipped: {exc}")
                else:
                    seqs.append(first_seq + len(seqs))
                    ids.append(rec_id)
                    docs.append(doc)
                    recovered += 1
            have.add(rec_id)
            offset += size
    if docs:
        yield seqs, ids, docs
    if cut.first_id is None:
        damage.note(where, f"{cut_at}; {recovered:,} whole records before the cut were recovered, and its header "
                           "does not say how many it held: any records after them are lost", always=True)
        return
    lost = sum(1 for i in cut.ids if i not in have and i not in failed)  # failed ones are counted already
    recovered_text = f"{recovered:,} whole records before the cut were recovered"
    if lost:
        damage.add(where, f"{lost:,} record{'s' if lost > 1 else ''} of the cut chunk lost: {cut_at}, and its "
                          f"header lists records "
                          f"{cut.first_id}–{cut.last_id}; {recovered_text}", count=lost, always=True)
    else:
        damage.note(where, f"{cut_at}; {recovered_text} and none of its records is lost", always=True)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _element(el: ET.Element) -> Any:
    children = list(el)
    attrs = dict(el.attrib)
    if not children:
        text = el.text
        if attrs:
            node: dict[str, Any] = {"#attributes": attrs}
            if text is not None and text.strip():
                node["#text"] = text
            return node
        return text
    node = {"#attributes": attrs} if attrs else {}
    for child in children:
        node[_local(child.tag)] = _element(child)
    return node


def _event_data(el: ET.Element) -> Any:
    named: dict[str, Any] = {}
    positional: list[Any] = []
    for child in el:
        if _local(child.tag) == "Data" and "Name" in child.attrib:
            # An empty <Data Name="X"/> is the empty string, as the Rust parser renders it.
            named[child.attrib["Name"]] = child.text if child.text is not None else ""
        elif _local(child.tag) == "Data":
            positional.append(child.text)
        else:
            named[_local(child.tag)] = _element(child)
    if positional and not named:
        return {"Data": {"#text": positional if len(positional) > 1 else positional[0]}}
    return named or None


def xml_to_evtx_json(xml: str) -> str:
    """Render one record's XML the way the Rust parser's records_json() lays out its JSON."""
    # An XML parser turns CR LF into LF; the Rust parser keeps the text as logged (command lines and
    # scripts carry CR LF), so carriage returns go in as character references, which survive.
    root = ET.fromstring(xml.replace("\r", "&#13;"))
    event: dict[str, Any] = {}
    if root.attrib:
        event["#attributes"] = dict(root.attrib)
    for child in root:
        name = _local(child.tag)
        event[name] = _event_data(child) if name == "EventData" else _element(child)
    return orjson.dumps({"Event": event}).decode()
