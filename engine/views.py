"""The queries both faces use: filtered timeline windows, counts, histogram, frequency, detail.

A filtered view is the sorted array of matching positions (`pos`), held in memory (8 bytes a
match). Its length is the scroll height, and any window of it is one range query over `events`,
which is stored in `pos` order: about a millisecond at any depth. Every function takes the
cursor to run on, so each UI worker thread can use its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
import numpy as np

from .filters import DOCUMENTS, Compiled, compile_filter
from .ingest.normalise import EVTX_EVENT_DATA, SECURITY_LOG_CLEARED, SYSTEM_LOG_CLEARED
from .notes import Notes, expose
from .schema import EVENT_COLUMN_NAMES
from .summary import process_of, summarise, user_of

Cursor = duckdb.DuckDBPyConnection
ROW_COLUMNS = ", ".join(f"e.{c}" for c in EVENT_COLUMN_NAMES)


@dataclass
class View:
    """A filter resolved against the case: positions of the matching events, in timeline order."""

    filter: Compiled
    total: int  # events in the case
    positions: np.ndarray | None  # None: no filter, every position matches
    # Share of the events already looked at: below 1 while resolve_steps() is still going.
    done: float = 1.0

    @property
    def complete(self) -> bool:
        return self.done >= 1.0

    @property
    def count(self) -> int:
        return self.total if self.positions is None else len(self.positions)

    def pos_at(self, index: int) -> int:
        return index if self.positions is None else int(self.positions[index])

    def index_of_pos(self, pos: int) -> int:
        """Index of the first row at or after `pos`."""
        if self.positions is None:
            return min(pos, self.total)
        return int(np.searchsorted(self.positions, pos))


def field_names(cur: Cursor) -> list[str]:
    return [r[0] for r in cur.execute("SELECT name FROM fields ORDER BY name").fetchall()]


def total_events(cur: Cursor) -> int:
    return int(cur.execute("SELECT count(*) FROM events").fetchall()[0][0])


def resolve(cur: Cursor, text_or_compiled: str | Compiled, names: list[str] | None = None) -> View:
    compiled = (text_or_compiled if isinstance(text_or_compiled, Compiled)
                else compile_filter(text_or_compiled, names if names is not None else field_names(cur)))
    return ordinal_view(cur, compiled, "events", "pos", total_events(cur))


def ordinal_view(cur: Cursor, compiled: Compiled, table: str, ordinal: str, total: int) -> View:
    """The view of a filter over a table stored in `ordinal` order (events by pos, sessions by ord):
    the sorted ordinals of its matching rows. `table` and `ordinal` are the engine's own names."""
    if compiled.empty:
        return View(compiled, total, None)
    positions = cur.execute(f"SELECT {ordinal} FROM {table} e WHERE {compiled.sql} ORDER BY {ordinal}",
                            compiled.params).fetchnumpy()[ordinal]
    return View(compiled, total, np.asarray(positions, dtype=np.int64))


# Documents read by the first step of a full-text filter (its first rows show after it), and the
# most any later step reads; steps grow between the two.
FIRST_STEP_DOCUMENTS = 100_000
MAX_STEP_DOCUMENTS = 1_000_000


