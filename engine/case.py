"""Open or create a case file: one DuckDB database holding the normalised events of an investigation."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from .schema import ADDED_IN, COLUMN_TYPES, OLDEST_UPGRADABLE, ORDER_KEY, SCHEMA_VERSION, ddl


class CaseError(Exception):
    """A case file that cannot be opened or used as asked."""


class CaseBusy(CaseError):
    """Another process has the case open in a way that excludes this open: DuckDB lets one process
    write a file while no other has it open, or any number read it together."""

    def __init__(self, path: Path, pid: int | None, writing: bool) -> None:
        self.pid = pid
        self.holder = holder_of(pid)
        if writing:
            text = f"{path}: the case is being written by {self.holder}; wait for it to finish and try again"
        else:
            text = (f"{path}: the case is open in {self.holder}, which reads it; writing needs it alone: "
                    "close it there and try again")
        super().__init__(text)


_LOCK_HELD = re.compile(r"Conflicting lock is held in .*? \(PID (\d+)\)")


def holder_of(pid: int | None) -> str:
    """A process named as a responder would recognise it: its PID and command line."""
    if pid is None:
        return "another process"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        words = [a.decode("utf-8", "replace") for a in argv if a]
    except OSError:
        return f"process {pid}"
    # `python -m tui.cli …` and the `ashiato` script both read as ashiato.
    for i, w in enumerate(words):
        if w.endswith("/ashiato") or w == "ashiato" or w == "tui.cli":
            words = ["ashiato", *words[i + 1:]]
            break
    text = " ".join(words)
    return f"process {pid} ({text[:120]})" if text else f"process {pid}"


def _busy(path: Path, exc: duckdb.Error, read_only: bool) -> CaseBusy | None:
    found = _LOCK_HELD.search(str(exc))
    if found is None:
        return None
    # A read-only open is refused only by a writer; a read-write one by any other process.
    writing = read_only or "open this database in read-only mode" not in str(exc)
    return CaseBusy(path, int(found.group(1)), writing)


# DuckDB's memory limit for a case: what it caches and sorts in before spilling to disk. Work that
# needs more (the Sigma passes) raises it for its own duration, unless the user chose a limit.
DEFAULT_MEMORY_LIMIT = "512MB"


class Case:
    """A case file. One connection, owned here; every worker thread takes its own `cursor()`."""

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False,
                 memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None, wait: float = 0.0,
                 on_wait: Callable[[CaseBusy], None] | None = None) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.memory_limit = memory_limit
        # An older case opened read-only is read as it is; opened read-write once, it is upgraded.
        self.outdated = False
        if read_only and not self.path.exists():
            raise CaseError(f"{self.path}: no such case file")
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": memory_limit,
            "temp_directory": str(Path(tempfile.gettempdir()) / "ashiato-spill"),
            # The case is evidence-derived; never reach out to the network for extensions.
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": True,
        }
        if threads:
            config["threads"] = threads
        self._config = config
        self._connect(read_only, wait, on_wait)
        try:
            self._check_version()
            if not read_only:
                self._create()
            elif not self._has_table("events"):
                raise CaseError(f"{self.path}: not an ashiato case (no events table)")
        except BaseException:
            self.con.close()
            raise

    def _connect(self, read_only: bool, wait: float, on_wait: Callable[[CaseBusy], None] | None) -> None:
        config = self._config
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                self.con = duckdb.connect(str(self.path), read_only=read_only, config=config)
                break
            except duckdb.Error as exc:
                busy = _busy(self.path, exc, read_only)
                if busy is None:
                    raise CaseError(f"{self.path}: cannot open case: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise busy from None
                if on_wait is not None and not told:
                    on_wait(busy)
                    told = True
                time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
        self._session(self.con)
        self.read_only = read_only

    def reopen(self, *, read_only: bool, wait: float = 0.0) -> None:
        """Close the connection and open the case again, read-only or read-write (no cursor of the
        old connection may be in use). A process that reads a case takes the write lock only for
        the moment it writes (the TUI computing findings again); other readers keep it from doing so."""
        self.con.close()
        try:
            self._connect(read_only, wait, None)
        except CaseBusy:
            if read_only:
                raise
            self._connect(True, 0.0, None)  # back to reading, as before
            raise

    # -- setup -----------------------------------------------------------------------------------------
    def _has_table(self, name: str) -> bool:
        rows = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchall()
        return bool(rows[0][0])

    def _check_version(self) -> None:
        """A case of a newer schema is refused before anything is written to it. An older one is
        upgraded when opened read-write (`_upgrade`); read-only, it is only flagged `outdated`."""
        version = self.schema_version() if self._has_table("meta") else None
        if version is None or version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise CaseError(f"{self.path}: case written by a newer ashiato (schema {version})")
        if version < OLDEST_UPGRADABLE:
            paths = [r[0] for r in self.con.execute("SELECT path FROM sources ORDER BY source_id LIMIT 4").fetchall()]
            listed = " ".join(shlex.quote(p) for p in paths) + (" …" if len(paths) == 4 else "")
            raise CaseError(
                f"{self.path}: case written by an older ashiato (schema {version}) that this one cannot upgrade: "
                f"ingest its evidence again into a new case, e.g. `ashiato ingest new-case.duckdb {listed}`")
        self.outdated = True

    def _upgrade(self) -> None:
        """Add the columns later schemas have, filled in from each event's stored document with the
        same expressions the ingest uses, so an upgraded case answers filters as a new one does."""
        from .ingest.normalise import data_field_sql, hot_column_exprs

        version = self.schema_version() or SCHEMA_VERSION
        added = [c for v in range(version + 1, SCHEMA_VERSION + 1) for c in ADDED_IN.get(v, [])]
        exprs = hot_column_exprs(lambda key: data_field_sql("'$.\"" + key + "\"'"))
        with self.transaction() as con:
            for column in added:
                con.execute(f"ALTER TABLE events ADD COLUMN IF NOT EXISTS {column} {COLUMN_TYPES[column]}")
            if added:
                sets = ", ".join(f"{c} = {exprs[c]}" for c in added)
                con.execute(f"UPDATE events SET {sets} FROM event_data d WHERE d.eid = events.eid")
            con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
        self.outdated = False

    def _create(self) -> None:
        from . import notes

        for stmt in ddl():
            self.con.execute(stmt)
        notes.ensure_case_id(self.con)
        # Cases written before `complete` existed: every file in them was stored whole.
        self.con.execute("ALTER TABLE sources ADD COLUMN IF NOT EXISTS complete BOOLEAN DEFAULT TRUE")
        if self.schema_version() is None:
            self.con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        if self.outdated:
            self._upgrade()
        self.drop_incomplete_files()
        if self.unordered_events():
            # An ingest was interrupted after committing files but before ordering them.
            self.reorder()
        self.refresh_derived()

    def refresh_derived(self) -> None:
        """Build or bring up to date the tables derived from `events` (boots, sessions, processes),
        then the findings cached from them."""
        from . import derived, findings

        derived.refresh(self)
        findings.refresh(self)

    def schema_version(self) -> int | None:
        rows = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        return int(rows[0][0]) if rows else None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cur = self.con.cursor()
        self._session(cur)
        return cur

    @staticmethod
    def _session(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("SET TimeZone = 'UTC'")
        # DuckDB draws its own progress bar on long queries, over the CLI's and the TUI's.
        con.execute("SET enable_progress_bar = false")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Case:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    def incomplete_files(self) -> list[int]:
        has_marker = self.con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'sources' "
            "AND column_name = 'complete'").fetchall()[0][0]
        if not has_marker:  # a case from before the marker, opened read-only: every file is whole
            return []
        return [int(r[0]) for r in self.con.execute(
            "SELECT source_id FROM sources WHERE NOT complete").fetchall()]

    def needs_repair(self) -> bool:
        """True after an interrupted ingest, for a case of an older schema, or when the derived
        tables are missing or behind `events`: until the case is opened read-write once."""
        from . import derived

        return bool(self.outdated or self.incomplete_files() or self.unordered_events()
                    or derived.stale(self.con))

    def drop_incomplete_files(self) -> None:
        """Remove the events of files whose ingest was interrupted part-way: a file is in the case
        whole or not at all, and ingesting it again stores it whole."""
        ids = self.incomplete_files()
        if not ids:
            return
        with self.transaction() as con:
            con.execute("DELETE FROM event_data WHERE (eid >> 32) IN (SELECT unnest(?))", [ids])
            con.execute("DELETE FROM events WHERE source_id IN (SELECT unnest(?))", [ids])
            con.execute("DELETE FROM ingest_errors WHERE source_id IN (SELECT unnest(?))", [ids])
            con.execute("DELETE FROM sources WHERE source_id IN (SELECT unnest(?))", [ids])

    # -- ordering --------------------------------------------------------------------------------------
    def unordered_events(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM events WHERE pos IS NULL").fetchall()[0][0])

    def reorder(self) -> None:
        """Give every event its dense position and store `events` physically in that order.

        Only the part of the order the new events fall into is redone: the ordered events from the
        first one at or after the earliest new time (ties are sorted again with the new ones), plus
        those without a time (they sort last). Appending a later log renumbers just the new rows and
        the few without a time; an older log added to a case rewrites the order from its first event.
        """
        con = self.con
        with self.transaction():
            row = con.execute(
                """SELECT (SELECT max(pos) FROM events),
                          (SELECT count(*) FROM events WHERE pos IS NULL),
                          (SELECT min(ts) FROM events WHERE pos IS NULL)"""
            ).fetchall()[0]
            max_pos, n_new, min_new_ts = row
            if not n_new:
                return
            if max_pos is None:
                cut = 0
            else:
                found = con.execute(
                    "SELECT min(pos) FROM events WHERE pos IS NOT NULL AND (ts IS NULL OR ts >= ?)"
                    if min_new_ts is not None else
                    "SELECT min(pos) FROM events WHERE pos IS NOT NULL AND ts IS NULL",
                    [min_new_ts] if min_new_ts is not None else []).fetchall()[0][0]
                cut = int(found) if found is not None else int(max_pos) + 1
                # The kept part must already be dense (a repaired case may have holes in it).
                if cut and con.execute("SELECT count(*) FROM events WHERE pos < ?", [cut]).fetchall()[0][0] != cut:
                    cut = 0
            # Positions come from a sort of the key columns alone; the whole rows are then sorted
            # by that one integer. Sorting the whole rows by the key, in a window, took 2.2 times
            # as long on 10M events (bench/reorder.py).
            con.execute(
                f"""CREATE TEMP TABLE _order AS
                    SELECT eid, ? + row_number() OVER (ORDER BY {ORDER_KEY}) - 1 AS pos
                    FROM events {"WHERE pos IS NULL OR pos >= ?" if cut else ""}""",
                [cut, cut] if cut else [cut],
            )
            # The rows are written once more in their new order with their positions, and the old
            # ones deleted: no UPDATE first, whose undo copy of every row redone, held until the
            # commit, ran a 1.7M-event ingest out of memory at the 512MB limit in the sort after it.
            redone = con.sql("SELECT e.* REPLACE (o.pos AS pos) FROM events e JOIN _order o USING (eid)")
            if cut:
                # Only the redone part is re-inserted, in order, so the table stays physically sorted.
                con.execute("CREATE TEMP TABLE _old AS SELECT rowid AS r FROM events WHERE pos IS NULL OR pos >= ?",
                            [cut])
                con.execute(f"INSERT INTO events SELECT * FROM ({redone.sql_query()}) ORDER BY pos")
                con.execute("DELETE FROM events WHERE rowid IN (SELECT r FROM _old)")
                con.execute("DROP TABLE _old")
            else:
                con.execute(f"CREATE TABLE _events_sorted AS SELECT * FROM ({redone.sql_query()}) ORDER BY pos")
                con.execute("DROP TABLE events")
                con.execute("ALTER TABLE _events_sorted RENAME TO events")
            con.execute("DROP TABLE _order")

    # -- small facts -----------------------------------------------------------------------------------
    def event_count(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM events").fetchall()[0][0])

    def field_names(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT name FROM fields ORDER BY name").fetchall()]



def open_for_reading(path: str | os.PathLike[str], **options: Any) -> Case:
    """The case opened read-only, so that other processes can read it at the same time (the TUI
    beside `ashiato query`). It is first opened read-write once, when nobody else has it, for what
    an open does then: repair an interrupted ingest, upgrade an older case, bring the derived
    tables and findings up to date, give it an id for its notes."""
    # Read by another process now: read it as it is (a writer refuses the read-only open too).
    with contextlib.suppress(CaseBusy):
        Case(path, **options).close()
    return Case(path, read_only=True, **options)
