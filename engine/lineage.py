"""Process lineage: one node per real process, each linked to its parent with how the link was made.

Nodes (domain.md §3): a Sysmon 1 is a node keyed by (host, ProcessGuid); a 4688 by (host, boot
epoch, PID, start). A 4688 and a Sysmon 1 of the same process (same host and PID, the same image
ignoring case, starts within `MERGE_SECONDS`) are one node carrying both sources. A node's id
(`node`) is the eid of the event that made it (the Sysmon 1 of a merged pair).

Edges, child → parent, each with its provenance in `edge`:
  guid      Sysmon's ParentProcessGuid names a process of the case (certain);
  merged    the same, for a node seen by Sysmon 1 and 4688 alike;
  pid+time  the latest process of the host and boot with the parent's PID that started before the
            child and had not exited by then (4689 / Sysmon 5) — only when no GUID says otherwise;
  unresolved the parent is not in the log (an orphan root; the PID and image the child recorded).
A parent always started before its child (ties broken by the earlier event), so the graph has no
cycle whatever the data says: a GUID that names a later process is left unresolved and noted.

Every other event that names a process is linked to its node in `process_events` (Sysmon events by
ProcessGuid, Sysmon 8/10 also as target; Security events by host, boot, PID and time), and counted
per kind on the node. Marks (`engine/process_marks.toml`, extendable per user) say why a process
deserves a look; `subtree_marks` tells a collapsed node that something below it is marked.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb

from . import boots
from .filters import column_types, glob_like

Cursor = duckdb.DuckDBPyConnection
VERSION = "1"
SYSMON = "Microsoft-Windows-Sysmon/Operational"
MERGE_SECONDS = 2.0
STORE_CHUNK = 50_000  # nodes stored per statement (their text is wide)
DEFAULT_MARKS = Path(__file__).with_name("process_marks.toml")
EDGES = ("guid", "merged", "pid+time", "unresolved")

DDL = [
    """CREATE TABLE IF NOT EXISTS processes (
  node BIGINT,
  host VARCHAR,
  boot INTEGER,
  process_guid VARCHAR,
  pid BIGINT,
  image VARCHAR,
  command_line VARCHAR,
  "user" VARCHAR,
  logon_id UBIGINT,
  start TIMESTAMP,
  "end" TIMESTAMP,
  end_reason VARCHAR,
  parent BIGINT,
  parent_guid VARCHAR,
  parent_pid BIGINT,
  parent_image VARCHAR,
  parent_command_line VARCHAR,
  parent_start TIMESTAMP,
  edge VARCHAR,
  edge_note VARCHAR,
  sources VARCHAR[],
  sysmon_eid BIGINT,
  security_eid BIGINT,
  children INTEGER,
  marks VARCHAR[],
  subtree_marks INTEGER,
  events INTEGER,
  network INTEGER,
  files INTEGER,
  registry INTEGER,
  image_loads INTEGER,
  dns INTEGER,
  pipes INTEGER,
  process_access INTEGER,
  lsass_access INTEGER,
  lsass_masks VARCHAR[],
  accessed_by INTEGER
)""",
    # The events of each process: `self` (what made the node), `actor`, `target` (Sysmon 8/10 opened
    # or injected into it), `exit`.
    "CREATE TABLE IF NOT EXISTS process_events (eid BIGINT, node BIGINT, role VARCHAR)",
]

# Events Sysmon links by ProcessGuid, by kind (the node's counts).
_KINDS = {
    "network": f"(x.channel = '{SYSMON}' AND x.event_id = 3) OR (x.channel = 'Security' AND x.event_id BETWEEN 5154 AND 5158)",
    "files": f"x.channel = '{SYSMON}' AND x.event_id IN (2, 11, 15, 23, 26, 27, 28, 29)",
    "registry": f"x.channel = '{SYSMON}' AND x.event_id IN (12, 13, 14)",
    "image_loads": f"x.channel = '{SYSMON}' AND x.event_id IN (6, 7)",
    "dns": f"x.channel = '{SYSMON}' AND x.event_id = 22",
    "pipes": f"x.channel = '{SYSMON}' AND x.event_id IN (17, 18)",
    "process_access": f"x.channel = '{SYSMON}' AND x.event_id IN (8, 10)",
}
_LSASS = (f"((x.channel = '{SYSMON}' AND x.event_id IN (8, 10) AND ends_with(lower(x.target_image), '\\lsass.exe')) "
          "OR (x.channel = 'Security' AND x.event_id IN (4656, 4663) "
          "AND ends_with(lower(x.object_name), '\\lsass.exe')))")


def create(cur: Cursor) -> None:
    for stmt in DDL:
        cur.execute(stmt)


# -- marks -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Marks:
    rules: tuple[tuple[str, str | None, str], ...]  # (image glob, args regex, reason)
    parents: dict[str, tuple[str, ...]]  # group -> image globs
    children: tuple[str, ...]

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(repr((self.rules, sorted(self.parents.items()), self.children)).encode()).hexdigest()[:16]


class MarksError(ValueError):
    pass


def user_marks_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("ashiato")) / "process_marks.toml"


def load_marks(*paths: Path | None) -> Marks:
    """The project's marks, then each existing file in turn (the user's config dir when none given):
    their [[mark]] entries are added, `disable` drops marks by reason, [parents] groups are extended."""
    chosen = [p for p in (paths or (DEFAULT_MARKS, user_marks_path())) if p is not None]
    if DEFAULT_MARKS not in chosen:
        chosen.insert(0, DEFAULT_MARKS)
    rules: list[tuple[str, str | None, str]] = []
    parents: dict[str, list[str]] = {}
    children: list[str] = []
    for path in chosen:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MarksError(f"{path}: {exc}") from None
        unknown = set(data) - {"mark", "parents", "disable"}
        if unknown:
            raise MarksError(f"{path}: unknown key {sorted(unknown)[0]!r} (known: mark, parents, disable)")
        for n, mark in enumerate(data.get("mark", []), 1):
            bad = set(mark) - {"image", "args", "reason"}
            if bad or "image" not in mark or "reason" not in mark:
                raise MarksError(f"{path}: mark #{n} needs image and reason (and optionally args)"
                                 + (f"; unknown key {sorted(bad)[0]!r}" if bad else ""))
            args = mark.get("args")
            if args is not None:
                try:
                    re.compile(args)
                except re.error as exc:
                    raise MarksError(f"{path}: mark #{n} ({mark['reason']}): bad args pattern: {exc}") from None
            rules.append((str(mark["image"]).lower(), args, str(mark["reason"])))
        disabled = set(data.get("disable", []))
        rules = [r for r in rules if r[2] not in disabled]
        for group, images in data.get("parents", {}).items():
            if group == "children":
                children += [str(i).lower() for i in images]
            else:
                parents.setdefault(group, []).extend(str(i).lower() for i in images)
    return Marks(tuple(rules), {g: tuple(v) for g, v in parents.items()}, tuple(children))


# -- building --------------------------------------------------------------------------------------
def _scope_clause(cur: Cursor, alias: str, scoped: bool) -> str:
    """SQL keeping the events of `alias` in the epochs being rebuilt (temp table _lineage_ranges):
    by host alone when those are every epoch of their hosts (a range test on 10M rows is dearer)."""
    if not scoped:
        return ""
    partial = cur.execute("""SELECT count(*) FROM boots b WHERE b.host IN (SELECT host FROM _lineage_ranges)
                             AND NOT EXISTS (SELECT 1 FROM _lineage_ranges r WHERE r.host = b.host
                                             AND r.boot = b.boot)""").fetchall()[0][0]
    if not partial:
        return f"AND {alias}.host IN (SELECT host FROM _lineage_ranges)"
    return (f"AND {alias}.host IN (SELECT host FROM _lineage_ranges) "
            f"AND {alias}.pos >= (SELECT min(start_pos) FROM _lineage_ranges) "
            f"AND {alias}.pos <= (SELECT max(end_pos) FROM _lineage_ranges) "
            f"AND EXISTS (SELECT 1 FROM _lineage_ranges r WHERE r.host = {alias}.host "
            f"AND {alias}.pos BETWEEN r.start_pos AND r.end_pos)")


def build(cur: Cursor, *, epochs: list[tuple[str, int | None]] | None = None, marks: Marks | None = None) -> None:
    """(Re)build `processes` and `process_events`: all of them, or those of `epochs` only ((host,
    boot) pairs; boot None for every boot of the host). A process, its parent and what it did all
    belong to one boot of one host, so an epoch is rebuilt on its own. Needs `boots`. The caller
    holds the transaction."""
    create(cur)
    scoped = epochs is not None
    if scoped:
        cur.execute("CREATE OR REPLACE TEMP TABLE _lineage_scope (host VARCHAR, boot INTEGER)")
        if epochs:
            cur.executemany("INSERT INTO _lineage_scope VALUES (?, ?)", [[h, b] for h, b in sorted(set(epochs),
                            key=lambda x: (x[0], -1 if x[1] is None else x[1]))])
        cur.execute("""CREATE OR REPLACE TEMP TABLE _lineage_ranges AS
            SELECT b.host, b.boot, b.start_pos, b.end_pos FROM boots b JOIN _lineage_scope s
            ON s.host = b.host AND (s.boot IS NULL OR s.boot = b.boot)""")
        in_scope = ("EXISTS (SELECT 1 FROM _lineage_scope s WHERE s.host = processes.host "
                    "AND (s.boot IS NULL OR s.boot = processes.boot))")
        cur.execute(f"DELETE FROM process_events WHERE node IN (SELECT node FROM processes WHERE {in_scope})")
        cur.execute(f"DELETE FROM processes WHERE {in_scope}")
    h = _scope_clause(cur, "e", scoped)
    # The process creations, in their epochs. Narrow on purpose (no command lines): a million of
    # them are sorted and joined below, in 512 MB; the text is read from `events` by eid when the
    # rows are stored.
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _pc AS SELECT * FROM {boots.boot_of_sql(creations_sql(h))}")
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _merge AS SELECT s_eid, t_eid FROM ({ranked_pairs_sql()}) "
                "WHERE rt = 1 AND rs = 1")
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _nodes AS {nodes_sql('_pc')}")
    # Exits: Sysmon 5 by GUID; 4689 to the latest start of its PID on the host and boot before it.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _exit AS
        SELECT n.node, min(x.start) AS exit_at, arg_min(x.eid, x.start) AS eid FROM {sysmon_exits_sql(h)} x
        JOIN _nodes n ON n.host = x.host AND n.process_guid = x.process_guid AND x.start >= n.start
        GROUP BY n.node
        UNION ALL
        SELECT n.node, min(x.ts), arg_min(x.eid, x.ts) FROM {exits_4689_sql(h)} x
        ASOF JOIN _nodes n ON n.host = x.host AND n.boot = x.boot AND n.pid = x.pid AND x.ts >= n.start
        WHERE x.limage IS NULL OR n.limage IS NULL OR x.limage = n.limage
        GROUP BY n.node""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _ended AS
        SELECT n.*, x.exit_at AS exited, x.eid AS exit_eid
        FROM _nodes n LEFT JOIN (SELECT node, min(exit_at) AS exit_at, arg_min(eid, exit_at) AS eid FROM _exit GROUP BY node) x
             USING (node)""")
    _link_parents(cur)
    _link_events(cur, h)
    _store(cur, scoped, marks or load_marks())
    for name in ("_pc", "_merge", "_nodes", "_exit", "_ended", "_parent", "_pe", "_lineage_scope", "_lineage_ranges"):
        cur.execute(f"DROP TABLE IF EXISTS {name}")