def document_ranges(cur: Cursor, first: int | None = None,
                    largest: int | None = None) -> list[tuple[int, int, int]]:
    """Consecutive eid ranges [lo, hi) that together hold every event, with the documents in each.

    Boundaries are sampled from `event_data` in storage order, which is eid order but for local
    swaps (documents are appended batch by batch as they are ingested), so a range is a run of row
    groups that DuckDB's zone maps let it read alone; the sizes are estimates. The first range is
    small so that a full-text filter shows rows soon.
    """
    first = first or FIRST_STEP_DOCUMENTS
    largest = largest or MAX_STEP_DOCUMENTS
    step = max(1, first // 2)
    sample = [int(r[0]) for r in cur.execute(
        "SELECT eid FROM event_data WHERE rowid % ? = 0 ORDER BY eid", [step]).fetchall()]
    total = int(cur.execute("SELECT count(*) FROM event_data").fetchall()[0][0])
    if not sample:
        return [(-(2**63), 2**63 - 1, 0)]
    # The ranges cover all of eid space, so events whose documents are missing are still visited.
    bounds = [-(2**63), *sample[1:], 2**63 - 1]
    ranges: list[tuple[int, int, int]] = []
    lo, size, want = bounds[0], 0, first
    for i in range(1, len(bounds)):
        size += step
        if size >= want or i == len(bounds) - 1:
            ranges.append((lo, bounds[i], size))
            lo, size, want = bounds[i], 0, min(largest, want * 2)
    # The sampled sizes are estimates; the last range holds whatever is left.
    counted = sum(r[2] for r in ranges[:-1])
    ranges[-1] = (ranges[-1][0], ranges[-1][1], max(0, total - counted))
    return ranges


def resolve_steps(cur: Cursor, compiled: Compiled, *, first: int | None = None,
                  largest: int | None = None) -> Iterator[View]:
    """Resolve a filter in steps, yielding a growing view after each; the last one is complete.

    A filter that reads the original documents (a bare word, a field of the original event) scans
    gigabytes of text on a large case. Taken one range of documents at a time (the events whose
    eid falls in the range, against only those documents) the matches found so far can be shown
    after the first step, with `done` saying how much has been looked at. Any other filter is a
    single step.
    """
    if not compiled.reads_documents:
        yield resolve(cur, compiled)
        return
    total = total_events(cur)
    ranges = document_ranges(cur, first, largest)
    documents = max(1, sum(r[2] for r in ranges))
    seen = 0
    positions = np.empty(0, dtype=np.int64)
    for lo, hi, size in ranges:
        # lo/hi are integers computed here, never user text; the filter's own values stay parameters.
        narrowed = compiled.sql.replace(
            DOCUMENTS, f"FROM event_data d WHERE d.eid >= {int(lo)} AND d.eid < {int(hi)} AND")
        got = cur.execute(f"SELECT pos FROM events e WHERE e.eid >= {int(lo)} AND e.eid < {int(hi)} "
                          f"AND ({narrowed})", compiled.params).fetchnumpy()["pos"]
        seen += size
        if len(got):
            positions = np.sort(np.concatenate([positions, np.asarray(got, dtype=np.int64)]), kind="stable")
        yield View(compiled, total, positions, done=min(1.0, seen / documents) if hi < 2**63 - 1 else 1.0)


def window_where(view: View, start: int, n: int, ordinal: str = "pos") -> tuple[str, list[Any]] | None:
    """SQL and parameters selecting rows start..start+n-1 of a view of a table stored in `ordinal`
    order (events by pos, sessions by ord): one range scan, narrowed to the view's ordinals."""
    start = max(0, start)
    end = min(view.count, start + n)
    if end <= start:
        return None
    if view.positions is None:
        return f"{ordinal} BETWEEN ? AND ?", [start, end - 1]
    wanted = view.positions[start:end]
    return (f"{ordinal} BETWEEN ? AND ? AND list_contains(?, {ordinal})",
            [int(wanted[0]), int(wanted[-1]), [int(x) for x in wanted]])


def window(cur: Cursor, view: View, start: int, n: int) -> list[dict[str, Any]]:
    """Rows start..start+n-1 of the view, each a dict of events columns plus summary/user/process."""
    where = window_where(view, start, n)
    if where is None:
        return []
    return rows_with_summary(cur.execute(f"SELECT {ROW_COLUMNS} FROM events e WHERE {where[0]} ORDER BY pos",
                                         where[1]), cur)


def rows_with_summary(result: Cursor, cur: Cursor | None = None) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description or []]
    out = []
    for values in result.fetchall():
        row = dict(zip(names, values, strict=True))
        row["summary"] = summarise(row)
        row["user"] = user_of(row)
        row["process"] = process_of(row)
        out.append(row)
    if cur is not None:
        _generic_summaries(cur, out)
    return out


