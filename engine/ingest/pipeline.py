"""Ingest: evidence files → normalised rows in the case.

Two stages run side by side: this thread reads files (the EVTX parser, line splitting) and a
writer thread owns the DuckDB connection and normalises batches in SQL (DuckDB releases the GIL,
so on two cores the stages overlap). Small files share a batch and a transaction; a file is always
committed whole together with its `sources` row, so an interrupted ingest leaves a consistent
case, and running it again completes it (files already there are known by their content hash).
After the files, new events get their positions in the timeline order.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from ..case import Case
from ..schema import EVENT_COLUMN_NAMES
from .damage import Damage, Problem
from .evtx_reader import cut_chunk, read_cut_chunk, read_evtx_python, read_evtx_rust
from .json_reader import LOOKAHEAD_BYTES, find_start, read_json_documents, read_json_lines
from .normalise import SHAPE_SELECTS, canonical_ip, classify_sql, evtx_sql, normalise_sql, unwrap_hits_sql
from .sources import (
    DIRECTORY_UNREADABLE,
    Evidence,
    Prepended,
    describe_head,
    discover,
    evtx_on_disk,
    kind_of,
    open_evidence,
    sha256_of,
    sniff,
)

Parser = Literal["evtx", "python-evtx"]
BATCH_ROWS = 50_000
# Normalise once this much document text is waiting: bounds memory whatever the record size.
BATCH_BYTES = 48 << 20
# A transaction holding several small files is committed once it has this many rows, bytes or
# seconds. Larger groups measured ~10% faster on 1 GB of JSON (whole row groups skip the WAL) but
# pushed the ingest's peak memory past 1 GB, growing with the input.
GROUP_ROWS = 200_000
GROUP_BYTES = 96 << 20
GROUP_SECONDS = 5.0
# Read-ahead: batches waiting for the writer.
QUEUE_BYTES = 64 << 20
SHAPE_NAMES = {
    "evtx": "EVTX",
    "evtx-json": "EVTX JSON (evtx_dump)",
    "ecs": "winlogbeat 7/8 (ECS)",
    "wlb6": "winlogbeat 6",
    "nxlog": "NXLog flat JSON",
    "azure": "Azure Monitor SecurityEvent",
}


@dataclass
class FileResult:
    path: str
    status: Literal["ingested", "already in case", "skipped"]
    shape: str | None = None
    records: int = 0
    duplicates: int = 0
    skipped: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    message: str | None = None


@dataclass
class Progress:
    file_index: int
    files_total: int
    path: str
    bytes_done: int
    bytes_total: int
    records: int
    elapsed: float


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "path: reason", for directories not listed
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def skipped(self) -> int:
        return sum(f.skipped for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)


ProgressCallback = Callable[[Progress], None]


@dataclass
class _File:
    """One file on its way through the writer."""

    source_id: int
    evidence: Evidence
    sha256: str
    kind: str  # 'evtx' or 'json'
    parser: str
    damage: Damage
    started: float
    head: bytes = b""
    seen: int = 0
    stored: int = 0
    duplicates: int = 0
    shapes: dict[str, int] = field(default_factory=dict)
    # Per host (lower case): the UTC offset, in minutes, of times written in local time (_fix_zones),
    # and how many such events found no offset to learn.
    zones: dict[str, int] = field(default_factory=dict)
    unzoned: dict[str, int] = field(default_factory=dict)
    result: FileResult | None = None

    @property
    def shape(self) -> str | None:
        if self.kind == "evtx":
            return "evtx"
        if not self.shapes:
            return None
        best = max(self.shapes, key=lambda s: self.shapes[s])
        return "evtx-json" if best == "evtx" else best


def ingest(
    case: Case,
    paths: Iterable[str | Path],
    *,
    parser: Parser = "evtx",
    dedupe: bool = True,
    on_progress: ProgressCallback | None = None,
    batch_rows: int = BATCH_ROWS,
) -> IngestReport:
    """Add the events of `paths` (files or directories, any mix of shapes) to `case`."""
    started = time.perf_counter()
    report = IngestReport()
    # The case's own files are never evidence (`ashiato ingest case.duckdb .`).
    case_files = [case.path, Path(f"{case.path}.wal")]
    evidence, report.missing = discover(paths, report.unreadable, exclude=case_files)
    entries: list[FileResult | _File] = []
    total_bytes = sum(e.bytes for e in evidence)
    writer = _Writer(case, dedupe=dedupe, batch_rows=batch_rows)
    writer.start()
    done_bytes = 0
    hashes_this_run: dict[str, str] = {}
    next_id = _count(case.con, "SELECT coalesce(max(source_id), 0) + 1 FROM sources")
    # The writer owns the connection; this thread asks about committed files on its own cursor.
    lookup = case.cursor()
    try:
        def tick(index: int, ev: Evidence) -> None:
            if on_progress:
                on_progress(Progress(index, len(evidence), str(ev.path), done_bytes, total_bytes,
                                     writer.records_read, time.perf_counter() - started))

        for index, ev in enumerate(evidence):
            tick(index, ev)
            try:
                digest = sha256_of(ev.path)
            except OSError as exc:
                entries.append(FileResult(str(ev.path), "skipped",
                                          message=f"{ev.path}: cannot read ({exc.strerror or exc})"))
                done_bytes += ev.bytes
                continue
            already = hashes_this_run.get(digest) if dedupe else None
            if dedupe and already is None:
                rows = lookup.execute(
                    "SELECT path FROM sources WHERE sha256 = ? AND complete LIMIT 1", [digest]).fetchall()
                already = rows[0][0] if rows else None
            if already is not None:
                entries.append(FileResult(str(ev.path), "already in case",
                                          message=f"same content as {already}"))
                done_bytes += ev.bytes
                continue
            hashes_this_run[digest] = str(ev.path)
            head = sniff(ev.path)
            kind = kind_of(head)
            f = _File(next_id, ev, digest, kind, parser if kind == "evtx" else "json", Damage(str(ev.path)),
                      time.perf_counter(), head=head)
            next_id += 1
            if kind == "unknown":
                f.damage.note(None, f"not a recognised event log ({describe_head(head)})")
            else:
                for table in _read(f, batch_rows):
                    f.seen += table.num_rows
                    writer.put(("batch", f, table))
                    writer.records_read += table.num_rows
                    writer.check()
                    tick(index, ev)
            writer.put(("end", f, None))
            entries.append(f)
            done_bytes += ev.bytes
            writer.check()
        writer.put(("finish", None, None))
        writer.join_checked()
    except BaseException:
        writer.abort()
        raise
    report.files = [e.result if isinstance(e, _File) and e.result else e  # type: ignore[misc]
                    for e in entries]
    _keep_unread(case, paths, report)
    if case.unordered_events():
        case.reorder()
    _name_members(case)
    _refresh_fields(case)
    case.refresh_derived()
    report.seconds = time.perf_counter() - started
    return report


def _keep_unread(case: Case, paths: Iterable[str | os.PathLike[str]], report: IngestReport) -> None:
    """Directories that could not be listed and files that could not be read, kept in
    `ingest_errors` (no source: nothing of them is in the case) so `ashiato stats` still says so
    later; what an earlier ingest of the same paths could not read is replaced by what this one found."""
    rows = [[None, line.rsplit(DIRECTORY_UNREADABLE, 1)[0], "directory", line] for line in report.unreadable]
    rows += [[None, os.path.abspath(r.path), "file", r.message] for r in report.files
             if isinstance(r, FileResult) and r.status == "skipped" and r.message and ": cannot read (" in r.message]
    roots = [os.path.abspath(p) for p in paths]
    with case.transaction() as con:
        for root in roots:
            con.execute("DELETE FROM ingest_errors WHERE source_id IS NULL AND (path = ? OR starts_with(path, ?))",
                        [root, root.rstrip(os.sep) + os.sep])
        if rows:
            con.executemany("INSERT INTO ingest_errors VALUES (?, ?, ?, ?)", rows)


def _read(f: _File, batch_rows: int) -> Iterator[pa.Table]:
    path = f.evidence.path
    if f.kind == "evtx":
        def table(seqs: list[int], ids: list[int | None], docs: list[str]) -> pa.Table:
            return pa.table({
                "seq": pa.array(seqs, pa.int64()),
                "rec_id": pa.array(ids, pa.int64()),
                "line": pa.nulls(len(seqs), pa.int64()),
                "doc": pa.array(docs, pa.string()),
            })

        reader = read_evtx_rust if f.parser == "evtx" else read_evtx_python
        with evtx_on_disk(path) as (on_disk, gzip_problem):
            if gzip_problem:
                f.damage.note(None, gzip_problem)
            size = on_disk.stat().st_size
            cut = cut_chunk(on_disk)
            if cut is not None:
                f.damage.note(None, f"the file ends inside a chunk ({size:,} bytes is not a 4 KiB header and whole "
                                    "64 KiB chunks): it was cut short, and records of its last chunk may be lost")
            # The record ids the parser gave: each chunk's header range is checked against them, so
            # that what it skipped is counted in records and its recovery repeats none.
            from .evtx_reader import RecordIds, read_damaged_chunks

            have = RecordIds()
            next_seq = 0
            for seqs, ids, docs in reader(on_disk, f.damage, batch_rows):
                have.update(ids)
                next_seq = seqs[-1] + 1 if seqs else next_seq
                yield table(seqs, ids, docs)
            for seqs, ids, docs in read_damaged_chunks(on_disk, f.damage, have, next_seq):
                next_seq = seqs[-1] + 1
                yield table(seqs, ids, docs)
            if cut is not None:
                for seqs, ids, docs in read_cut_chunk(cut, f.damage, have, next_seq):
                    yield table(seqs, ids, docs)
        return
    with open_evidence(path) as stream:
        head = stream.read(LOOKAHEAD_BYTES)
        complete = len(head) < LOOKAHEAD_BYTES
        # A UTF-8 byte order mark is not part of the first document.
        head = head.removeprefix(b"\xef\xbb\xbf")
        start = find_start(head, complete)
        if start is None:
            # No line of the look-ahead starts a JSON document: a text file, not thousands of bad lines.
            f.damage.note(None, f"not a recognised event log ({describe_head(f.head)})")
        else:
            for line_no, junk in start.junk:
                what = "malformed JSON" if junk.lstrip()[:1] in (b"{", b"[") else "not JSON"
                f.damage.add(str(line_no), f"{what} before the first document (line {start.line}); line skipped: "
                                           f"{junk[:60]!r}{'…' if len(junk) > 60 else ''}")
            rest = head[start.offset:]
            if start.lines:
                yield from read_json_lines(Prepended(rest, stream), f.damage, start.line)  # type: ignore[arg-type]
            else:
                text = (rest + stream.read()).decode("utf-8", errors="replace")
                yield from read_json_documents(text, f.damage, batch_rows, start.line)
        problem = getattr(stream, "problem", None)
        if problem:
            f.damage.note(None, problem)


_Item = tuple[str, _File | None, pa.Table | None]
_CONTROL = re.compile(r"[\x00-\x1f]")
_INSERT_COLUMNS = ", ".join(EVENT_COLUMN_NAMES)
_SELECT_COLUMNS = ", ".join("NULL" if c == "pos" else c for c in EVENT_COLUMN_NAMES)


class _Writer(threading.Thread):
    """Owns the case connection during an ingest: normalises batches and commits whole files."""

    def __init__(self, case: Case, *, dedupe: bool, batch_rows: int) -> None:
        super().__init__(name="ashiato-ingest-writer", daemon=True)
        self.case = case
        self.con = case.con
        self.dedupe = dedupe
        self.batch_rows = batch_rows
        # Bounded by bytes, not items: the reader must be able to fill a whole next batch of small
        # files while the writer normalises the previous one, or the two stages take turns.
        self.inbox: queue.Queue[_Item] = queue.Queue()
        self._queued_bytes = 0
        self._room = threading.Condition()
        self.error: BaseException | None = None
        self.records_read = 0
        self._stop_now = threading.Event()
        self.finished = threading.Event()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._group: list[_File] = []
        self._group_started = 0.0
        self._group_rows = 0
        self._group_bytes = 0
        self._in_tx = False
        self._files: dict[int, _File] = {}

    # -- the reading side ------------------------------------------------------------------------------
    def put(self, item: _Item) -> None:
        size = item[2].nbytes if item[2] is not None else 0
        with self._room:
            while self._queued_bytes and self._queued_bytes + size > QUEUE_BYTES:
                self.check()
                self._room.wait(0.2)
            self._queued_bytes += size
        self.check()
        self.inbox.put(item)

    def _taken(self, table: pa.Table | None) -> None:
        if table is None:
            return
        with self._room:
            self._queued_bytes -= table.nbytes
            self._room.notify_all()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def join_checked(self) -> None:
        # Not Thread.join(): a Ctrl-C landing inside join() makes Python 3.11 treat the thread
        # as stopped while it still runs, and abort() would then leave it holding the connection.
        while not self.finished.wait(0.2):
            pass
        self.check()

    def abort(self) -> None:
        self._stop_now.set()
        if not self.finished.is_set():
            with contextlib.suppress(duckdb.Error):
                self.con.interrupt()
            self.finished.wait(60)
        if self._in_tx:
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            self._in_tx = False

    # -- the writing side ------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stop_now.is_set():
                try:
                    kind, f, table = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                self._taken(table)
                if f is not None:
                    self._files[f.source_id] = f
                if kind == "batch":
                    assert f is not None and table is not None
                    self._begin()
                    self._pending.append(table.append_column("source_id", pa.array(
                        [f.source_id] * table.num_rows, pa.int32())))
                    self._pending_rows += table.num_rows
                    self._pending_bytes += table.nbytes
                    if self._pending_rows >= self.batch_rows or self._pending_bytes >= BATCH_BYTES:
                        self._flush()
                        if self._group_rows >= GROUP_ROWS or self._group_bytes >= GROUP_BYTES:
                            self._commit_partial(f)
                elif kind == "end":
                    assert f is not None
                    self._begin()
                    if f.unzoned:
                        # Its last batches may still be waiting, and may show the offset.
                        self._flush()
                        self._shift_late(f)
                    self._group.append(f)
                    if (self._group_rows + self._pending_rows >= GROUP_ROWS
                            or self._group_bytes + self._pending_bytes >= GROUP_BYTES
                            or time.perf_counter() - self._group_started > GROUP_SECONDS):
                        self._commit()
                elif kind == "finish":
                    self._commit()
                    return
        except BaseException as exc:
            self.error = exc
            if self._in_tx:
                with contextlib.suppress(duckdb.Error):
                    self.con.execute("ROLLBACK")
                self._in_tx = False
        finally:
            self.finished.set()

    def _begin(self) -> None:
        if not self._in_tx:
            self.con.execute("BEGIN TRANSACTION")
            self._in_tx = True
            self._group_started = time.perf_counter()
            self._group_rows = 0
            self._group_bytes = 0

    def _commit(self) -> None:
        if not self._in_tx:
            return
        self._flush()
        _record_sources(self.con, self._group)
        self.con.execute("COMMIT")
        self._in_tx = False
        self._group = []

    def _commit_partial(self, f: _File) -> None:
        """Commit in the middle of a large file, so memory stays flat whatever the file's size.

        The file's `sources` row says it is not complete yet; opening the case drops the events
        of such a file (an interrupted ingest), so a file is still all there or not there at all.
        """
        _record_sources(self.con, [*self._group, f], partial=f)
        self.con.execute("COMMIT")
        self._in_tx = False
        self._group = []
        self._begin()

    def _flush(self) -> None:
        if not self._pending:
            return
        # A few large chunks: DuckDB scans thousands of tiny Arrow chunks (small files) slowly, and
        # one chunk keeps a query on one thread.
        table = pa.concat_tables(self._pending).combine_chunks()
        table = pa.Table.from_batches(table.to_batches(max_chunksize=max(4096, -(-table.num_rows // 4))))
        self._group_bytes += self._pending_bytes
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        self._group_rows += table.num_rows
        files = {int(sid): self._files[int(sid)] for sid in table.column("source_id").unique().to_pylist()}
        con = self.con
        con.register("_batch", table)
        try:
            if any(f.kind == "evtx" for f in files.values()):
                table = self._drop_malformed_records(table, files)
                if table.num_rows == 0:
                    return
            evtx_only = all(f.kind == "evtx" for f in files.values())
            if evtx_only:
                # The documents stay in the batch: copying them into _norm cost a third of it.
                con.execute(f"CREATE OR REPLACE TEMP TABLE _norm AS SELECT * EXCLUDE (doc) FROM "
                            f"({_with_source(evtx_sql('_batch'))})")
            elif not self._classify(files):
                return
            _canonical_ips(con)
            if self.dedupe:
                for sid, n in _drop_duplicates(con):
                    files[sid].duplicates += n
            for sid, n in con.execute("SELECT source_id, count(*) FROM _norm GROUP BY ALL").fetchall():
                files[sid].stored += n
            # No ORDER BY: _norm keeps the batch's order (eid order, but across shapes of a mixed
            # batch), and sorting the documents cost a copy of them. `events` is ordered afterwards.
            con.execute(f"INSERT INTO events ({_INSERT_COLUMNS}) SELECT {_SELECT_COLUMNS} FROM _norm")
            if evtx_only:
                # Each stored event's document, from the batch; `data` (a UserData object) is rare,
                # so the join's table holds few rows, and never the documents.
                con.execute(f"""INSERT INTO event_data
                    SELECT b.eid, u.data, b.doc
                    FROM (SELECT {_eid()} AS eid, doc FROM _batch) b
                    LEFT JOIN (SELECT eid, data FROM _norm WHERE data IS NOT NULL) u ON u.eid = b.eid
                    WHERE b.eid IN (SELECT eid FROM _norm)""")
            else:
                con.execute("""INSERT INTO event_data
                    SELECT eid, CASE WHEN doc_is = 'data' THEN doc ELSE data END,
                           CASE WHEN doc_is = 'raw' THEN doc END
                    FROM _norm""")
            # Field names for the filter language: every event-data key, read where each shape keeps
            # it. Events of a kind share their key list, so lists are counted before unnesting. A
            # document that is its own event data had its keys listed when it was classified.
            own_keys = "" if evtx_only else """
                    UNION ALL
                    SELECT k AS ks, count(*) AS n FROM _cls c
                    WHERE EXISTS (SELECT 1 FROM _norm n WHERE n.doc_is = 'data' AND n.source_id = c.source_id
                                  AND n.seq = c.seq)
                    GROUP BY ks"""
            con.execute(f"""INSERT INTO fields
                SELECT k, sum(n) FROM (
                  SELECT unnest(ks) AS k, n FROM (
                    SELECT keys AS ks, count(*) AS n
                    FROM _norm WHERE doc_is <> 'data' GROUP BY ks{own_keys}))
                WHERE k IS NOT NULL GROUP BY k""")
        finally:
            # After a failed statement the transaction refuses these too; the first error is the one to see.
            with contextlib.suppress(duckdb.Error):
                con.unregister("_batch")
                con.execute("DROP TABLE IF EXISTS _norm")
                con.execute("DROP TABLE IF EXISTS _hits")

    def _drop_malformed_records(self, table: pa.Table, files: dict[int, _File]) -> pa.Table:
        """A damaged template can make the EVTX parser write records as invalid JSON: a control
        character in an element name (repaired here by escaping it, which valid JSON always does)
        or a quote (skipped, named by its record id). One such record must not fail the batch."""
        con = self.con
        evtx = [sid for sid, f in files.items() if f.kind == "evtx"]
        bad = con.execute("SELECT source_id, seq, rec_id, doc FROM _batch WHERE source_id IN (SELECT unnest(?)) "
                          "AND NOT json_valid(doc) ORDER BY source_id, seq", [evtx]).fetchall()
        if not bad:
            return table
        import orjson

        fixed: dict[tuple[int, int], str] = {}
        for sid, seq, rec_id, doc in bad:
            where = f"record {rec_id}" if rec_id is not None else None
            repaired = _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", doc)
            try:
                orjson.loads(repaired)
            except orjson.JSONDecodeError:
                files[sid].damage.add(where, "damaged EVTX record skipped: the parser rendered it as malformed JSON")
                continue
            fixed[(sid, seq)] = repaired
            files[sid].damage.note(where, "damaged EVTX record kept: control characters in its element names "
                                          "are shown escaped")
        con.register("_fixed", pa.table({
            "source_id": pa.array([k[0] for k in fixed], pa.int32()), "seq": pa.array([k[1] for k in fixed], pa.int64()),
            "doc": pa.array(list(fixed.values()), pa.string())}))
        con.register("_bad", pa.table({"source_id": pa.array([b[0] for b in bad], pa.int32()),
                                       "seq": pa.array([b[1] for b in bad], pa.int64())}))
        try:
            table = con.sql("""
                SELECT b.* REPLACE (coalesce(f.doc, b.doc) AS doc) FROM _batch b
                LEFT JOIN _fixed f USING (source_id, seq)
                WHERE f.doc IS NOT NULL OR NOT EXISTS (SELECT 1 FROM _bad x WHERE x.source_id = b.source_id
                                                       AND x.seq = b.seq)
                ORDER BY b.source_id, b.seq""").to_arrow_table()
        finally:
            con.unregister("_fixed")
            con.unregister("_bad")
        con.unregister("_batch")
        con.register("_batch", table)
        return table

    def _classify(self, files: dict[int, _File]) -> bool:
        """Classify a JSON batch into _cls and normalise it into _norm; False when nothing in it is
        an event of a known shape."""
        con = self.con
        con.execute(f"CREATE OR REPLACE TEMP TABLE _cls AS {classify_sql('_batch')}")
        docs = "_batch"
        if con.execute("SELECT count(*) FROM _cls WHERE shape = 'hit'").fetchall()[0][0]:
            # Elasticsearch hits: unwrap _source, classify again, and take docs from both.
            con.execute(f"CREATE OR REPLACE TEMP TABLE _hits AS {unwrap_hits_sql('_batch', '_cls')}")
            con.execute("DELETE FROM _cls WHERE shape = 'hit'")
            con.execute(f"INSERT INTO _cls {classify_sql('_hits')}")
            docs = ("(SELECT * FROM _batch b WHERE NOT EXISTS (SELECT 1 FROM _hits h WHERE h.source_id = b.source_id"
                    " AND h.seq = b.seq) UNION ALL SELECT * FROM _hits)")
        self._note_bad_documents(files)
        shapes = []
        for sid, shape, n in con.execute("SELECT source_id, shape, count(*) FROM _cls GROUP BY ALL").fetchall():
            if shape in SHAPE_SELECTS:
                files[sid].shapes[shape] = files[sid].shapes.get(shape, 0) + n
                shapes.append(shape)
        if not shapes:
            return False
        con.execute(f"CREATE OR REPLACE TEMP TABLE _norm AS "
                    f"{_with_source(normalise_sql(docs, '_cls', sorted(set(shapes))))}")
        if "nxlog" in shapes:
            self._fix_zones(files)
        return True

    def _fix_zones(self, files: dict[int, _File]) -> None:
        """Shift events timed in a collector's local time to UTC (normalise._nxlog_zone): the
        offset of each file and host is the one most of its Sysmon events show, learned from the
        first batch that has any."""
        con = self.con
        for sid, host, minutes in con.execute(
                "SELECT source_id, lower(host), mode(zone_probe) FROM _norm WHERE zone_probe IS NOT NULL "
                "GROUP BY ALL").fetchall():
            files[sid].zones.setdefault(host or "", int(minutes))
        zones = [(sid, host, minutes) for sid, f in files.items() for host, minutes in f.zones.items()]
        if zones:
            con.register("_zones", pa.table({
                "source_id": pa.array([z[0] for z in zones], pa.int32()),
                "host": [z[1] for z in zones],
                "minutes": pa.array([z[2] for z in zones], pa.int32())}))
            try:
                con.execute("""UPDATE _norm SET ts = _norm.ts + to_minutes(z.minutes), zoneless = false
                               FROM _zones z WHERE _norm.zoneless AND _norm.source_id = z.source_id
                                 AND coalesce(lower(_norm.host), '') = z.host""")
            finally:
                con.unregister("_zones")
        for sid, host, n in con.execute(
                "SELECT source_id, coalesce(lower(host), ''), count(*) FROM _norm WHERE zoneless GROUP BY ALL"
        ).fetchall():
            files[sid].unzoned[host] = files[sid].unzoned.get(host, 0) + int(n)
        if any(f.unzoned for f in files.values()):
            # Remembered until the file ends: a later batch may still show the offset (_shift_late).
            con.execute("CREATE TEMP TABLE IF NOT EXISTS _unzoned (source_id INTEGER, host VARCHAR, eid BIGINT)")
            con.execute("INSERT INTO _unzoned SELECT source_id, coalesce(lower(host), ''), eid FROM _norm "
                        "WHERE zoneless")

    def _shift_late(self, f: _File) -> None:
        """At the end of a file: shift the events stored before the batch that showed their host's
        offset. They were stored unshifted, so the duplicate check compared them as written."""
        con = self.con
        for host in [h for h in f.unzoned if h in f.zones]:  # the offset was learned after them
            n = con.execute("""UPDATE events SET ts = ts + to_minutes(?)
                               WHERE eid IN (SELECT eid FROM _unzoned WHERE source_id = ? AND host = ?)""",
                            [f.zones[host], f.source_id, host]).fetchall()[0][0]
            f.unzoned[host] -= int(n)
            if f.unzoned[host] <= 0:
                del f.unzoned[host]
        con.execute("DELETE FROM _unzoned WHERE source_id = ?", [f.source_id])

    def _note_bad_documents(self, files: dict[int, _File]) -> None:
        rows = self.con.execute("""
            SELECT source_id, shape, count(*), list(coalesce(line, seq) ORDER BY seq)[1:20]
            FROM _cls WHERE shape IN ('malformed', 'unknown') GROUP BY ALL""").fetchall()
        for sid, shape, n, where in rows:
            message = ("malformed JSON; line skipped" if shape == "malformed"
                       else "JSON document of no known event log shape; skipped")
            damage = files[sid].damage
            for loc in where:
                damage.add(str(loc), message)
            damage.skipped += n - len(where)


def _eid(prefix: str = "") -> str:
    """The event's id: its file's source_id in the high half, its place in the file below."""
    return f"(CAST({prefix}source_id AS BIGINT) << 32) | {prefix}seq"


def _with_source(sql: str) -> str:
    return f"SELECT {_eid('n.')} AS eid, n.* FROM ({sql}) n"


# Shapes carry an event's time at different precision (NXLog's EventTime has whole seconds), so
# the same event from two exports matches on host, channel and record id with times this close.
# A Sysmon event's `ts` is TimeCreated from EVTX but UtcTime from NXLog and the winlogbeat module,
# and the two can be minutes apart; its UtcTime (`utc_time`, every shape keeps it) is compared too.
DUPLICATE_WINDOW_SECONDS = 2


def _drop_duplicates(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """Drop rows already stored, or repeated earlier in the batch: same (host, channel, record_id)
    and times within DUPLICATE_WINDOW_SECONDS. Returns (source_id, rows dropped).

    Events without a record id cannot be told apart from a genuine repeat, so they are all kept.
    """
    same = f"""lower(x.host) IS NOT DISTINCT FROM lower(n.host) AND x.channel IS NOT DISTINCT FROM n.channel
               AND x.record_id = n.record_id
               AND (abs(epoch(x.ts) - epoch(n.ts)) <= {DUPLICATE_WINDOW_SECONDS}
                    OR abs(epoch(x.utc_time) - epoch(n.utc_time)) <= {DUPLICATE_WINDOW_SECONDS})"""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _dup AS
        SELECT n.eid, n.source_id FROM _norm n
        WHERE n.record_id IS NOT NULL AND (
              EXISTS (SELECT 1 FROM events x WHERE {same})
           OR EXISTS (SELECT 1 FROM _norm x WHERE x.eid < n.eid AND {same}))""")
    dropped = [(int(a), int(b)) for a, b in con.execute(
        "SELECT source_id, count(*) FROM _dup GROUP BY ALL").fetchall()]
    if dropped:
        con.execute("DELETE FROM _norm WHERE eid IN (SELECT eid FROM _dup)")
    con.execute("DROP TABLE _dup")
    return dropped