def creations_sql(h: str) -> str:
    """The process creations (Sysmon 1, 4688) of the events `h` keeps (SQL over `events e`).
    Sysmon's UtcTime is when the process started."""
    return f"""(
        SELECT e.eid, e.pos, e.host, coalesce(e.utc_time, e.ts) AS start, e.channel = '{SYSMON}' AS sysmon,
               e.process_guid, e.process_pid AS pid, lower(e.process_image) AS limage,
               e.parent_guid, e.parent_pid, lower(e.parent_image) AS lparent,
               CASE WHEN e.channel = '{SYSMON}' THEN e.subject_logon_id
                    ELSE coalesce(nullif(e.target_logon_id, 0), e.subject_logon_id) END AS logon_id
        FROM events e
        -- A Sysmon process is its GUID (NXLog exports may lack its ProcessId); a 4688 its PID.
        WHERE ((e.channel = '{SYSMON}' AND e.event_id = 1 AND e.process_guid IS NOT NULL)
               OR (e.channel = 'Security' AND e.event_id = 4688 AND e.process_pid IS NOT NULL)) {h})"""


def ranked_pairs_sql(pc: str = "_pc") -> str:
    """Every Sysmon 1 / 4688 pair of `pc` that may be one process (same host, PID and image, starts
    within MERGE_SECONDS), ranked from each side: a pair with rt = rs = 1 is each one's nearest, and
    is merged. The 2-second buckets turn the window into an equality join (PIDs repeat all through
    a long log)."""
    w = MERGE_SECONDS
    return f"""
        WITH s AS (SELECT eid, host, pid, limage, start, CAST(floor(epoch(start) / {w}) AS BIGINT) AS b
                   FROM {pc} WHERE sysmon),
             t AS (SELECT eid, host, pid, limage, start, CAST(floor(epoch(start) / {w}) AS BIGINT) + k AS b
                   FROM {pc}, (SELECT unnest([-1, 0, 1]) AS k) WHERE NOT sysmon),
             pairs AS (SELECT s.host, s.eid AS s_eid, t.eid AS t_eid, s.start AS s_start, t.start AS t_start,
                              abs(epoch(s.start) - epoch(t.start)) AS gap
                       FROM s JOIN t USING (host, pid, limage, b) WHERE abs(epoch(s.start) - epoch(t.start)) <= {w})
        SELECT *, row_number() OVER (PARTITION BY t_eid ORDER BY gap, s_eid) AS rt,
                  row_number() OVER (PARTITION BY s_eid ORDER BY gap, t_eid) AS rs FROM pairs"""


