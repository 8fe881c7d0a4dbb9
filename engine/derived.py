"""Tables derived from `events` (boots, sessions), kept current as files are added.

Each carries its version in `meta`; a case whose derived tables are missing, of another version,
or behind its sources (files added since) has them built or brought up to date when it is opened
read-write: the ingest does it after ordering the new events, so a case opened read-only is
normally current already.

An update is proportional to what was added: the epochs are worked out again (a few marker rows a
boot); on a host whose epochs did not change only the sessions whose LogonIds the new events name
are rebuilt, and only the processes that started shortly before the new events or after them
(engine/lineage_update.py); a host whose epochs changed (a reboot inside the new file's time) is
rebuilt whole.
"""

from __future__ import annotations

import time
from typing import Any

import duckdb

from . import boots, lineage, lineage_update, sessions

Cursor = duckdb.DuckDBPyConnection
VERSION_KEY = "derived_version"
VERSION = f"boots1-sessions{sessions.VERSION}-lineage{lineage.VERSION}"
# Files already reflected in the derived tables.
SOURCES_DDL = "CREATE TABLE IF NOT EXISTS derived_sources (source_id INTEGER)"
# The process marks the lineage was built with: a changed marks file rebuilds the lineage only.
MARKS_KEY = "process_marks"
MARKS_ERROR_KEY = "process_marks_error"


def _marks() -> tuple[lineage.Marks, str | None]:
    """The marks to build with, and what was wrong with the user's file (the defaults are used then:
    a typo in a marks file must not keep a case from opening)."""
    try:
        return lineage.load_marks(), None
    except lineage.MarksError as exc:
        return lineage.load_marks(lineage.DEFAULT_MARKS), str(exc)


def _meta(cur: Cursor, key: str) -> str | None:
    rows = cur.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
    return str(rows[0][0]) if rows else None


def _has_table(cur: Cursor, name: str) -> bool:
    return bool(cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [name]).fetchall()[0][0])


def stale(cur: Cursor) -> bool:
    """True when the derived tables need building or updating (a read-only case cannot do it)."""
    if not _has_table(cur, "meta") or not _has_table(cur, "events"):
        return False
    if not all(_has_table(cur, t) for t in ("sessions", "boots", "processes", "derived_sources")):
        return True
    if _meta(cur, VERSION_KEY) != VERSION or _meta(cur, MARKS_KEY) != _marks()[0].digest():
        return True
    return bool(cur.execute("SELECT count(*) FROM sources WHERE source_id NOT IN "
                            "(SELECT source_id FROM derived_sources)").fetchall()[0][0]
                or cur.execute("SELECT count(*) FROM derived_sources WHERE source_id NOT IN "
                               "(SELECT source_id FROM sources)").fetchall()[0][0])


def refresh(case: object, *, full: bool = False) -> float:
    """Bring the derived tables up to date; seconds spent (0 when already current)."""
    from .case import Case

    assert isinstance(case, Case)
    con = case.con
    if not full and not stale(con):
        return 0.0
    started = time.perf_counter()
    marks, marks_error = _marks()
    with case.transaction():
        con.execute(SOURCES_DDL)
        version = con.execute("SELECT value FROM meta WHERE key = ?", [VERSION_KEY]).fetchall()
        removed = con.execute("SELECT count(*) FROM derived_sources WHERE source_id NOT IN "
                              "(SELECT source_id FROM sources)").fetchall()[0][0]
        rebuild = (full or not version or version[0][0] != VERSION or removed
                   or not all(_has_table(con, t) for t in ("sessions", "boots", "processes")))
        if rebuild:
            con.execute("DROP TABLE IF EXISTS sessions")
            con.execute("DROP TABLE IF EXISTS session_events")
            con.execute("DROP TABLE IF EXISTS processes")
            con.execute("DROP TABLE IF EXISTS process_events")
            boots.store(con, boots.compute(con))
            sessions.build(con)
            lineage.build(con, marks=marks)
        else:
            _update(con, marks)
            if _meta(con, MARKS_KEY) != marks.digest():
                con.execute("DELETE FROM process_events")
                con.execute("DELETE FROM processes")
                lineage.build(con, marks=marks)
        con.execute("DELETE FROM derived_sources")
        con.execute("INSERT INTO derived_sources SELECT source_id FROM sources")
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [VERSION_KEY, VERSION])
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [MARKS_KEY, marks.digest()])
        con.execute("DELETE FROM meta WHERE key = ?", [MARKS_ERROR_KEY])
        if marks_error:
            con.execute("INSERT INTO meta VALUES (?, ?)", [MARKS_ERROR_KEY, marks_error])
    return time.perf_counter() - started