def _generic_summaries(cur: Cursor, rows: list[dict[str, Any]]) -> None:
    """Events no per-type summary knows get one from their first meaningful fields (read from
    their event data: one query for the rows of a window that need it)."""
    from .summary import generic

    # (A record without even a channel, such as a 1601-dated empty one, has no data to show.)
    wanted = sorted({int(r["eid"]) for r in rows if not r["summary"] and r.get("eid") is not None and r.get("channel")})
    if not wanted:
        return
    # One range a run of nearby eids (a window's events come from a few files, each a run of eids):
    # `event_data` is stored by eid, so each range reads a row group or two where one range over
    # them all read most of the table (2 s on the 10M case).
    clusters: list[list[int]] = [[wanted[0]]]
    for eid in wanted[1:]:
        if eid - clusters[-1][-1] > 50_000:
            clusters.append([])
        clusters[-1].append(eid)
    sql = " UNION ALL ".join(f"""SELECT eid, coalesce(data, json_extract(raw, '{EVTX_EVENT_DATA}')) FROM event_data
                                 WHERE eid BETWEEN ? AND ? AND list_contains(?, eid)""" for _ in clusters)
    got = cur.execute(sql, [x for c in clusters for x in (c[0], c[-1], c)]).fetchall()
    by_eid: dict[int, str] = {}
    for eid, blob in got:
        try:
            fields = json.loads(blob) if blob else None
        except ValueError:
            continue
        if isinstance(fields, dict):
            by_eid[int(eid)] = generic(fields)
    for r in rows:
        if not r["summary"] and r.get("eid") is not None:
            r["summary"] = by_eid.get(int(r["eid"]), "")