def nodes_sql(pc: str) -> str:
    """The nodes the creations of `pc` make, with the pairs of `_merge`: each Sysmon process once (a
    GUID logged twice keeps its first record: an aggregate, which spills, where a window over the
    rows did not), with the 4688 merged into it; then every 4688 left over."""
    return f"""
        WITH first AS (SELECT arg_min(eid, {{'s': start, 'e': eid}}) AS eid FROM {pc} WHERE sysmon
                       GROUP BY host, process_guid),
             s AS (SELECT * FROM {pc} WHERE eid IN (SELECT eid FROM first))
        SELECT s.eid AS node, s.host, s.boot, s.pos, s.process_guid, s.pid, s.limage,
               coalesce(s.logon_id, t.logon_id) AS logon_id,
               s.start, s.parent_guid, coalesce(s.parent_pid, t.parent_pid) AS parent_pid,
               coalesce(s.lparent, t.lparent) AS lparent,
               CASE WHEN t.eid IS NULL THEN ['sysmon1'] ELSE ['sysmon1', '4688'] END AS sources,
               s.eid AS sysmon_eid, t.eid AS security_eid
        FROM s LEFT JOIN _merge m ON m.s_eid = s.eid LEFT JOIN {pc} t ON t.eid = m.t_eid
        UNION ALL
        SELECT t.eid, t.host, t.boot, t.pos, NULL, t.pid, t.limage, t.logon_id,
               t.start, NULL, t.parent_pid, t.lparent, ['4688'], NULL, t.eid
        FROM {pc} t WHERE NOT t.sysmon AND t.eid NOT IN (SELECT t_eid FROM _merge)"""


def exits_4689_sql(h: str) -> str:
    """The 4689s of the events `h` keeps, with their epoch."""
    return boots.boot_of_sql(f"""(
            SELECT e.eid, e.host, e.pos, e.ts, e.process_pid AS pid, lower(e.process_image) AS limage FROM events e
            WHERE e.channel = 'Security' AND e.event_id = 4689 AND e.process_pid IS NOT NULL {h})""")


def sysmon_exits_sql(h: str) -> str:
    return f"""(SELECT e.eid, e.host, coalesce(e.utc_time, e.ts) AS start, e.process_guid
            FROM events e WHERE e.channel = '{SYSMON}' AND e.event_id = 5 AND e.process_guid IS NOT NULL {h})"""


def security_source_sql(h: str) -> str:
    """The Security events a process did, by PID (WFP's 5154-5158 name it `ProcessID`), with their
    epoch. 4688's ProcessId is the creator; its own process is the node."""
    from .ingest.normalise import data_field_sql

    wfp_pid = data_field_sql("'$.\"ProcessID\"'")
    return boots.boot_of_sql(f"""(
            SELECT e.eid, e.host, e.pos, e.ts, e.event_id, e.process_pid AS pid FROM events e
            WHERE e.channel = 'Security' AND e.event_id <> 4688 AND e.process_pid IS NOT NULL
              AND e.process_pid NOT IN (0, 4) {h}
            UNION ALL
            SELECT e.eid, e.host, e.pos, e.ts, e.event_id, TRY_CAST({wfp_pid} AS BIGINT) FROM events e
            JOIN event_data d USING (eid)
            WHERE e.channel = 'Security' AND e.event_id BETWEEN 5154 AND 5158 AND e.process_pid IS NULL {h})""")


