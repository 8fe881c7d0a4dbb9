"""The analyst's notes on a case (marked events and their tags, marked sessions, saved filters),
kept in a small SQLite file beside the case: `case.duckdb.notes`.

Why not in the case: DuckDB lets a process write a database file only while no other process
has it open, and lets any number read it together. The TUI opens the case read-only so that
`ashiato query`, `sql`, `stats` and `export` work in the next pane while it is open; the notes
must still be saved at once, and SQLite (the standard library's) is made for several processes
writing one small file. Readers see the notes through the same table names as before
(`expose`), so SQL over `marks` keeps working.

A notes file belongs to one case: it carries the case's id (meta `case_id`), so a case deleted
and made again under the same name does not inherit marks that name other events. Cases written
before the notes moved kept them in their own `marks`, `saved_filters` and `session_marks`
tables; those rows are read until the first note is written, which copies them across.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

Cursor = duckdb.DuckDBPyConnection
SUFFIX = ".notes"
CASE_ID_KEY = "case_id"
# Another process writing a note holds SQLite's lock for milliseconds; wait rather than fail.
BUSY_SECONDS = 10.0
_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS marks (eid INTEGER PRIMARY KEY, tag TEXT, created TEXT)",
    "CREATE TABLE IF NOT EXISTS session_marks (first_eid INTEGER PRIMARY KEY, created TEXT)",
    "CREATE TABLE IF NOT EXISTS saved_filters (name TEXT PRIMARY KEY, filter TEXT)",
)


class NotesError(Exception):
    """Notes that cannot be saved (the case's folder is not writable, the file is damaged)."""


def path_for(case_path: str | Path) -> Path:
    return Path(f"{case_path}{SUFFIX}")


def case_path_of(cur: Cursor) -> Path:
    return Path(cur.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()[0][0])


def case_id(cur: Cursor) -> str | None:
    rows = cur.execute("SELECT value FROM meta WHERE key = ?", [CASE_ID_KEY]).fetchall()
    return str(rows[0][0]) if rows else None


def ensure_case_id(con: Cursor) -> str:
    """The case's id, given it on first need (a read-write connection)."""
    found = case_id(con)
    if found:
        return found
    new = str(uuid.uuid4())
    con.execute("INSERT INTO meta VALUES (?, ?)", [CASE_ID_KEY, new])
    return new


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


class Notes:
    """The notes of the case `cur` reads. Opened per use: a SQLite connection is one thread's."""

    def __init__(self, cur: Cursor) -> None:
        self.cur = cur
        self.path = path_for(case_path_of(cur))
        self.case_id = case_id(cur)
        self.db: sqlite3.Connection | None = None
        if self.path.exists():
            try:
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_SECONDS)
                rows = db.execute("SELECT value FROM meta WHERE key = ?", [CASE_ID_KEY]).fetchall()
            except sqlite3.Error:
                # Damaged or not ours: the case's own notes (if any) are read; a write says why.
                return
            if self.case_id is not None and rows and rows[0][0] == self.case_id:
                self.db = db
            else:
                db.close()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self) -> Notes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------------------
    def _rows(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        if self.db is not None:
            return self.db.execute(f"SELECT {columns} FROM {table}").fetchall()
        return self._legacy(table, columns)

    def _legacy(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        """The rows a case written before the notes moved still holds in its own table."""
        exists = self.cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ? "
                                  "AND table_schema = 'main'", [table]).fetchall()[0][0]
        if not exists:
            return []
        return [tuple(r) for r in self.cur.execute(f"SELECT {columns} FROM main.{table}").fetchall()]

    def marks(self) -> dict[int, str | None]:
        return {int(e): (None if t is None else str(t)) for e, t in self._rows("marks", "eid, tag")}

    def marked_sessions(self) -> set[int]:
        return {int(e) for (e,) in self._rows("session_marks", "first_eid")}

    def saved_filters(self) -> list[tuple[str, str]]:
        return sorted((str(n), str(f)) for n, f in self._rows("saved_filters", "name, filter"))

    # -- writing ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write, in one SQLite transaction; the file is made (and the case's older notes copied
        into it) on the first."""
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.case_id is None:
            raise NotesError(f"{self.path.with_suffix('')}: this case has no id yet; open it once with "
                             "`ashiato stats` or an ingest to give it one, then mark again")
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        except sqlite3.Error as exc:
            raise NotesError(f"{self.path}: cannot save notes ({exc})") from exc
        try:
            db.execute("BEGIN IMMEDIATE")
            for stmt in _DDL:
                db.execute(stmt)
            owner = db.execute("SELECT value FROM meta WHERE key = ?", [CASE_ID_KEY]).fetchall()
            if not owner or owner[0][0] != self.case_id:
                # New, or left by a case deleted and made again under this name: start afresh.
                for table in ("marks", "session_marks", "saved_filters", "meta"):
                    db.execute(f"DELETE FROM {table}")
                db.execute("INSERT INTO meta VALUES (?, ?)", [CASE_ID_KEY, self.case_id])
                self._copy_legacy(db)
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise NotesError(f"{self.path}: cannot save notes ({exc})") from exc
        finally:
            db.close()
        self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_SECONDS)

    def _copy_legacy(self, db: sqlite3.Connection) -> None:
        db.executemany("INSERT OR REPLACE INTO marks VALUES (?, ?, ?)",
                       [(int(e), t, None if c is None else str(c))
                        for e, t, c in self._legacy("marks", "eid, tag, created")])
        db.executemany("INSERT OR REPLACE INTO session_marks VALUES (?, ?)",
                       [(int(e), None if c is None else str(c))
                        for e, c in self._legacy("session_marks", "first_eid, created")])
        db.executemany("INSERT OR REPLACE INTO saved_filters VALUES (?, ?)",
                       self._legacy("saved_filters", "name, filter"))

    def toggle_mark(self, eid: int) -> bool:
        """Mark or unmark an event; True when it is now marked."""
        with self._writing() as db:
            if db.execute("DELETE FROM marks WHERE eid = ?", [eid]).rowcount:
                return False
            db.execute("INSERT INTO marks VALUES (?, NULL, ?)", [eid, _now()])
            return True

    def set_marks(self, eids: list[int], marked: bool) -> None:
        """Mark (or unmark) several events at once, keeping the tags of those already marked."""
        with self._writing() as db:
            if marked:
                db.executemany("INSERT OR IGNORE INTO marks VALUES (?, NULL, ?)", [(int(e), _now()) for e in eids])
            else:
                db.executemany("DELETE FROM marks WHERE eid = ?", [(int(e),) for e in eids])

    def set_tag(self, eid: int, tag: str) -> None:
        with self._writing() as db:
            db.execute("INSERT INTO marks VALUES (?, ?, ?) ON CONFLICT (eid) DO UPDATE SET tag = excluded.tag",
                       [eid, tag, _now()])

    def toggle_session(self, first_eid: int) -> bool:
        with self._writing() as db:
            if db.execute("DELETE FROM session_marks WHERE first_eid = ?", [first_eid]).rowcount:
                return False
            db.execute("INSERT INTO session_marks VALUES (?, ?)", [first_eid, _now()])
            return True

    def save_filter(self, name: str, text: str) -> None:
        with self._writing() as db:
            db.execute("INSERT INTO saved_filters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET filter = excluded.filter",
                       [name, text])

    # -- for SQL ---------------------------------------------------------------------------------------
    def expose(self) -> None:
        """Make `marks`, `session_marks` and `saved_filters` on this cursor the notes' rows: a view
        registered on a cursor hides the case's own table of that name, for that cursor only."""
        marks = self._rows("marks", "eid, tag, created")
        sessions = self._rows("session_marks", "first_eid, created")
        saved = self._rows("saved_filters", "name, filter")
        ts = pa.timestamp("us")
        self.cur.register("marks", pa.table({
            "eid": pa.array([int(r[0]) for r in marks], pa.int64()),
            "tag": pa.array([r[1] for r in marks], pa.string()),
            "created": pa.array([_timestamp(r[2]) for r in marks], ts)}))
        self.cur.register("session_marks", pa.table({
            "first_eid": pa.array([int(r[0]) for r in sessions], pa.int64()),
            "created": pa.array([_timestamp(r[1]) for r in sessions], ts)}))
        self.cur.register("saved_filters", pa.table({
            "name": pa.array([r[0] for r in saved], pa.string()),
            "filter": pa.array([r[1] for r in saved], pa.string())}))


def _timestamp(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def expose(cur: Cursor) -> Cursor:
    """`Notes.expose` on `cur`; returns it."""
    with Notes(cur) as notes:
        notes.expose()
    return cur