def _canonical_ips(con: duckdb.DuckDBPyConnection) -> None:
    """IPv6 addresses of the batch in one spelling (normalise.canonical_ip). Few distinct values
    ever carry a colon, so they are rewritten through a small mapping, not row by row."""
    values = [v for (v,) in con.execute(
        "SELECT DISTINCT v FROM (SELECT src_ip AS v FROM _norm UNION ALL SELECT dst_ip FROM _norm) "
        "WHERE contains(v, ':')").fetchall()]
    mapping = {v: c for v in values if (c := canonical_ip(v)) != v}
    if not mapping:
        return
    con.register("_ips", pa.table({"written": list(mapping), "canonical": list(mapping.values())}))
    try:
        for col in ("src_ip", "dst_ip"):
            con.execute(f"UPDATE _norm SET {col} = m.canonical FROM _ips m WHERE _norm.{col} = m.written")
    finally:
        con.unregister("_ips")


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


def _record_sources(con: duckdb.DuckDBPyConnection, files: list[_File], *, partial: _File | None = None) -> None:
    """The `sources` rows (and kept problems) of a group of files, in one statement each.

    `partial` is a file still being read: its row is written as not complete, and replaced later.
    """
    rows: list[list[object]] = []
    errors: list[list[object]] = []
    now = datetime.now(UTC).replace(tzinfo=None)
    for f in files:
        seconds = time.perf_counter() - f.started
        shape = f.shape
        if f.kind == "json" and f.seen and not f.shapes:
            f.damage.note(None, f"not a recognised event log ({describe_head(f.head)})")
        if f.kind == "evtx" and f.seen == 0 and not f.damage.problems:
            f.damage.note(None, "EVTX file holds no records")
        if f is not partial:
            for host, n in sorted(f.unzoned.items()):
                shifted = f" (other events of it were shifted by {f.zones[host]} min)" if host in f.zones else ""
                f.damage.note(None, f"{n} events of {host or 'an unnamed host'} are timed by TimeCreated as written: "
                                    "this export's TimeCreated can be the collector's local time marked as UTC, "
                                    f"and no Sysmon UtcTime came before them to learn the offset from{shifted}")
        # Stored absolute: a path as typed means nothing once the case is opened elsewhere.
        rows.append([f.source_id, os.path.abspath(f.evidence.path), f.sha256, f.evidence.bytes, shape, f.parser, f.stored,
                     f.duplicates, f.damage.skipped, f.damage.first_error, round(seconds, 3), now,
                     f is not partial])
        if f is partial:
            continue
        errors += [[f.source_id, os.path.abspath(f.evidence.path), p.location, p.message] for p in f.damage.problems]
        status: Literal["ingested", "skipped"] = "ingested" if (f.stored or f.duplicates or (
            f.kind == "evtx" and f.seen)) else "skipped"
        f.result = FileResult(
            str(f.evidence.path), status, shape=SHAPE_NAMES.get(shape or "", shape), records=f.stored,
            duplicates=f.duplicates, skipped=f.damage.skipped, seconds=seconds, problems=f.damage.problems,
            message=f.damage.first_error)
    # A file committed partially before has a row already: this one replaces it.
    con.execute("DELETE FROM sources WHERE source_id IN (SELECT unnest(?))", [[r[0] for r in rows]])
    _insert_rows(con, "sources", rows)
    _insert_rows(con, "ingest_errors", errors)


