"""Lineage kept current when a file is added, in time proportional to what the file changes.

A whole boot is not rebuilt: in each boot the new events touch, only the processes that started
after a cut are (`processes` rows dropped and made again from their events), and what the new
events do to the older ones is applied to them (exits, linked events, counts, the lsass mark,
children, marks below). The result is the same as a full `lineage.build` of the case.

Why a cut works. Let T be the earliest time of the boot's new process events (event time, and
Sysmon's UtcTime), w = MERGE_SECONDS:
  - a Sysmon 1 / 4688 pair is merged when each is the other's nearest within w. New events can only
    change the nearest of an event within w of them (>= T - w), so only pairs with a member there
    change, and their other member is >= T - 2w. Every process that may change, appear or split off
    therefore starts at or after CUT = T - 2w; a process that started before CUT is the same node;
  - a process's parent started before it, and exits or links that change do so at or after CUT, so
    a process that started before CUT keeps its parent, with one exception: a Sysmon process whose
    ParentProcessGuid names none yet, when a new process has that GUID (it then names a process that
    started after it: bad data, noted). A boot where that happens is rebuilt whole (rare);
  - a Security event is linked by PID and time to the latest process started before it: events at
    or after CUT are linked again; a process's exit before CUT stands; Sysmon events are linked by
    GUID: those of the rebuilt processes, and the new ones.
Pairs are ranked over the creations from CUT - w on, which is every candidate of a member at CUT
or later; pairs with both members before T - w are kept as they were.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from . import boots
from .lineage import (
    LSASS_MARK,
    MERGE_SECONDS,
    SYSMON,
    Marks,
    _link_parents,
    _scope_clause,
    _store,
    build,
    counts_sql,
    creations_sql,
    exits_4689_sql,
    load_marks,
    marked_below_sql,
    nodes_sql,
    ranked_pairs_sql,
    security_links_sql,
    security_source_sql,
    sysmon_exits_sql,
)

Cursor = duckdb.DuckDBPyConnection
_TEMP = ("_lu_ep", "_lu_sources", "_lu_taken", "_lu_old", "_lu_cand", "_lu_fixed", "_lu_exit", "_lu_all", "_lu_sec", "_lu_gone",
         "_lu_touched", "_lu_minus", "_lu_plus", "_lu_counts", "_pc", "_merge", "_nodes", "_exit", "_ended",
         "_parent", "_pe", "_lineage_ranges")
# The new events that can change a process: Sysmon's, and Security's that name a PID.
_RELEVANT = (f"(e.channel = '{SYSMON}' OR (e.channel = 'Security' AND "
             "(e.process_pid IS NOT NULL OR e.event_id BETWEEN 5154 AND 5158)))")


def _ts(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def _us(seconds: float) -> str:
    return f"to_microseconds({int(seconds * 1_000_000)})"


def update(cur: Cursor, epochs: list[tuple[str, int]], new: str = "_new_events", *,
           marks: Marks | None = None) -> None:
    """Bring `processes` and `process_events` up to date for the (host, boot) `epochs` after the
    events whose eids are in table `new` were added (they are in `events`, ordered, with `boots`
    current). The caller holds the transaction."""
    marks = marks or load_marks()
    if not epochs:
        return
    w = MERGE_SECONDS
    cur.execute("CREATE OR REPLACE TEMP TABLE _lu_scope (host VARCHAR, boot INTEGER)")
    cur.executemany("INSERT INTO _lu_scope VALUES (?, ?)", [[h, b] for h, b in sorted(set(epochs))])
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _lu_ep AS
        SELECT b.host, b.boot, b.start_pos, b.end_pos, t.tmin,
               t.tmin - {_us(2 * w)} AS cut, t.tmin - {_us(w)} AS near, t.tmin - {_us(3 * w)} AS pool
        FROM boots b JOIN _lu_scope s USING (host, boot)
        JOIN (SELECT host, boot, min(least(ts, coalesce(utc_time, ts))) AS tmin FROM {boots.boot_of_sql(
            f'(SELECT e.host, e.pos, e.ts, e.utc_time FROM events e WHERE e.eid IN (SELECT eid FROM {new}) '
            f'AND {_RELEVANT})')} GROUP BY host, boot) t USING (host, boot)""")
    cur.execute("DROP TABLE _lu_scope")
    cur.execute("CREATE OR REPLACE TEMP TABLE _lineage_ranges AS SELECT host, boot, start_pos, end_pos FROM _lu_ep")
    if not cur.execute("SELECT count(*) FROM _lu_ep").fetchall()[0][0]:
        _drop(cur)
        return
    h = _scope_clause(cur, "e", True)
    # The earliest cut and pool start, as literals: a constant lets the scans skip by zone maps.
    cut, pool = (_ts(v) for v in cur.execute("SELECT min(cut), min(pool) FROM _lu_ep").fetchall()[0])
    after_cut = f"{h} AND e.ts >= {cut}"
    # The processes to make again (started at or after the cut), and the others of those boots,
    # narrow, as parents and as what Security events and exits are linked to.
    cur.execute("""CREATE OR REPLACE TEMP TABLE _lu_old AS
        SELECT p.node, p.host, p.boot, p.parent, p.process_guid, p.sysmon_eid, p.security_eid, p.start,
               len(p.marks) > 0 AS marked
        FROM processes p JOIN _lu_ep ep USING (host, boot) WHERE p.start >= ep.cut""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _lu_cand AS
        SELECT p.node, p.host, p.boot, NULL::BIGINT AS pos, p.process_guid, p.pid, lower(p.image) AS limage,
               p.start, p.sources, p.sysmon_eid, p.security_eid, p.edge, p.parent_guid,
               CASE WHEN p.end_reason = 'exit' THEN p."end" END AS old_exit, ep.cut
        FROM processes p JOIN _lu_ep ep USING (host, boot) WHERE p.start < ep.cut""")
    # (IN over a list holding NULL is never FALSE: the lists leave them out.)
    cur.execute("""CREATE OR REPLACE TEMP TABLE _lu_sources AS SELECT eid FROM (
        SELECT sysmon_eid AS eid FROM _lu_old UNION ALL SELECT security_eid FROM _lu_old) WHERE eid IS NOT NULL""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _lu_taken AS SELECT eid FROM (
        SELECT sysmon_eid AS eid FROM _lu_cand UNION ALL SELECT security_eid FROM _lu_cand) WHERE eid IS NOT NULL""")
    # The creations from the pool's start: those of the older processes are `taken`; those that
    # make the new nodes are `form`.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _pc AS
        SELECT *, (start >= cut AND NOT taken)
                  OR eid IN (SELECT eid FROM _lu_sources) AS form
        FROM (SELECT c.*, ep.cut, ep.near,
                     c.eid IN (SELECT eid FROM _lu_taken) AS taken
              FROM {boots.boot_of_sql(creations_sql(f"{h} AND coalesce(e.utc_time, e.ts) >= {pool}"))} c
              JOIN _lu_ep ep USING (host, boot)
              WHERE c.start >= ep.pool)""")
    # A Sysmon process whose parent GUID named nothing, when a new one has it: rebuild that boot.
    fallback = [(str(r[0]), int(r[1])) for r in cur.execute("""
        SELECT DISTINCT c.host, c.boot FROM _lu_cand c
        JOIN (SELECT host, process_guid FROM _pc WHERE form AND sysmon) g
          ON g.host = c.host AND g.process_guid = c.parent_guid
        WHERE c.sysmon_eid IS NOT NULL AND c.edge IN ('pid+time', 'unresolved')
          AND NOT EXISTS (SELECT 1 FROM (SELECT host, process_guid FROM _lu_cand UNION ALL
                                         SELECT host, process_guid FROM _lu_old) x
                          WHERE x.host = c.host AND x.process_guid = c.parent_guid)""").fetchall()]
    if fallback:
        _drop(cur)
        build(cur, epochs=list(fallback), marks=marks)
        rest = [e for e in epochs if e not in fallback]
        if rest:
            update(cur, rest, new, marks=marks)
        return
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _merge AS
        SELECT r.s_eid, r.t_eid FROM ({ranked_pairs_sql()}) r
        JOIN _pc s ON s.eid = r.s_eid JOIN _pc t ON t.eid = r.t_eid
        WHERE r.rt = 1 AND r.rs = 1 AND NOT s.taken AND NOT t.taken AND greatest(r.s_start, r.t_start) >= s.near
        UNION ALL
        SELECT o.sysmon_eid, o.security_eid FROM _lu_old o JOIN _pc s ON s.eid = o.sysmon_eid
        JOIN _pc t ON t.eid = o.security_eid WHERE s.start < s.near AND t.start < s.near""")
    # A GUID keeps the node it has outside what is made again (its first record is older).
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _nodes AS {nodes_sql('''(
        SELECT * FROM _pc WHERE form AND NOT (sysmon AND EXISTS (
            SELECT 1 FROM processes p WHERE p.host = _pc.host AND p.process_guid = _pc.process_guid
            AND p.node NOT IN (SELECT node FROM _lu_old))))''')}""")
    # Exits: of the new nodes, and again of the others that had not exited by the cut.
    cur.execute("""CREATE OR REPLACE TEMP TABLE _lu_all AS
        SELECT node, host, boot, process_guid, pid, limage, start, FALSE AS old FROM _nodes
        UNION ALL SELECT node, host, boot, process_guid, pid, limage, start, TRUE FROM _lu_cand
        WHERE old_exit IS NULL OR old_exit >= cut""")
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _lu_exit AS
        SELECT n.node, min(x.start) AS exit_at FROM {sysmon_exits_sql(f"{h} AND coalesce(e.utc_time, e.ts) >= {cut}")} x
        JOIN _lu_all n ON n.host = x.host AND n.process_guid = x.process_guid AND x.start >= n.start
        GROUP BY n.node
        UNION ALL
        SELECT n.node, min(x.ts) FROM (SELECT x.* FROM {exits_4689_sql(after_cut)} x JOIN _lu_ep ep USING (host, boot)
                                       WHERE x.ts >= ep.cut) x
        ASOF JOIN (SELECT node, host, boot, pid, limage, start FROM _nodes
                   UNION ALL SELECT node, host, boot, pid, limage, start FROM _lu_cand) n
            ON n.host = x.host AND n.boot = x.boot AND n.pid = x.pid AND x.ts >= n.start
        WHERE x.limage IS NULL OR n.limage IS NULL OR x.limage = n.limage
        GROUP BY n.node""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _ended AS
        SELECT n.*, x.exit_at AS exited, NULL::BIGINT AS exit_eid
        FROM _nodes n LEFT JOIN (SELECT node, min(exit_at) AS exit_at FROM _lu_exit GROUP BY node) x USING (node)""")
    cur.execute("""ALTER TABLE _lu_cand ADD COLUMN exited TIMESTAMP""")
    cur.execute("""UPDATE _lu_cand SET exited = CASE WHEN old_exit < cut THEN old_exit ELSE
                       (SELECT min(exit_at) FROM _lu_exit x WHERE x.node = _lu_cand.node) END""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _lu_all AS
        SELECT node, host, boot, process_guid, pid, limage, start, exited, sources, sysmon_eid, security_eid
        FROM _ended
        UNION ALL SELECT node, host, boot, process_guid, pid, limage, start, exited, sources, sysmon_eid, security_eid
        FROM _lu_cand""")
    _link_parents(cur, "_ended", "_lu_all")
    _link(cur, h, after_cut, new)
    # What leaves: the marked processes made again no longer count above them (old parents).
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _lu_minus AS {marked_below_sql(
        'SELECT node, parent FROM _lu_old WHERE marked')}""")
    gone_parents = "SELECT parent FROM _lu_old WHERE parent IS NOT NULL"
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _lu_gone AS SELECT DISTINCT parent AS node FROM ({gone_parents})")
    cur.execute("DELETE FROM processes WHERE node IN (SELECT node FROM _lu_old)")
    _store(cur, True, marks, cands="_lu_all", subtree=False)
    _older(cur)
    _drop(cur)


def _link(cur: Cursor, h: str, after_cut: str, new: str) -> None:
    """`_pe`: the links of the new nodes, of the new events, and of every Security event at or
    after the cut; the old rows they replace are dropped, and the older processes whose links
    changed are kept in `_lu_touched`."""
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _lu_sec AS
        SELECT x.* FROM {security_source_sql(after_cut)} x JOIN _lu_ep ep USING (host, boot) WHERE x.ts >= ep.cut""")
    sysmon = f"e.channel = '{SYSMON}' AND e.event_id <> 1 AND e.process_guid IS NOT NULL {h}"
    target = f"e.channel = '{SYSMON}' AND e.event_id IN (8, 10) AND e.target_guid IS NOT NULL {h}"
    role = "CASE WHEN e.event_id = 5 THEN 'exit' ELSE 'actor' END"
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _pe AS
        SELECT e.eid, n.node, {role} AS role
        FROM events e JOIN _ended n ON n.host = e.host AND n.process_guid = e.process_guid WHERE {sysmon}
        UNION ALL
        SELECT e.eid, n.node, {role}
        FROM events e JOIN _lu_cand n ON n.host = e.host AND n.process_guid = e.process_guid
        WHERE {sysmon} AND e.eid IN (SELECT eid FROM {new})
        UNION ALL
        SELECT e.eid, n.node, 'target'
        FROM events e JOIN _ended n ON n.host = e.host AND n.process_guid = e.target_guid WHERE {target}
        UNION ALL
        SELECT e.eid, n.node, 'target'
        FROM events e JOIN _lu_cand n ON n.host = e.host AND n.process_guid = e.target_guid
        WHERE {target} AND e.eid IN (SELECT eid FROM {new})
        UNION ALL SELECT sysmon_eid, node, 'self' FROM _ended WHERE sysmon_eid IS NOT NULL
        UNION ALL SELECT security_eid, node, 'self' FROM _ended WHERE security_eid IS NOT NULL""")
    cur.execute(f"INSERT INTO _pe {security_links_sql('_lu_sec', '_lu_all')}")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _lu_touched AS
        SELECT DISTINCT node FROM (
            SELECT node FROM process_events WHERE eid IN (SELECT eid FROM _lu_sec)
            UNION ALL SELECT node FROM _pe)
        WHERE node IN (SELECT node FROM _lu_cand)""")
    cur.execute("DELETE FROM process_events WHERE node IN (SELECT node FROM _lu_old)")
    cur.execute("DELETE FROM process_events WHERE eid IN (SELECT eid FROM _lu_sec)")