def _update(con: Cursor, marks: lineage.Marks | None = None) -> None:
    new = [int(r[0]) for r in con.execute(
        "SELECT source_id FROM sources WHERE source_id NOT IN (SELECT source_id FROM derived_sources)").fetchall()]
    if not new:
        return
    # Positions of old events shift when new ones sort before them, so epochs are compared by
    # what a session reads of them: number, start and end (a System log added after the Security
    # one brings the 6006 that ends a boot by shutdown instead of by reboot).
    def described(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
        out: dict[str, list[tuple[Any, ...]]] = {}
        for host, *rest in sorted(rows, key=lambda r: (r[0], r[1])):
            out.setdefault(host, []).append(tuple(rest))
        return out

    shape = "SELECT host, boot, start_reason, start_ts, end_ts, end_reason FROM boots"
    before = described(con.execute(shape).fetchall())
    boots.store(con, boots.compute(con))
    after = described(con.execute(shape).fetchall())
    changed = {h for h in set(before) | set(after) if before.get(h) != after.get(h)}
    con.execute("CREATE OR REPLACE TEMP TABLE _new AS SELECT eid, host, pos, channel, event_id, target_logon_id, "
                "subject_logon_id, linked_logon_id FROM events WHERE source_id IN (SELECT unnest(?))", [new])
    con.execute("CREATE OR REPLACE TEMP TABLE _new_events AS SELECT eid FROM _new")
    con.execute("CREATE OR REPLACE TEMP TABLE _changed (host VARCHAR)")
    if changed:
        con.execute("INSERT INTO _changed SELECT unnest(?)", [sorted(changed)])
    # The sessions the new events define (their logons, privileges, logoffs), in their epochs; their
    # linked partners; every session of a host whose epochs changed; and the RDP sessions of hosts
    # that got RDP events by account. The rest of what the new events name only grows (_delta).
    defining = ("(SELECT host, pos, unnest(CASE WHEN event_id = 4624 THEN [target_logon_id, linked_logon_id] "
                "WHEN event_id = 4672 THEN [subject_logon_id] ELSE [target_logon_id] END) AS lid "
                f"FROM _new WHERE {sessions.DEFINING})")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _scope AS
        SELECT DISTINCT host, boot, logon_id FROM (
            SELECT host, boot, lid AS logon_id FROM {boots.boot_of_sql(defining)}
            WHERE lid IS NOT NULL AND lid <> 0
            UNION ALL SELECT s.host, s.boot, s.logon_id FROM sessions s WHERE s.host IN (SELECT host FROM _changed)
            UNION ALL SELECT e.host, b.boot, e.target_logon_id FROM events e ASOF JOIN boots b
                ON e.host = b.host AND e.pos >= b.start_pos
                WHERE e.host IN (SELECT host FROM _changed) AND e.channel = 'Security' AND e.event_id = 4624
            UNION ALL SELECT s.host, s.boot, s.logon_id FROM sessions s
                WHERE s.logon_type IN {sessions.RDP_TYPES} AND s.host IN (SELECT e.host FROM events e
                    WHERE e.source_id IN (SELECT unnest(?)) AND ({sessions.RDP_BY_ACCOUNT}
                          OR (e.channel = 'Security' AND e.event_id = 4624
                              AND e.logon_type IN {sessions.RDP_TYPES}))))""", [new])
    # Both halves of a linked pair: a new file may name only the id that is not the row's own.
    con.execute("""INSERT INTO _scope
                   SELECT s.host, s.boot, s.linked_logon_id FROM sessions s JOIN _scope c
                       ON c.host = s.host AND c.boot = s.boot AND c.logon_id = s.logon_id
                       WHERE s.linked_logon_id IS NOT NULL
                   UNION ALL
                   SELECT s.host, s.boot, s.logon_id FROM sessions s JOIN _scope c
                       ON c.host = s.host AND c.boot = s.boot AND c.logon_id = s.linked_logon_id""")
    # The sessions the new events only add activity to (SYSTEM's above all): their counts grow.
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _delta AS
        SELECT DISTINCT s.host, s.boot, s.logon_id
        FROM {boots.boot_of_sql("(SELECT host, pos, unnest([target_logon_id, subject_logon_id]) AS lid FROM _new)")} n
        JOIN sessions s ON s.host = n.host AND s.boot = n.boot AND (s.logon_id = n.lid OR s.linked_logon_id = n.lid)
        WHERE n.lid IS NOT NULL AND n.lid <> 0 AND s.host NOT IN (SELECT host FROM _changed)
          AND NOT EXISTS (SELECT 1 FROM _scope c WHERE c.host = s.host AND c.boot = s.boot
                          AND (c.logon_id = s.logon_id OR c.logon_id = s.linked_logon_id))""")
    # A host whose epochs changed: its old rows may carry boot numbers that no longer exist.
    con.execute("DELETE FROM sessions WHERE host IN (SELECT host FROM _changed)")
    con.execute("DELETE FROM session_events WHERE host IN (SELECT host FROM _changed)")
    # The linked partners of new 4624s come in through their own TargetLinkedLogonId.
    sessions.build(con, scoped=True)
    # Lineage: in the boots the new events fall in, the processes from a little before them on are
    # made again (lineage_update says why that suffices); a host whose epochs changed is built again.
    touched = {(str(h), int(b)) for h, b in con.execute(
        f"SELECT DISTINCT host, boot FROM {boots.boot_of_sql('(SELECT host, pos FROM _new WHERE host IS NOT NULL)')}"
    ).fetchall() if h not in changed}
    lineage_update.update(con, sorted(touched), "_new_events", marks=marks)
    if changed:
        lineage.build(con, epochs=[(h, None) for h in sorted(changed)], marks=marks)
    for name in ("_new", "_new_events", "_changed", "_scope", "_delta"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