def _link_parents(cur: Cursor, children: str = "_ended", cands: str = "_ended") -> None:
    """`_parent` for the nodes of `children`, their parents among `cands`."""
    # By GUID, in the same boot (no process outlives one): the parent must have started before the
    # child (the earlier event on a tie), which also keeps bad data from making a cycle.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _parent AS
        SELECT c.node, p.node AS parent, CASE WHEN len(c.sources) = 2 THEN 'merged' ELSE 'guid' END AS edge,
               CAST(NULL AS VARCHAR) AS note
        FROM {children} c JOIN {cands} p ON p.host = c.host AND p.boot = c.boot AND p.process_guid = c.parent_guid
        WHERE (p.start, p.node) < (c.start, c.node)""")
    cur.execute(f"""INSERT INTO _parent
        SELECT c.node, NULL, 'unresolved', 'the parent GUID names a process that started after this one (bad data)'
        FROM {children} c JOIN {cands} p ON p.host = c.host AND p.boot = c.boot AND p.process_guid = c.parent_guid
        WHERE (p.start, p.node) >= (c.start, c.node) AND c.node NOT IN (SELECT node FROM _parent)""")
    # By PID and time, for the rest: the latest process with the parent's PID on the host and boot
    # that started before the child. A child whose GUID names a parent that is not in the log can
    # only have a parent that Sysmon did not see (a 4688 alone).
    cur.execute(f"""INSERT INTO _parent
        SELECT c.node,
               CASE WHEN ok THEN p_node END,
               CASE WHEN ok THEN 'pid+time' ELSE 'unresolved' END,
               CASE WHEN p_node IS NULL THEN NULL
                    WHEN p_exited < c_start THEN 'PID ' || printf('0x%x', c_parent_pid) || ' (' || p_image
                         || ') had exited at ' || strftime(p_exited, '%Y-%m-%d %H:%M:%S') || ', before this process started'
                    WHEN NOT image_ok THEN 'PID ' || printf('0x%x', c_parent_pid) || ' was ' || p_image
                         || ', not the parent image this process names'
                    WHEN NOT guid_ok THEN 'PID ' || printf('0x%x', c_parent_pid) || ' was another Sysmon process'
               END
        FROM (SELECT c.node, c.start AS c_start, c.parent_pid AS c_parent_pid, p.node AS p_node, p.limage AS p_image,
                     p.exited AS p_exited,
                     (c.lparent IS NULL OR p.limage IS NULL OR c.lparent = p.limage) AS image_ok,
                     (c.parent_guid IS NULL OR p.process_guid IS NULL) AS guid_ok,
                     p.node IS NOT NULL AND coalesce(p.exited >= c.start, TRUE)
                         AND (c.lparent IS NULL OR p.limage IS NULL OR c.lparent = p.limage)
                         AND (c.parent_guid IS NULL OR p.process_guid IS NULL) AS ok
              FROM (SELECT * FROM {children} WHERE node NOT IN (SELECT node FROM _parent)) c
              ASOF LEFT JOIN {cands} p ON p.host = c.host AND p.boot = c.boot AND p.pid = c.parent_pid
                                      AND c.start >= p.start
              -- Equal times are common (NXLog writes whole seconds): the earlier record is the parent.
              WHERE p.node IS NULL OR (p.start, p.node) < (c.start, c.node)) c""")


def _link_events(cur: Cursor, h: str) -> None:
    # Sysmon events by ProcessGuid (unique across boots), and 8/10 by the target's too.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _pe AS
        SELECT e.eid, n.node, CASE WHEN e.event_id = 5 THEN 'exit' ELSE 'actor' END AS role
        FROM events e JOIN _ended n ON n.host = e.host AND n.process_guid = e.process_guid
        WHERE e.channel = '{SYSMON}' AND e.event_id <> 1 AND e.process_guid IS NOT NULL {h}
        UNION ALL
        SELECT e.eid, n.node, 'target'
        FROM events e JOIN _ended n ON n.host = e.host AND n.process_guid = e.target_guid
        WHERE e.channel = '{SYSMON}' AND e.event_id IN (8, 10) AND e.target_guid IS NOT NULL {h}
        UNION ALL SELECT sysmon_eid, node, 'self' FROM _ended WHERE sysmon_eid IS NOT NULL
        UNION ALL SELECT security_eid, node, 'self' FROM _ended WHERE security_eid IS NOT NULL""")
    # Security events by host, boot, PID and time: the latest start of that PID before the event,
    # if it had not exited by then.
    cur.execute(f"""INSERT INTO _pe {security_links_sql(security_source_sql(h), '_ended')}""")
    # A 4688 is also its creator's act (the creator's ProcessId): not counted, the tree shows it.


def security_links_sql(source: str, cands: str) -> str:
    """SELECT eid, node, role for the Security events of `source` (security_source_sql), each to the
    latest process of `cands` with its PID on its host and boot that started before it and had not
    exited by then."""
    return f"""SELECT x.eid, n.node, CASE WHEN x.event_id = 4689 THEN 'exit' ELSE 'actor' END
        FROM {source} x
        ASOF JOIN {cands} n ON n.host = x.host AND n.boot = x.boot AND n.pid = x.pid AND x.ts >= n.start
        WHERE coalesce(n.exited >= x.ts, TRUE)"""


def counts_sql(pe: str) -> str:
    """Per node of `pe` (eid, node, role): its events, by kind."""
    kinds = ",\n".join(f"count(*) FILTER (WHERE pe.role = 'actor' AND ({cond})) AS {name}"
                       for name, cond in _KINDS.items())
    return f"""SELECT pe.node, count(*) FILTER (WHERE pe.role <> 'target') AS events, {kinds},
               count(*) FILTER (WHERE pe.role = 'actor' AND {_LSASS}) AS lsass_access,
               list_sort(list(DISTINCT printf('0x%x', x.granted_access)) FILTER (
                   WHERE pe.role = 'actor' AND {_LSASS} AND x.granted_access IS NOT NULL)) AS lsass_masks,
               count(*) FILTER (WHERE pe.role = 'target') AS accessed_by
        FROM {pe} pe JOIN events x ON x.eid = pe.eid GROUP BY pe.node"""


LSASS_MARK = "'opened lsass.exe (' || array_to_string(coalesce({masks}, []), ' ') || ')'"