def _older(cur: Cursor) -> None:
    """Apply to the processes that were not made again what the new ones change for them."""
    # Exits (an end by exit moves; one by the boot's end stays when it has not exited).
    cur.execute("""UPDATE processes SET
            "end" = coalesce(c.exited, CASE WHEN b.end_reason IN ('shutdown', 'reboot') THEN b.end_ts END),
            end_reason = CASE WHEN c.exited IS NOT NULL THEN 'exit' ELSE coalesce(b.end_reason, 'open') END
        FROM _lu_cand c LEFT JOIN boots b ON b.host = c.host AND b.boot = c.boot
        WHERE processes.node = c.node AND c.exited IS DISTINCT FROM c.old_exit""")
    # Counts and the lsass mark of those whose links changed.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _lu_counts AS
        SELECT t.node, c.* EXCLUDE (node), len(p.marks) > 0 AS was_marked FROM _lu_touched t
        JOIN processes p ON p.node = t.node
        LEFT JOIN ({counts_sql('(SELECT * FROM process_events WHERE node IN (SELECT node FROM _lu_touched))')}) c
            ON c.node = t.node""")
    mark = LSASS_MARK.format(masks="c.lsass_masks")
    cur.execute(f"""UPDATE processes SET
            events = coalesce(c.events, 0), network = coalesce(c.network, 0), files = coalesce(c.files, 0),
            registry = coalesce(c.registry, 0), image_loads = coalesce(c.image_loads, 0), dns = coalesce(c.dns, 0),
            pipes = coalesce(c.pipes, 0), process_access = coalesce(c.process_access, 0),
            lsass_access = coalesce(c.lsass_access, 0), lsass_masks = coalesce(c.lsass_masks, []),
            accessed_by = coalesce(c.accessed_by, 0),
            marks = list_concat(list_filter(processes.marks, lambda m: NOT starts_with(m, 'opened lsass.exe (')),
                                CASE WHEN coalesce(c.lsass_access, 0) > 0 THEN [{mark}] ELSE [] END)
        FROM _lu_counts c WHERE processes.node = c.node""")
    # Marked processes below: the new nodes count their own subtrees (all new: a child starts after
    # its parent); the older ones lose what left and gain what came, or a mark that came or went.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _lu_plus AS {marked_below_sql(
        '''SELECT node, parent FROM processes WHERE node IN (SELECT node FROM _ended) AND len(marks) > 0
           UNION ALL SELECT p.node, p.parent FROM processes p JOIN _lu_counts c USING (node)
           WHERE len(p.marks) > 0 AND NOT c.was_marked''')}""")
    cur.execute(f"""INSERT INTO _lu_minus {marked_below_sql(
        '''SELECT p.node, p.parent FROM processes p JOIN _lu_counts c USING (node)
           WHERE len(p.marks) = 0 AND c.was_marked''')}""")
    cur.execute("""UPDATE processes SET subtree_marks = p.n FROM _lu_plus p
                   WHERE p.node = processes.node AND processes.node IN (SELECT node FROM _ended)""")
    cur.execute("""UPDATE processes SET subtree_marks = processes.subtree_marks + d.n FROM (
                       SELECT node, sum(n) AS n FROM (SELECT node, n FROM _lu_plus UNION ALL
                                                      SELECT node, -n FROM _lu_minus) GROUP BY node) d
                   WHERE d.node = processes.node AND processes.node IN (SELECT node FROM _lu_cand)""")
    # Children, of the older parents that lost or gained one.
    cur.execute("""UPDATE processes SET children = k.n FROM (
                       SELECT g.node, count(c.node) AS n FROM (
                           SELECT node FROM _lu_gone UNION SELECT parent FROM _parent WHERE parent IS NOT NULL) g
                       LEFT JOIN processes c ON c.parent = g.node GROUP BY g.node) k
                   WHERE k.node = processes.node AND processes.node IN (SELECT node FROM _lu_cand)""")


def _drop(cur: Cursor) -> None:
    for name in _TEMP:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
