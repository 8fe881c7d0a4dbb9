"""EVTX readers: records out as the Rust parser's JSON text, damage counted in records, never aborting a file.

The default is the `evtx` package (Rust, fast). `python-evtx` (pure Python) is the fallback for
platforms without that wheel; its XML is turned into the same JSON layout so both feed one
normaliser.

Whatever the parser skips is counted afterwards in records, chunk by chunk, from the record ids each
chunk header lists (read_damaged_chunks, read_cut_chunk), and the whole records it skipped are read
one by one with python-evtx; the parser's own errors are kept as notes, not counts.
"""

from __future__ import annotations

import bisect
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from .damage import MAX_KEPT, Damage

Batch = tuple[list[int], list[int | None], list[str]]  # seq, EventRecordID, document

# A file that yields nothing but errors this many times in a row is not going to recover.
MAX_CONSECUTIVE_ERRORS = 10_000

HEADER_BYTES = 4096
CHUNK_BYTES = 65536
FILE_MAGIC = b"ElfFile\x00"
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
            # The Rust parser raises once per damaged record or chunk, then carries on after it. What
            # it skipped is counted afterwards, in records, chunk by chunk (read_damaged_chunks).
            consecutive += 1
            damage.note(_where(str(exc)), f"damaged EVTX data skipped: {exc}")
            if consecutive >= MAX_CONSECUTIVE_ERRORS:
                damage.note(None, "the parser gave up on the rest of the file after repeated errors", always=True)
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
                        damage.note(f"chunk {chunk_no}", "damaged EVTX chunk skipped: bad chunk header magic")
                    continue
                records = list(chunk.records())
            except Exception as exc:
                damage.note(f"chunk {chunk_no}", f"damaged EVTX chunk skipped: {exc}")
                continue
            for record in records:
                try:
                    doc = xml_to_evtx_json(record.xml())
                    rec_id = record.record_num()
                except Exception as exc:
                    # Counted afterwards with the rest of its chunk (read_damaged_chunks).
                    damage.note(f"chunk {chunk_no}", f"damaged EVTX record skipped: {exc}")
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


class RecordIds:
    """The EventRecordIDs a file gave, kept as sorted runs of consecutive ids: a log's ids come
    almost in order, so a few runs stand for millions of records. Ids added after the first question
    (records recovered chunk by chunk) are kept apart in a set."""

    def __init__(self) -> None:
        self._runs: list[tuple[int, int]] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._frozen = False
        self._later: set[int] = set()

    def update(self, ids: Iterable[int | None]) -> None:
        if self._frozen:
            self._later.update(i for i in ids if i is not None and i not in self)
            return
        runs = self._runs
        for i in ids:
            if i is None:
                continue
            if runs and runs[-1][1] + 1 == i:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))

    def add(self, rec_id: int) -> None:
        self.update((rec_id,))

    def _freeze(self) -> None:
        if self._frozen:
            return
        self._frozen = True
        for first, last in sorted(self._runs):
            if self._ends and first <= self._ends[-1] + 1:
                self._ends[-1] = max(self._ends[-1], last)
            else:
                self._starts.append(first)
                self._ends.append(last)
        self._runs = []

    def __contains__(self, rec_id: int) -> bool:
        self._freeze()
        k = bisect.bisect_right(self._starts, rec_id) - 1
        return (k >= 0 and rec_id <= self._ends[k]) or rec_id in self._later

    def count(self, ids: range) -> int:
        """How many of `ids` (consecutive) are held."""
        self._freeze()
        lo, hi = ids.start, ids.stop - 1
        n = 0
        k = bisect.bisect_left(self._ends, lo)
        while k < len(self._starts) and self._starts[k] <= hi:
            n += min(self._ends[k], hi) - max(self._starts[k], lo) + 1
            k += 1
        return n + sum(1 for i in self._later if lo <= i <= hi)


def _header_ids(head: bytes) -> range | None:
    """The EventRecordIDs a chunk header says its chunk holds (offsets 24 and 32; 8 and 16 are the
    record numbers, equal to them in every log seen), or None when the header is missing, cut or
    not plausible (a chunk of 64 KiB holds at most 64 KiB / 28 bytes records)."""
    if not head.startswith(CHUNK_MAGIC) or len(head) < 40:
        return None
    first, last = struct.unpack_from("<QQ", head, 24)
    if not 0 < first <= last or last - first >= CHUNK_BYTES // MIN_RECORD_BYTES:
        return None
    return range(first, last + 1)