def query(cur: Cursor, text: str, *, limit: int | None = 100, offset: int = 0,
          on_progress: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """The first rows matching a filter, in timeline order (what `ashiato query` prints).

    With `on_progress`, a filter that reads the original documents is resolved in steps, and
    `on_progress` hears the share of documents searched after each: on a large case such a
    search takes many seconds, and a silent terminal looks hung."""
    compiled = compile_filter(text, field_names(cur))
    where, params = compiled.sql, list(compiled.params)
    if on_progress is not None and compiled.reads_documents:
        view = View(compiled, 0, None)
        for view in resolve_steps(cur, compiled):
            on_progress(view.done)
        where, params = membership(cur, view)
    sql = f"SELECT {ROW_COLUMNS} FROM events e WHERE {where} ORDER BY pos"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [limit, offset]
    return rows_with_summary(cur.execute(sql, params), cur)


def membership(cur: Cursor, view: View) -> tuple[str, list[Any]]:
    """SQL (over `events e`) and parameters for "this row is in the view".

    A full-text view's filter would read every document again; its positions are already known,
    so they are handed to DuckDB instead (registered on this cursor). That is also exactly the rows
    a view still growing shows."""
    if view.positions is not None and view.filter.reads_documents:
        import pyarrow as pa

        cur.register("_view_positions", pa.table({"pos": view.positions}))
        return "e.pos IN (SELECT pos FROM _view_positions)", []
    return view.filter.sql, list(view.filter.params)


def find(cur: Cursor, view: View, search: Compiled, from_index: int, *, backwards: bool = False) -> int | None:
    """Index in `view` of the next (or previous) row that also matches `search`."""
    here = view.pos_at(from_index) if 0 <= from_index < view.count else (-1 if not backwards else 2**62)
    in_view, view_params = membership(cur, view)
    cond = f"({search.sql}) AND ({in_view})"
    agg, cmp = ("max", "<") if backwards else ("min", ">")
    rows = cur.execute(f"SELECT {agg}(pos) FROM events e WHERE pos {cmp} ? AND {cond}",
                       [here, *search.params, *view_params]).fetchall()
    pos = rows[0][0]
    return None if pos is None else view.index_of_pos(int(pos))


def find_in(view: View, matches: View, from_index: int, *, backwards: bool = False) -> int | None:
    """Like find(), with the search already resolved into a view of its own (`matches`): a
    full-text search is resolved once, then every n / N is a lookup in two sorted arrays."""
    if view.count == 0:
        return None
    here = view.pos_at(from_index) if 0 <= from_index < view.count else (-1 if not backwards else 2**62)
    found = np.arange(matches.total, dtype=np.int64) if matches.positions is None else matches.positions
    if view.positions is not None:
        found = np.intersect1d(view.positions, found, assume_unique=True)
    if backwards:
        i = int(np.searchsorted(found, here, side="left")) - 1
        return None if i < 0 else view.index_of_pos(int(found[i]))
    i = int(np.searchsorted(found, here, side="right"))
    return None if i >= len(found) else view.index_of_pos(int(found[i]))


def index_at_time(cur: Cursor, view: View, when: datetime) -> int:
    rows = cur.execute("SELECT min(pos) FROM events WHERE ts >= ?", [when]).fetchall()
    pos = rows[0][0]
    if pos is None:
        return max(0, view.count - 1)
    return min(view.index_of_pos(int(pos)), max(0, view.count - 1))


def time_span(cur: Cursor, view: View) -> tuple[datetime | None, datetime | None]:
    """Times of the first and last event of a view that has a real time: records dated 1601-01-01
    (FILETIME 0) sort first and records without a time sort last, and neither says when."""
    if view.count == 0:
        return None, None
    lo, hi = cur.execute("""SELECT min(pos) FILTER (WHERE ts >= TIMESTAMP '1601-01-02'),
                                   max(pos) FILTER (WHERE ts IS NOT NULL) FROM events""").fetchall()[0]
    if lo is None or hi is None:
        return None, None
    first = view.index_of_pos(int(lo))
    if view.positions is None:
        last = min(int(hi), view.count - 1)
    else:
        last = int(np.searchsorted(view.positions, int(hi), side="right")) - 1
    if first > last:
        return None, None
    a, b = window(cur, view, first, 1), window(cur, view, last, 1)
    return (a[0]["ts"] if a else None), (b[0]["ts"] if b else None)


def detail(cur: Cursor, eid: int) -> dict[str, Any] | None:
    """Everything about one event: its columns, its original fields (name, value) and raw text."""
    rows = cur.execute(f"""SELECT {ROW_COLUMNS}, d.data, d.raw,
                                  json_extract(d.raw, '{EVTX_EVENT_DATA}') AS evtx_data, s.path
                           FROM events e JOIN event_data d USING (eid)
                           LEFT JOIN sources s USING (source_id) WHERE e.eid = ?""", [eid])
    names = [d[0] for d in rows.description or []]
    found = rows.fetchall()
    if not found:
        return None
    row = dict(zip(names, found[0], strict=True))
    fields: list[tuple[str, Any]] = []
    for blob in (row.pop("evtx_data"), row.pop("data")):
        if blob:
            try:
                obj = json.loads(blob)
            except ValueError:
                continue
            if isinstance(obj, dict):
                fields += list(obj.items())
    row["fields"] = fields
    row["summary"] = summarise(row)
    row["script"] = whole_script(cur, eid)
    return row


def whole_script(cur: Cursor, eid: int) -> dict[str, Any] | None:
    """A PowerShell 4104 logged in parts: every part of its script (same host and ScriptBlockId)
    joined in MessageNumber order, with how many of how many parts the case holds."""
    rows = cur.execute("""
        SELECT p.script_part, p.script_parts, p.script_text FROM events e JOIN events p
          ON p.host = e.host AND p.script_block_id = e.script_block_id AND p.event_id = 4104
         AND p.channel = e.channel
        WHERE e.eid = ? AND e.event_id = 4104 AND e.script_block_id IS NOT NULL AND coalesce(e.script_parts, 1) > 1
        ORDER BY p.script_part, p.eid""", [eid]).fetchall()
    if not rows:
        return None
    parts: dict[int, str] = {}
    for part, _total, text in rows:
        parts.setdefault(int(part or 0), text or "")  # a part logged twice (two exports): once
    return {"parts": len(parts), "total": int(rows[0][1] or len(parts)),
            "text": "".join(parts[k] for k in sorted(parts))}


def context_filter(row: dict[str, Any], minutes: int = 5) -> str:
    """Same host, ±minutes around the event, every channel."""
    ts: datetime = row["ts"]
    lo = (ts - timedelta(minutes=minutes)).isoformat()
    hi = (ts + timedelta(minutes=minutes)).isoformat()
    host = str(row.get("host") or "").replace('"', '\\"')
    return f'host:"{host}" after:{lo} before:{hi}'


# Bucket widths, finest first: each is a whole number of calendar units, aligned in UTC the way a
# responder reads a calendar (see BucketWidth). The histogram takes the finest whose buckets fit.
HISTOGRAM_UNITS = ("second", "minute", "hour", "day", "week", "month", "year")
_FIXED_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class BucketWidth:
    """`n` calendar units. Buckets are numbered by `index` and start on the calendar's boundaries:
    seconds, minutes and hours on multiples of n from midnight UTC (6 h buckets start at 00, 06, 12,
    18), days at midnight, weeks on Monday, months on the 1st (3 months: January, April, July,
    October), years on 1 January of a year divisible by n. Times are naive UTC, as the case keeps them."""

    unit: str
    n: int = 1

    def index(self, t: datetime) -> int:
        """The number of the bucket holding `t`; consecutive buckets have consecutive numbers."""
        if self.unit in _FIXED_UNIT_SECONDS:
            return (t - _EPOCH) // timedelta(seconds=self.n * _FIXED_UNIT_SECONDS[self.unit])
        if self.unit == "day":
            return (t.toordinal() - 1) // self.n
        if self.unit == "week":
            return (t.toordinal() - 1) // (7 * self.n)  # day 1 (0001-01-01) is a Monday
        if self.unit == "month":
            return (t.year * 12 + t.month - 1) // self.n
        return t.year // self.n

    def start(self, index: int) -> datetime:
        if self.unit in _FIXED_UNIT_SECONDS:
            return _EPOCH + timedelta(seconds=index * self.n * _FIXED_UNIT_SECONDS[self.unit])
        if self.unit in ("day", "week"):
            return datetime.fromordinal(index * self.n * (7 if self.unit == "week" else 1) + 1)
        if self.unit == "month":
            month = index * self.n
            return datetime(month // 12, month % 12 + 1, 1)
        return datetime(index * self.n, 1, 1)

    def end(self, start: datetime) -> datetime:
        """Where the bucket starting at `start` ends (the next one's start, exclusive)."""
        try:
            return self.start(self.index(start) + 1)
        except (ValueError, OverflowError):  # past year 9999
            return datetime.max

    @property
    def nominal_seconds(self) -> int:
        days = {"day": 1, "week": 7, "month": 30, "year": 365}
        return self.n * (_FIXED_UNIT_SECONDS.get(self.unit) or 86400 * days[self.unit])


BUCKET_WIDTHS = [
    *(BucketWidth("second", n) for n in (1, 5, 10, 30)),
    *(BucketWidth("minute", n) for n in (1, 5, 10, 30)),
    *(BucketWidth("hour", n) for n in (1, 3, 6, 12)),
    BucketWidth("day"), BucketWidth("week"),
    *(BucketWidth("month", n) for n in (1, 3, 6)),
    *(BucketWidth("year", n) for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)),
]


# 1102 is the Security log's own "cleared"; System 104 from the Eventlog provider names another log.
# Other providers reuse 104 (RdpCoreTS: a connection), and 1100 is the service shutting down.
LOG_CLEARED = f"({SECURITY_LOG_CLEARED} OR {SYSTEM_LOG_CLEARED})"


@dataclass
class Histogram:
    width: BucketWidth
    # Every bucket from the first dated event's to the last's, in order, the empty ones too:
    # start, events, log clears (Security 1102, System 104).
    buckets: list[tuple[datetime, int, int]]

    def bounds(self, index: int) -> tuple[datetime, datetime]:
        """[start, end) of a bucket: the `after:` / `before:` that narrow a view to it."""
        start = self.buckets[index][0]
        return start, self.width.end(start)


def bucket_width_for(lo: datetime, hi: datetime, max_buckets: int) -> BucketWidth:
    """The finest width whose aligned buckets from `lo` to `hi` number at most `max_buckets`."""
    for width in BUCKET_WIDTHS:
        if width.index(hi) - width.index(lo) + 1 <= max(1, max_buckets):
            return width
    return BUCKET_WIDTHS[-1]


def histogram(cur: Cursor, view: View, max_buckets: int = 60) -> Histogram:
    """Events of the view per calendar-aligned bucket, at most `max_buckets` of them, none left out.

    Events without a real time (NULL, or FILETIME 0 read as 1601) are in no bucket."""
    in_view, params = membership(cur, view)
    dated = f"ts > TIMESTAMP '1601-01-02' AND {in_view}"
    rows = cur.execute(f"SELECT min(ts), max(ts) FROM events e WHERE {dated}", params).fetchall()
    lo, hi = rows[0]
    if lo is None:
        return Histogram(BucketWidth("minute"), [])
    width = bucket_width_for(lo, hi, max_buckets)
    # DuckDB truncates to the base unit (a week's days); the width numbers the truncated times.
    base = "day" if width.unit == "week" else width.unit
    data = cur.execute(
        f"""SELECT date_trunc(?, ts) AS b, count(*), count(*) FILTER (WHERE {LOG_CLEARED})
            FROM events e WHERE {dated} GROUP BY b""",
        [base, *params]).fetchall()
    first = width.index(lo)
    counts = [[0, 0] for _ in range(width.index(hi) - first + 1)]
    for b, n, c in data:
        slot = counts[width.index(b) - first]
        slot[0] += int(n)
        slot[1] += int(c)
    return Histogram(width, [(width.start(first + k), n, c) for k, (n, c) in enumerate(counts)])


def frequency(cur: Cursor, view: View, column: str, *, rarest_first: bool = False,
              limit: int = 200) -> list[tuple[Any, int]]:
    if column not in EVENT_COLUMN_NAMES:
        raise ValueError(f"unknown column {column!r}")
    in_view, params = membership(cur, view)
    order = "ASC" if rarest_first else "DESC"
    return [(v, int(n)) for v, n in cur.execute(
        f"SELECT e.{column} AS v, count(*) AS n FROM events e WHERE {in_view} GROUP BY v "
        f"ORDER BY n {order}, v NULLS LAST LIMIT ?", [*params, limit]).fetchall()]


# -- marks and tags, kept in the case's notes (engine.notes) ----------------------------------------
def toggle_mark(cur: Cursor, eid: int) -> bool:
    """Mark or unmark an event; True when it is now marked."""
    with Notes(cur) as n:
        return n.toggle_mark(eid)


def set_marks(cur: Cursor, eids: list[int], marked: bool) -> None:
    """Mark (or unmark) several events at once, keeping the tags of those already marked."""
    with Notes(cur) as n:
        n.set_marks(eids, marked)


def set_tag(cur: Cursor, eid: int, tag: str) -> None:
    with Notes(cur) as n:
        n.set_tag(eid, tag)


def marks(cur: Cursor) -> dict[int, str | None]:
    with Notes(cur) as n:
        return n.marks()


def saved_filters(cur: Cursor) -> list[tuple[str, str]]:
    with Notes(cur) as n:
        return n.saved_filters()


def save_filter(cur: Cursor, name: str, text: str) -> None:
    with Notes(cur) as n:
        n.save_filter(name, text)


def marked_positions(cur: Cursor) -> np.ndarray:
    expose(cur)
    pos = cur.execute("SELECT e.pos FROM marks m JOIN events e USING (eid) ORDER BY e.pos").fetchnumpy()["pos"]
    return np.asarray(pos, dtype=np.int64)


# -- export ---------------------------------------------------------------------------------------------
EXPORT_FORMATS = ("csv", "jsonl", "parquet")


def export(cur: Cursor, text: str, path: str, fmt: str, *, marked_only: bool = False) -> int:
    """Write the events matching `text` (or only the marked ones) with their original fields."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    compiled = compile_filter(text, field_names(cur))
    expose(cur)
    where = compiled.sql + (" AND e.eid IN (SELECT eid FROM marks)" if marked_only else "")
    select = (f"SELECT {ROW_COLUMNS}, m.tag, coalesce(d.data::VARCHAR, json_extract(d.raw, '{EVTX_EVENT_DATA}')::VARCHAR)"
              f" AS event_data, d.raw FROM events e JOIN event_data d USING (eid) "
              f"LEFT JOIN marks m USING (eid) WHERE {where} ORDER BY e.pos")
    rel = cur.sql(select, params=compiled.params).to_arrow_table()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(rel, path)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(rel, path)
    else:
        import orjson

        with open(path, "wb") as out:
            for batch in rel.to_batches(10_000):
                for rec in batch.to_pylist():
                    out.write(orjson.dumps(rec, default=str) + b"\n")
    return int(rel.num_rows)