def _store(cur: Cursor, scoped: bool, marks: Marks, cands: str = "_ended", subtree: bool = True) -> None:
    """Store the nodes of `_ended` (their parents among `cands`) and the links of `_pe`; with
    `subtree`, count the marked processes below each node."""
    # Marks by image name (and command line): one CASE a rule, its pattern a bound parameter, so
    # each regular expression is compiled once (joined to a table of rules, it was compiled for
    # every process it was tried on: 2 s for 10,000 processes). By parent: a table the SQL joins.
    cases: list[str] = []
    rule_params: list[Any] = []
    for glob, args, reason in marks.rules:
        cond = "nm.name LIKE ? ESCAPE '\\'"
        rule_params.append(glob_like(glob))
        if args is not None:
            cond += " AND regexp_matches(nm.cmd, ?, 'i')"
            rule_params.append(args)
        cases.append(f"CASE WHEN {cond} THEN ? END")
        rule_params.append(reason)
    rule_list = f"[{', '.join(cases)}]::VARCHAR[]" if cases else "[]::VARCHAR[]"
    cur.execute("CREATE OR REPLACE TEMP TABLE _mark_parents (grp VARCHAR, pattern VARCHAR)")
    rows = [[g, glob_like(p)] for g, pats in marks.parents.items() for p in pats]
    if rows:
        cur.executemany("INSERT INTO _mark_parents VALUES (?, ?)", rows)
    cur.execute("CREATE OR REPLACE TEMP TABLE _mark_children AS SELECT unnest(?::VARCHAR[]) AS name",
                [list(marks.children)])
    # The text of the nodes' events (image, command line, account, parent), read in one pass over
    # `events` for just those eids.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _etext AS
        SELECT e.eid, e.process_image AS image, e.command_line, e.parent_image, e.parent_command_line,
               e.subject_user, e.subject_domain, e.target_user, e.target_domain
        FROM events e WHERE e.eid IN (SELECT sysmon_eid FROM _ended UNION ALL SELECT security_eid FROM _ended
                                      UNION ALL SELECT p.sysmon_eid FROM {cands} p WHERE p.node IN (SELECT parent FROM _parent)
                                      UNION ALL SELECT p.security_eid FROM {cands} p WHERE p.node IN (SELECT parent FROM _parent))""")
    # Each node's own text: Sysmon's first (its command line and account are the process's); a
    # 4688 names the new process's account when it logs one, else the creator's.
    text = """(SELECT n.node,
            coalesce(es.image, et.image) AS image,
            coalesce(es.command_line, et.command_line) AS command_line,
            CASE WHEN es.eid IS NOT NULL THEN es.subject_user ELSE coalesce(et.target_user, et.subject_user) END AS u,
            CASE WHEN es.eid IS NOT NULL THEN es.subject_domain
                 WHEN et.target_user IS NOT NULL THEN et.target_domain ELSE et.subject_domain END AS d,
            coalesce(es.parent_image, et.parent_image) AS parent_image, es.parent_command_line
        FROM _ended n LEFT JOIN _etext es ON es.eid = n.sysmon_eid LEFT JOIN _etext et ON et.eid = n.security_eid
        WHERE n.node IN (SELECT node FROM _rank WHERE rk >= ? AND rk < ?))"""
    cur.execute("CREATE OR REPLACE TEMP TABLE _reasons (node BIGINT, marks VARCHAR[])")
    # Stored by (parent, start) ranges, a chunk at a time: a node's children are then in one or two
    # row groups, which the table's zone maps find at once (expanding a node of a million-process
    # case read every row group before).
    cur.execute("""CREATE OR REPLACE TEMP TABLE _rank AS
        SELECT n.node, row_number() OVER (ORDER BY pr.parent NULLS FIRST, n.start, n.node) - 1 AS rk
        FROM _ended n LEFT JOIN _parent pr USING (node)""")
    # In chunks of nodes: the rows carry command lines, and a million of them joined at once did
    # not fit in the engine's 512 MB.
    n_nodes = int(cur.execute("SELECT count(*) FROM _ended").fetchall()[0][0])
    chunks = max(1, -(-n_nodes // STORE_CHUNK))
    bounds = [(i * STORE_CHUNK, (i + 1) * STORE_CHUNK) for i in range(chunks)]
    for lo, hi in bounds:
        cur.execute(f"""INSERT INTO _reasons
            WITH named AS (
                SELECT node, regexp_extract(lower(image), '[^\\\\/]*$') AS name, lower(coalesce(command_line, '')) AS cmd,
                       regexp_extract(lower(coalesce(parent_image, '')), '[^\\\\/]*$') AS parent_name
                FROM {text}),
            by_rule AS (
                SELECT node, unnest(reasons) AS reason FROM (
                    SELECT nm.node, list_filter({rule_list}, lambda x: x IS NOT NULL) AS reasons FROM named nm)),
            by_parent AS (
                SELECT nm.node, 'started by ' || replace(min(p.grp), '_', ' ') || ' ' || nm.parent_name
                       || ', which usually starts no ' || nm.name AS reason
                FROM named nm JOIN _mark_parents p ON nm.parent_name LIKE p.pattern ESCAPE '\\'
                WHERE nm.name IN (SELECT name FROM _mark_children) GROUP BY nm.node, nm.parent_name, nm.name)
            SELECT node, list(DISTINCT reason ORDER BY reason) AS marks FROM (
                SELECT * FROM by_rule UNION ALL SELECT * FROM by_parent) GROUP BY node""", [lo, hi, *rule_params])
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _counts AS {counts_sql('(SELECT * FROM _pe WHERE node IN (SELECT node FROM _ended))')}")
    for lo, hi in bounds:
        cur.execute(f"""INSERT INTO processes
            WITH kids AS (SELECT parent AS node, count(*) AS children FROM _parent WHERE parent IS NOT NULL GROUP BY parent),
                 parents AS (SELECT pr.node, pr.parent, pr.edge, pr.note, p.process_guid, p.start,
                                    coalesce(ps.image, pt.image) AS image,
                                    coalesce(ps.command_line, pt.command_line) AS command_line
                             FROM _parent pr JOIN {cands} p ON p.node = pr.parent
                             LEFT JOIN _etext ps ON ps.eid = p.sysmon_eid LEFT JOIN _etext pt ON pt.eid = p.security_eid
                             WHERE pr.node IN (SELECT node FROM _rank WHERE rk >= ? AND rk < ?))
            SELECT n.node, n.host, n.boot, n.process_guid, n.pid, t.image, t.command_line,
                   CASE WHEN t.d IS NOT NULL AND t.u IS NOT NULL THEN t.d || '\\' || t.u ELSE t.u END,
                   n.logon_id, n.start,
                   coalesce(n.exited, CASE WHEN b.end_reason IN ('shutdown', 'reboot') THEN b.end_ts END),
                   CASE WHEN n.exited IS NOT NULL THEN 'exit' ELSE coalesce(b.end_reason, 'open') END,
                   pp.parent, coalesce(n.parent_guid, pp.process_guid), n.parent_pid,
                   coalesce(t.parent_image, pp.image), coalesce(t.parent_command_line, pp.command_line), pp.start,
                   coalesce(pr.edge, 'unresolved'),
                   coalesce(pr.note, CASE WHEN coalesce(pr.edge, 'unresolved') = 'unresolved'
                                          THEN 'the parent is not in the log' END),
                   n.sources, n.sysmon_eid, n.security_eid, coalesce(k.children, 0),
                   list_concat(coalesce(r.marks, []),
                               CASE WHEN coalesce(c.lsass_access, 0) > 0
                                    THEN [{LSASS_MARK.format(masks='c.lsass_masks')}] ELSE [] END),
                   0,
                   coalesce(c.events, 0), coalesce(c.network, 0), coalesce(c.files, 0), coalesce(c.registry, 0),
                   coalesce(c.image_loads, 0), coalesce(c.dns, 0), coalesce(c.pipes, 0), coalesce(c.process_access, 0),
                   coalesce(c.lsass_access, 0), coalesce(c.lsass_masks, []), coalesce(c.accessed_by, 0)
            FROM _ended n JOIN {text} t USING (node)
            LEFT JOIN _parent pr USING (node) LEFT JOIN parents pp ON pp.node = n.node
            LEFT JOIN boots b ON b.host = n.host AND b.boot = n.boot
            LEFT JOIN _counts c ON c.node = n.node LEFT JOIN _reasons r ON r.node = n.node
            LEFT JOIN kids k ON k.node = n.node JOIN _rank o ON o.node = n.node
            WHERE o.rk >= ? AND o.rk < ?""", [lo, hi, lo, hi, lo, hi])
    cur.execute("INSERT INTO process_events SELECT eid, node, role FROM _pe")
    if subtree:
        _subtree_marks(cur, "AND node IN (SELECT node FROM _ended)" if scoped else "")
    for name in ("_mark_parents", "_mark_children", "_reasons", "_counts", "_etext", "_rank"):
        cur.execute(f"DROP TABLE IF EXISTS {name}")


def marked_below_sql(start: str) -> str:
    """Per ancestor, how many of the marked processes `start` selects (SELECT node, parent) are
    below it: a walk up from them (few)."""
    return f"""WITH RECURSIVE up(marked, anc, depth) AS (
            SELECT node, parent, 1 FROM ({start}) WHERE parent IS NOT NULL
            UNION ALL
            SELECT up.marked, p.parent, up.depth + 1 FROM up JOIN processes p ON p.node = up.anc
            WHERE p.parent IS NOT NULL AND up.depth < 10000)
        SELECT anc AS node, count(DISTINCT marked) AS n FROM up GROUP BY anc"""


def _subtree_marks(cur: Cursor, h: str) -> None:
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _below AS {marked_below_sql(
        f'SELECT node, parent FROM processes WHERE len(marks) > 0 {h}')}""")
    cur.execute("UPDATE processes SET subtree_marks = b.n FROM _below b WHERE b.node = processes.node")
    cur.execute("DROP TABLE _below")