def _id_range(ids: range) -> str:
    return f"{ids.start}–{ids.stop - 1}"


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
    ids = _header_ids(data)
    first, last = (ids.start, ids.stop - 1) if ids is not None else (None, None)
    return CutChunk((size - tail - HEADER_BYTES) // CHUNK_BYTES, data, first, last)


def _whole_records(buf: bytes, end: int, *, resync: bool) -> Iterator[tuple[int, int]]:
    """(offset, EventRecordID) of each whole record of a chunk from its first record up to `end`:
    a record signature, a size that fits and the copy of that size at the record's end. With
    `resync`, past bytes that are no such record (zeros, a damaged record, a stretch of another copy
    of the chunk) the walk goes on at the next record signature, records being 8-byte aligned;
    without, it stops there."""
    offset = CHUNK_RECORDS_START
    while offset + MIN_RECORD_BYTES <= end:
        if buf[offset:offset + 4] == RECORD_MAGIC:
            size, rec_id = struct.unpack_from("<IQ", buf, offset + 4)
            if (size >= MIN_RECORD_BYTES and offset + size <= end
                    and struct.unpack_from("<I", buf, offset + size - 4)[0] == size):
                yield offset, rec_id
                offset += size
                continue
        if not resync:
            return
        offset = buf.find(RECORD_MAGIC, offset + 1, end)
        while offset > 0 and offset % 8:
            offset = buf.find(RECORD_MAGIC, offset + 1, end)
        if offset < 0:
            return


@dataclass
class _Recovery:
    """What python-evtx made of one chunk's records, read one by one."""

    seqs: list[int]
    ids: list[int | None]
    docs: list[str]
    failed: int = 0


def _recover(number: int, data: bytes, wanted: range | None, have: RecordIds, damage: Damage,
             first_seq: int) -> _Recovery:
    """Read with python-evtx, each on its own (the chunk's string and template tables preceding it),
    the whole records of chunk `number` that `have` lacks: with a plausible header, those in its id
    range, past any damage; with a damaged one, those from its first record to the first damage.
    What is read is added to `have`, so no record is given twice."""
    import Evtx.BinaryParser
    import Evtx.Evtx as pyevtx

    Evtx.BinaryParser.parse_filetime = _exact_filetime
    out = _Recovery([], [], [])
    if len(data) < CHUNK_RECORDS_START:
        return out
    # A short (cut) chunk is read from a full-size buffer: zeros after the cut, which no whole
    # record reaches into.
    buf = data + bytes(CHUNK_BYTES - len(data))
    end = len(data)
    if wanted is not None:
        free = struct.unpack_from("<I", buf, 48)[0]  # where the chunk's free space starts
        if CHUNK_RECORDS_START < free <= CHUNK_BYTES:
            end = min(end, free)
    chunk = pyevtx.ChunkHeader(buf, 0)
    for offset, rec_id in _whole_records(buf, end, resync=wanted is not None):
        if rec_id in have or (wanted is not None and rec_id not in wanted):
            continue
        try:
            doc = xml_to_evtx_json(pyevtx.Record(buf, offset, chunk).xml())
        except Exception as exc:  # python-evtx raises assorted types on damaged data
            out.failed += 1
            damage.note(f"record {rec_id}", f"damaged EVTX record of chunk {number} cannot be read: {exc}")
            continue
        out.seqs.append(first_seq + len(out.seqs))
        out.ids.append(rec_id)
        out.docs.append(doc)
        have.add(rec_id)
    return out


def read_damaged_chunks(path: Path, damage: Damage, have: RecordIds, first_seq: int) -> Iterator[Batch]:
    """After the parser has gone through the file, every whole chunk is checked against its header:
    the ids it lists that the parser did not give are read record by record with python-evtx, and
    those still missing are counted as skipped, one per record, in one line naming the chunk and
    its id range. A chunk whose header is damaged (no signature over bytes that are not all zeros,
    or ids that cannot be) cannot say how many records it held: it counts as 1 skipped, a lower
    bound that keeps a damaged file from ever reading as complete, and its records from the first
    one to the first damage are recovered. A chunk of zeros was never written and is passed over.
    The chunk the file ends inside is left to read_cut_chunk."""
    size = path.stat().st_size
    listed = 0
    unlisted_chunks = unlisted_lost = 0

    def say(where: str, message: str, count: int) -> None:
        nonlocal listed, unlisted_chunks, unlisted_lost
        listed += 1
        if listed <= MAX_KEPT:
            damage.add(where, message, count, always=True)
        else:
            damage.add(where, message, count)
            unlisted_chunks += 1
            unlisted_lost += count

    with open(path, "rb") as f:
        if f.read(len(FILE_MAGIC)) != FILE_MAGIC:
            return  # not read as EVTX at all: said when its header was refused
        for number in range((size - HEADER_BYTES) // CHUNK_BYTES if size > HEADER_BYTES else 0):
            f.seek(HEADER_BYTES + number * CHUNK_BYTES)
            head = f.read(CHUNK_RECORDS_START)
            ids = _header_ids(head)
            if ids is not None and have.count(ids) == len(ids):
                continue
            data = head + f.read(CHUNK_BYTES - len(head))
            if ids is None and not data.startswith(CHUNK_MAGIC) and not data.strip(b"\x00"):
                continue
            given = have.count(ids) if ids is not None else 0
            got = _recover(number, data, ids, have, damage, first_seq)
            first_seq += len(got.docs)
            if got.docs:
                yield got.seqs, got.ids, got.docs
            where = f"chunk {number}"
            recovered = (f"{len(got.docs):,} whole record{'s' if len(got.docs) != 1 else ''} recovered with "
                         "python-evtx") + (f", {got.failed:,} unreadable" if got.failed else "")
            if ids is None:
                listed_ids = ""
                if data.startswith(CHUNK_MAGIC):
                    first, last = struct.unpack_from("<QQ", data, 24)
                    listed_ids = f" (it lists records {first}–{last})"
                say(where, f"damaged header{listed_ids}; how many records it held cannot be told (counted as 1 "
                           f"skipped); {recovered}", 1)
                continue
            lost = len(ids) - have.count(ids)
            if lost:
                say(where, f"{lost:,} record{'s' if lost > 1 else ''} lost: the chunk header lists records "
                           f"{_id_range(ids)}, the parser gave {given:,} of them; {recovered}", lost)
            else:
                damage.note(where, f"the chunk header lists records {_id_range(ids)}, the parser gave {given:,} of them; "
                                   f"{recovered}, and none is lost")
    if unlisted_chunks:
        damage.note(None, f"{unlisted_chunks:,} more damaged chunks not listed here, "
                          f"{unlisted_lost:,} records skipped in them", always=True)


def read_cut_chunk(cut: CutChunk, damage: Damage, have: RecordIds, first_seq: int) -> Iterator[Batch]:
    """The whole records of a chunk cut short, which the Rust parser refuses as a chunk (python-evtx
    skips it too), read as read_damaged_chunks reads a damaged chunk. Records in `have` (already
    read) are left out. What cannot be recovered is counted from the record ids in the chunk header,
    and said; a cut chunk whose header cannot tell counts as 1, as a damaged header does."""
    where = f"chunk {cut.number}"
    cut_at = f"the file ends {len(cut.data):,} bytes into chunk {cut.number} (it was cut short)"
    if not cut.data.startswith(CHUNK_MAGIC):
        if cut.data.strip(b"\x00"):
            damage.add(where, f"{cut_at} and the chunk has no chunk header: how many records it held cannot be "
                              "told (counted as 1 skipped)", always=True)
        return
    ids = cut.ids if cut.first_id is not None else None
    got = _recover(cut.number, cut.data, ids, have, damage, first_seq)
    if got.docs:
        yield got.seqs, got.ids, got.docs
    recovered_text = f"{len(got.docs):,} whole records before the cut were recovered"
    if ids is None:
        damage.add(where, f"{cut_at}; {recovered_text}, and its header does not say how many it held: any "
                          "records after them are lost (counted as 1 skipped)", always=True)
        return
    lost = len(ids) - have.count(ids)
    if lost:
        damage.add(where, f"{lost:,} record{'s' if lost > 1 else ''} of the cut chunk lost: {cut_at}, and its "
                          f"header lists records {_id_range(ids)}; {recovered_text}", count=lost, always=True)
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