def _insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[list[object]]) -> None:
    if not rows:
        return
    names = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    arrow = pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})
    con.register("_rows", arrow)
    con.execute(f"INSERT INTO {table} SELECT * FROM _rows")
    con.unregister("_rows")


def _name_members(case: Case) -> None:
    """A local account added to a group is logged by SID alone (MemberName "-"). Where another event
    of the case pairs that SID with an account name (its 4720, a logon), the member is named so:
    `user:support_tmp` then finds the 4732 that made it an administrator."""
    con = case.con
    if not con.execute("SELECT count(*) FROM events WHERE member_sid IS NOT NULL AND member_name IS NULL"
                       ).fetchall()[0][0]:
        return
    with case.transaction():
        con.execute("""
            UPDATE events SET member_name = m.name
            FROM (SELECT sid, arg_max(name, n) AS name FROM (
                    SELECT sid, name, count(*) AS n FROM (
                        SELECT target_sid AS sid, target_user AS name FROM events
                        WHERE target_sid IS NOT NULL AND target_user IS NOT NULL
                        UNION ALL
                        SELECT subject_sid, subject_user FROM events
                        WHERE subject_sid IS NOT NULL AND subject_user IS NOT NULL)
                    WHERE sid IN (SELECT member_sid FROM events WHERE member_name IS NULL)
                    GROUP BY ALL)
                  GROUP BY sid) m
            WHERE events.member_name IS NULL AND events.member_sid = m.sid""")


def _refresh_fields(case: Case) -> None:
    with case.transaction() as con:
        con.execute("CREATE OR REPLACE TEMP TABLE _f AS SELECT name, sum(events)::BIGINT AS events "
                    "FROM fields GROUP BY name")
        con.execute("DELETE FROM fields")
        con.execute("INSERT INTO fields SELECT * FROM _f")
        con.execute("DROP TABLE _f")