# -- reading ---------------------------------------------------------------------------------------
_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$")


def key_of(row: dict[str, Any]) -> str:
    """How a process is named on the command line and in `process:` terms: its GUID, or for a
    process only 4688 saw HOST/BOOT/0xPID/NODE (the PID alone is reused)."""
    if row.get("process_guid"):
        return str(row["process_guid"])
    return f"{row['host']}/{row['boot']}/0x{int(row['pid']):x}/{row['node']}"


def find(cur: Cursor, key: str) -> int | None:
    """The node a key names (a GUID in any spelling, or HOST/BOOT/0xPID/NODE), or None."""
    key = key.strip()
    if _GUID.match(key):
        rows = cur.execute("SELECT node FROM processes WHERE process_guid = ? ORDER BY start LIMIT 1",
                           [key.strip("{}").lower()]).fetchall()
        return int(rows[0][0]) if rows else None
    parts = key.rsplit("/", 3)
    if len(parts) == 4:
        try:
            node = int(parts[3])
        except ValueError:
            return None
        rows = cur.execute("SELECT node FROM processes WHERE node = ? AND lower(host) = lower(?)",
                           [node, parts[0]]).fetchall()
        return int(rows[0][0]) if rows else None
    return None


def parse_key(key: str) -> None:
    """Raise ValueError when `key` cannot name a process (used by the filter language)."""
    key = key.strip()
    if _GUID.match(key):
        return
    parts = key.rsplit("/", 3)
    if len(parts) == 4 and parts[0] and parts[3].isdigit():
        return
    raise ValueError(f"{key!r} is not a process (a ProcessGuid, or HOST/BOOT/0xPID/NODE)")


def _rows(result: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def get(cur: Cursor, node: int) -> dict[str, Any] | None:
    rows = _rows(cur.execute("SELECT * FROM processes WHERE node = ?", [node]))
    return rows[0] if rows else None


def children(cur: Cursor, node: int, offset: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    """A node's children, oldest first, a chunk at a time."""
    return _rows(cur.execute("SELECT * FROM processes WHERE parent = ? ORDER BY start, node LIMIT ? OFFSET ?",
                             [node, limit, offset]))


def children_of_many(cur: Cursor, chain: list[dict[str, Any]], limit: int = 200) -> dict[int, list[dict[str, Any]]]:
    """The first `limit` children of each process of `chain` (an ancestry, root first), in one
    query: the tree opening at a process shows each ancestor's other children too. The next
    process of the chain is always among its parent's, even past the first `limit`."""
    nodes = [int(r["node"]) for r in chain]
    if not nodes:
        return {}
    # An IN list (not list_contains) lets the zone maps of the parent-ordered table skip row groups.
    marks = ", ".join("?" for _ in nodes)
    rows = _rows(cur.execute(f"""SELECT * FROM processes WHERE parent IN ({marks})
                                 QUALIFY row_number() OVER (PARTITION BY parent ORDER BY start, node) <= ?""",
                             [*nodes, limit]))
    out: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (r["start"] is None, r["start"], r["node"])):
        out.setdefault(int(r["parent"]), []).append(r)
    for parent, child in pairwise(chain):
        kids = out.setdefault(int(parent["node"]), [])
        if all(c["node"] != child["node"] for c in kids):
            kids.append(child)
    return out


def first_of_session(cur: Cursor, host: str, boot: int, logon_ids: list[int]) -> int | None:
    """The first process a logon session started (by its LogonIds, on its host and boot)."""
    rows = cur.execute("""SELECT node FROM processes WHERE host = ? AND boot = ?
                          AND list_contains(?::UBIGINT[], logon_id) ORDER BY start, node LIMIT 1""",
                       [host, boot, logon_ids]).fetchall()
    return int(rows[0][0]) if rows else None


def search(cur: Cursor, host: str, text: str, *, limit: int = 10000) -> list[int]:
    """Processes of `host` whose image or command line contains `text` (any case), oldest first."""
    rows = cur.execute("""SELECT node FROM processes WHERE host = ?
                          AND (contains(lower(image), lower(?)) OR contains(lower(command_line), lower(?)))
                          ORDER BY start, node LIMIT ?""", [host, text, text, limit]).fetchall()
    return [int(r[0]) for r in rows]


def roots(cur: Cursor, host: str, offset: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    """The host's processes with no parent in the log, oldest first."""
    return _rows(cur.execute("SELECT * FROM processes WHERE host = ? AND parent IS NULL "
                             "ORDER BY start, node LIMIT ? OFFSET ?", [host, limit, offset]))


def count_roots(cur: Cursor, host: str) -> int:
    return int(cur.execute("SELECT count(*) FROM processes WHERE host = ? AND parent IS NULL",
                           [host]).fetchall()[0][0])


def ancestors(cur: Cursor, node: int) -> list[dict[str, Any]]:
    """The node's ancestors, root first, ending with the node itself."""
    rows = _rows(cur.execute("""
        WITH RECURSIVE up(node, depth) AS (
            SELECT ?::BIGINT, 0
            UNION ALL SELECT p.parent, up.depth + 1 FROM up JOIN processes p ON p.node = up.node
            WHERE p.parent IS NOT NULL AND up.depth < 10000)
        SELECT p.*, up.depth AS _up FROM up JOIN processes p USING (node) ORDER BY up.depth DESC""", [node]))
    for r in rows:
        r.pop("_up", None)
    return rows


def descendants(cur: Cursor, node: int, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The node and everything below it, in tree order (each after its parent, siblings oldest
    first), each with `depth` (the node's is 0)."""
    rows = _rows(cur.execute("""
        WITH RECURSIVE down(node, depth) AS (
            SELECT ?::BIGINT, 0
            UNION ALL SELECT p.node, down.depth + 1 FROM down JOIN processes p ON p.parent = down.node
            WHERE down.depth < 10000)
        SELECT p.*, down.depth FROM down JOIN processes p USING (node)""", [node]))
    return _tree_order(rows, [node], limit)


def _tree_order(rows: list[dict[str, Any]], tops: list[int], limit: int | None) -> list[dict[str, Any]]:
    by_node = {r["node"]: r for r in rows}
    kids: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r["parent"] is not None and r["parent"] in by_node and r["node"] not in tops:
            kids.setdefault(r["parent"], []).append(r)
    for v in kids.values():
        v.sort(key=lambda r: (r["start"] is None, r["start"], r["node"]))
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    stack = [(by_node[t], 0) for t in reversed(tops) if t in by_node]
    while stack:
        row, depth = stack.pop()
        if row["node"] in seen:  # never loops, whatever the rows say
            continue
        seen.add(row["node"])
        out.append({**row, "depth": depth})
        if limit is not None and len(out) >= limit:
            break
        stack.extend((k, depth + 1) for k in reversed(kids.get(row["node"], [])))
    return out


def forest(cur: Cursor, where: str = "TRUE", params: list[Any] | None = None, *,
           limit: int | None = None) -> list[dict[str, Any]]:
    """Processes matching `where` (SQL over `processes e`) with their ancestors, in tree order per
    host (hosts by name), each with `depth` and `matched`."""
    if where.strip() == "TRUE":  # everything: no ancestors to add
        rows = _rows(cur.execute("SELECT *, TRUE AS matched FROM processes"))
    else:
        rows = _forest_rows(cur, where, params or [])
    present = {r["node"] for r in rows}
    tops = sorted((r for r in rows if r["parent"] is None or r["parent"] not in present),
                  key=lambda r: (r["host"] or "", r["start"] is None, r["start"], r["node"]))
    return _tree_order(rows, [r["node"] for r in tops], limit)


def _forest_rows(cur: Cursor, where: str, params: list[Any]) -> list[dict[str, Any]]:
    return _rows(cur.execute(f"""
        WITH RECURSIVE hit AS (SELECT node FROM processes e WHERE {where}),
        up(node, depth) AS (
            SELECT node, 0 FROM hit
            UNION SELECT p.parent, up.depth + 1 FROM up JOIN processes p ON p.node = up.node
            WHERE p.parent IS NOT NULL AND up.depth < 10000)
        SELECT p.*, p.node IN (SELECT node FROM hit) AS matched
        FROM processes p WHERE p.node IN (SELECT node FROM up)""", params))


def node_of_event(cur: Cursor, eid: int) -> int | None:
    """The process an event names: the one it created (4688, Sysmon 1), else the one that acted
    (or exited), else the one it opened (Sysmon 8/10)."""
    rows = cur.execute("""SELECT node FROM process_events WHERE eid = ?
                          ORDER BY CASE role WHEN 'self' THEN 0 WHEN 'actor' THEN 1 WHEN 'exit' THEN 1 ELSE 2 END
                          LIMIT 1""", [eid]).fetchall()
    return int(rows[0][0]) if rows else None


def ancestry_line(cur: Cursor, node: int, *, command_width: int = 40) -> str:
    """`services.exe → cmd.exe → powershell.exe -enc … → rundll32.exe`: each image's file name, and
    a command line's arguments where they say more than the name (cut to `command_width`)."""
    parts: list[str] = []
    for row in ancestors(cur, node):
        parts.append(_short(row, command_width))
    return " → ".join(parts)


def _short(row: dict[str, Any], width: int) -> str:
    image = str(row.get("image") or "?")
    name = re.split(r"[\\/]", image)[-1]
    cmd = str(row.get("command_line") or "")
    args = cmd
    # The arguments after the program itself, quoted or not.
    m = re.match(r'^\s*("[^"]*"|\S+)\s*(.*)$', cmd, re.S)
    if m:
        args = m.group(2)
    args = " ".join(args.split())
    if not args:
        return name
    if len(args) > width:
        args = args[: width - 1] + "…"
    return f"{name} {args}"


def details(cur: Cursor, node: int) -> dict[str, Any] | None:
    """A node with what its source events say beyond the table: Sysmon's hashes, integrity,
    current directory and original file name; 4688's token elevation and mandatory label."""
    row = get(cur, node)
    if row is None:
        return None
    row.update(attributes(cur, [row]).get(node, {k: None for k in ATTRIBUTES}))
    row["elevation"] = _ELEVATION.get(str(row.get("token_elevation") or "").strip(), row.get("token_elevation"))
    row["label"] = _LABELS.get(str(row.get("mandatory_label") or "").strip().upper(), row.get("mandatory_label"))
    row["key"] = key_of(row)
    return row


# What the source events say beyond the table, by the output key it is shown under.
ATTRIBUTES = {"integrity": "IntegrityLevel", "hashes": "Hashes", "current_directory": "CurrentDirectory",
              "original_file_name": "OriginalFileName", "token_elevation": "TokenElevationType",
              "mandatory_label": "MandatoryLabel"}


def attributes(cur: Cursor, rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """For each node of `rows`, what its Sysmon 1 (hashes, integrity, current directory, original
    name) and its 4688 (token elevation, mandatory label) say: one pass over their documents."""
    from .ingest.normalise import data_field_sql

    eids = sorted({int(e) for r in rows for e in (r.get("sysmon_eid"), r.get("security_eid")) if e is not None})
    if not eids:
        return {}
    exprs = []
    params: list[Any] = []
    for name in ATTRIBUTES.values():
        expr = data_field_sql("?")
        exprs.append(f"{expr} AS \"{name}\"")
        params += [f'$."{name}"'] * expr.count("?")
    got = cur.execute(f"SELECT d.eid, {', '.join(exprs)} FROM event_data d WHERE list_contains(?::BIGINT[], d.eid)",
                      [*params, eids]).fetchall()
    by_eid = {int(r[0]): r[1:] for r in got}
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        values: dict[str, Any] = {}
        for eid in (r.get("sysmon_eid"), r.get("security_eid")):
            found = by_eid.get(int(eid)) if eid is not None else None
            if not found:
                continue
            for key, value in zip(ATTRIBUTES, found, strict=True):
                if values.get(key) is None and value not in (None, "", "-"):
                    values[key] = value
        out[int(r["node"])] = {k: values.get(k) for k in ATTRIBUTES}
    return out


_ELEVATION = {"%%1936": "full token (UAC off or built-in administrator)", "%%1937": "elevated",
              "%%1938": "limited"}
_LABELS = {"S-1-16-0": "untrusted", "S-1-16-4096": "low", "S-1-16-8192": "medium", "S-1-16-8448": "medium plus",
           "S-1-16-12288": "high", "S-1-16-16384": "system", "S-1-16-20480": "protected process"}


def marks_problem(cur: Cursor) -> str | None:
    """What was wrong with the user's marks file when the processes were last built (None: nothing)."""
    rows = cur.execute("SELECT value FROM meta WHERE key = 'process_marks_error'").fetchall()
    return str(rows[0][0]) if rows else None


def hosts(cur: Cursor) -> list[tuple[str, int]]:
    return [(str(h), int(n)) for h, n in cur.execute(
        "SELECT host, count(*) FROM processes GROUP BY host ORDER BY host").fetchall()]


def total(cur: Cursor) -> int:
    return int(cur.execute("SELECT count(*) FROM processes").fetchall()[0][0])


# -- the filter language over processes -------------------------------------------------------------
PROCESS_TYPES = column_types(DDL[0])


def _processes_table() -> Any:
    from .filters import Table

    return Table(
        "processes", PROCESS_TYPES,
        {"guid": ("process_guid",), "cmd": ("command_line",), "commandline": ("command_line",),
         "parent": ("parent_image",), "computer": ("host",), "account": ("user",), "mark": ("marks",),
         "source": ("sources",), "process": ("image",), "process_image": ("image",),
         "parent_process": ("parent_image",)},
        [c for c, t in PROCESS_TYPES.items() if t == "VARCHAR"],
        # On the process's lifetime: still running at or after the time, started before it.
        'coalesce(e."end", e.start) >= ?', "e.start < ?", time_column="start")


def compile_process_filter(text: str) -> Any:
    from .filters import compile_filter

    return compile_filter(text, None, _processes_table())


def query(cur: Cursor, text: str = "", *, host: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Processes matching a filter, by host then start."""
    compiled = compile_process_filter(text)
    sql = f"SELECT * FROM processes e WHERE {compiled.sql}"
    params = list(compiled.params)
    if host:
        sql += " AND lower(e.host) = lower(?)"
        params.append(host)
    sql += " ORDER BY host, start, node"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return _rows(cur.execute(sql, params))


def node_sql(key: str) -> tuple[str, list[Any]]:
    """A scalar subquery for the node a key names (NULL when none), and its parameters."""
    parse_key(key)
    key = key.strip()
    if _GUID.match(key):
        return ("(SELECT arg_min(node, start) FROM processes WHERE process_guid = ?)", [key.strip("{}").lower()])
    host, _, _, node = key.rsplit("/", 3)
    return "(SELECT node FROM processes WHERE node = ? AND lower(host) = lower(?))", [int(node), host]


def term_sql(key: str, *, subtree: bool = False) -> tuple[str, list[Any]]:
    """SQL over `events e` for the events of one process (`process:KEY`), or of it and every
    process below it (`tree:KEY`)."""
    node, params = node_sql(key)
    if not subtree:
        return f"e.eid IN (SELECT pe.eid FROM process_events pe WHERE pe.node = {node})", params
    return (f"""e.eid IN (SELECT pe.eid FROM process_events pe WHERE pe.node IN (
        WITH RECURSIVE down(node, depth) AS (SELECT {node}, 0
            UNION ALL SELECT p.node, down.depth + 1 FROM down JOIN processes p ON p.parent = down.node
            WHERE down.depth < 10000)
        SELECT node FROM down))""", params)


def contract(row: dict[str, Any], parent_key: str | None,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A node as `--format jsonl` writes it (the output contract), with `extra` (its `attributes`)."""
    return {**_contract(row, parent_key), **(extra or {})}


def _contract(row: dict[str, Any], parent_key: str | None) -> dict[str, Any]:
    return {
        "key": key_of(row), "host": row["host"], "boot": row["boot"], "process_guid": row["process_guid"],
        "pid": row["pid"], "image": row["image"], "command_line": row["command_line"], "user": row["user"],
        "logon_id": row["logon_id"], "start": row["start"], "end": row["end"], "end_reason": row["end_reason"],
        "parent_key": parent_key, "parent_guid": row["parent_guid"], "parent_pid": row["parent_pid"],
        "parent_image": row["parent_image"], "parent_start": row["parent_start"], "edge": row["edge"],
        "edge_note": row["edge_note"], "sources": row["sources"], "marks": row["marks"],
        "subtree_marks": row["subtree_marks"], "children": row["children"], "depth": row.get("depth"),
        "events": row["events"], "network": row["network"], "files": row["files"], "registry": row["registry"],
        "image_loads": row["image_loads"], "dns": row["dns"], "pipes": row["pipes"],
        "process_access": row["process_access"], "lsass_access": row["lsass_access"],
        "accessed_by": row["accessed_by"],
    }


def parent_keys(cur: Cursor, rows: list[dict[str, Any]]) -> dict[int, str]:
    """The key of each row's parent (one query for all of them)."""
    wanted = sorted({int(r["parent"]) for r in rows if r.get("parent") is not None})
    if not wanted:
        return {}
    got = _rows(cur.execute("SELECT node, host, boot, pid, process_guid FROM processes "
                            "WHERE list_contains(?::BIGINT[], node)", [wanted]))
    return {int(r["node"]): key_of(r) for r in got}
