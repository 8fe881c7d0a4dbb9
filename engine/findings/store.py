"""Findings cached in the case: computed after an ingest, and again only when the files, the rules
or the allowlists change (`meta.findings_digest`). A case opened read-only whose cache is behind
gets its findings computed into temp tables of that connection: read, never written."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa

from .rules import SEVERITIES, RuleSet, load
from .run import run_all

Cursor = duckdb.DuckDBPyConnection
VERSION = "2"  # 2: author
DIGEST_KEY = "findings_digest"
FAILED_KEY = "findings_failed"
TIMES_KEY = "findings_seconds"
RULES_KEY = "findings_rules"  # what the findings were computed with, the files aside
SOURCES_KEY = "findings_sources"  # the files (source ids) they were computed over
COLUMNS = """
  id INTEGER,
  ord BIGINT,
  rule VARCHAR,
  title VARCHAR,
  author VARCHAR,
  severity VARCHAR,
  rank INTEGER,
  attack VARCHAR[],
  host VARCHAR,
  "user" VARCHAR,
  first TIMESTAMP,
  last TIMESTAMP,
  count INTEGER,
  reason VARCHAR,
  eids BIGINT[],
  logon_id UBIGINT,
  boot INTEGER,
  process BIGINT,
  "values" VARCHAR
"""


def _meta(cur: Cursor, key: str) -> str | None:
    rows = cur.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
    return str(rows[0][0]) if rows else None


def digest(cur: Cursor, rules: RuleSet) -> str:
    """The rules and allowlists as read, the case's files and its derived tables' version."""
    from ..derived import VERSION as DERIVED

    files = cur.execute("SELECT list(source_id ORDER BY source_id) FROM sources").fetchall()[0][0] or []
    return hashlib.sha256(f"{VERSION}\0{DERIVED}\0{rules.digest()}\0{files}".encode()).hexdigest()[:16]


def _has(cur: Cursor, name: str, temp: bool = False) -> bool:
    schema = "AND table_catalog = 'temp'" if temp else "AND table_catalog <> 'temp'"
    return bool(cur.execute(f"SELECT count(*) FROM information_schema.tables WHERE table_name = ? {schema}",
                            [name]).fetchall()[0][0])


def current(cur: Cursor, rules: RuleSet) -> bool:
    return _has(cur, "findings") and _meta(cur, DIGEST_KEY) == digest(cur, rules)


def compute(cur: Cursor, rules: RuleSet, *, temp: bool = False) -> tuple[list[str], dict[str, float]]:
    """Run every enabled rule and store its findings (`findings`, `finding_events`): in the case,
    or with `temp` in this connection only. The caller holds the transaction when not temp."""
    found, failed, seconds = run_all(cur, rules.enabled)
    failed = rules.failed + failed
    _write(cur, found, temp=temp)
    if not temp:
        _remember(cur, rules, failed, seconds)
    return failed, seconds


def update(cur: Cursor, rules: RuleSet, sources: list[int]) -> tuple[list[str], dict[str, float]]:
    """After files were added (`sources`, their ids) and nothing else changed: the findings of the
    rules of one host's events (scope "host") computed again for the hosts the new events are on
    only, those of the case-wide rules for the whole case, the rest kept. The same findings as a
    `compute` of the whole case (tests/test_findings_fixtures.py checks it row by row). The caller
    holds the transaction."""
    hosts = [str(h) for (h,) in cur.execute(
        "SELECT DISTINCT coalesce(lower(host), '') FROM events WHERE source_id IN (SELECT unnest(?))",
        [sources]).fetchall()]
    local = [r for r in rules.enabled if r.scope == "host"]
    case_wide = [r for r in rules.enabled if r.scope != "host"]
    with only_hosts(cur, hosts):
        found, failed, seconds = run_all(cur, local, hosts=hosts)
    touched = set(hosts)
    # Each finding of these rules is one host's; any other host's is kept from before, not doubled.
    found = [f for f in found if (f["host"] or "").lower() in touched]
    more, failed_more, seconds_more = run_all(cur, case_wide)
    # Kept: what the rules of one host found on the hosts nothing was added to.
    cur.register("_touched", pa.table({"host": pa.array(hosts, pa.string())}))
    cur.register("_local_rules", pa.table({"rule": pa.array([r.id for r in local], pa.string())}))
    try:
        _write(cur, found + more, keep="""rule IN (SELECT rule FROM _local_rules)
                                          AND coalesce(lower(host), '') NOT IN (SELECT host FROM _touched)""")
    finally:
        cur.unregister("_touched")
        cur.unregister("_local_rules")
    failed = rules.failed + failed + failed_more
    previous = json.loads(_meta(cur, TIMES_KEY) or "{}")
    _remember(cur, rules, failed, {**previous, **{k: v for k, v in {**seconds, **seconds_more}.items()}})
    return failed, seconds


@contextlib.contextmanager
def only_hosts(cur: Cursor, hosts: list[str]) -> Iterator[None]:
    """The tables a rule reads by host (events and the derived sessions, processes, boots) seen by
    this connection as those of `hosts` alone (lower case; '' for events without a host): temp
    tables of the same names hide the case's tables until the block ends. Copies, not views: each
    of some thirty rules would otherwise scan the whole case for its hosts (0.2 s a rule on 10M)."""
    db = '"' + str(cur.execute("SELECT current_database()").fetchall()[0][0]).replace('"', '""') + '"'
    cur.register("_only_hosts", pa.table({"host": pa.array(hosts, pa.string())}))
    # The hosts as the case spells them, found over its few distinct names: a plain IN list then
    # keeps each table's rows without lowering ten million names four times.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _host_spellings AS
                    SELECT host FROM (SELECT DISTINCT host FROM {db}.main.events)
                    WHERE coalesce(lower(host), '') IN (SELECT host FROM _only_hosts)""")
    nameless = "" in hosts
    shadowed = []
    try:
        for table in HOST_TABLES:
            if _has(cur, table):
                cur.execute(f"""CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {db}.main.{table}
                                WHERE host IN (SELECT host FROM _host_spellings)
                                   {"OR host IS NULL" if nameless else ""}""")
                shadowed.append(table)
        yield
    finally:
        for table in shadowed:
            cur.execute(f"DROP TABLE IF EXISTS temp.main.{table}")
        cur.execute("DROP TABLE IF EXISTS temp.main._host_spellings")
        cur.unregister("_only_hosts")


HOST_TABLES = ("events", "sessions", "processes", "boots")
_NAMES = ["id", "ord", "rule", "title", "author", "severity", "rank", "attack", "host", "user", "first", "last",
          "count", "reason", "eids", "logon_id", "boot", "process", "values"]
# Worst first, then in time (an event without a time, a damaged record, sorts last of its
# severity), then by rule and host; the first event and the reason make the order total, so a
# case's findings are numbered the same however they were computed.
_ORDER = """rank DESC, first IS NULL, first, rule, coalesce(host, ''), eids[1], reason"""


def _write(cur: Cursor, found: list[dict[str, Any]], *, temp: bool = False, keep: str | None = None) -> None:
    """`findings` and `finding_events` made of `found` (and, with `keep`, the rows of the current
    `findings` that condition keeps), numbered in one order."""
    types = {"id": pa.int32(), "ord": pa.int64(), "rank": pa.int32(), "attack": pa.list_(pa.string()),
             "first": pa.timestamp("us"), "last": pa.timestamp("us"), "count": pa.int32(), "eids": pa.list_(pa.int64()),
             "logon_id": pa.uint64(), "boot": pa.int32(), "process": pa.int64()}
    columns: dict[str, list[Any]] = {n: [] for n in _NAMES}
    for f in found:
        row = {**f, "id": None, "ord": None, "rank": SEVERITIES.index(f["severity"]), "boot": None,
               "values": json.dumps(f["values"], default=str)}
        for name in _NAMES:
            columns[name].append(row[name])
    kind = "TEMP TABLE" if temp else "TABLE"
    listed = ", ".join(f'"{n}"' for n in _NAMES[2:])
    # One Arrow table in one INSERT: executemany inserts row by row (84 s for 70,000 findings).
    cur.register("_findings_batch", pa.table({n: pa.array(columns[n], type=types.get(n, pa.string())) for n in _NAMES}))
    try:
        kept = f"UNION ALL SELECT {listed} FROM findings WHERE {keep}" if keep else ""
        cur.execute(f"CREATE OR REPLACE TEMP TABLE _findings_all AS SELECT {listed} FROM _findings_batch {kept}")
    finally:
        cur.unregister("_findings_batch")
    cur.execute(f"CREATE OR REPLACE {kind} findings ({COLUMNS})")
    cur.execute(f"CREATE OR REPLACE {kind} finding_events (finding INTEGER, eid BIGINT)")
    cur.execute(f"""INSERT INTO findings SELECT (row_number() OVER (ORDER BY {_ORDER}))::INTEGER AS id,
                        row_number() OVER (ORDER BY {_ORDER}) - 1 AS ord, {listed}
                    FROM _findings_all ORDER BY id""")
    cur.execute("DROP TABLE _findings_all")
    cur.execute("INSERT INTO finding_events SELECT id, unnest(eids) FROM findings")
    # The boot of a finding's session: that of its first event (kept rows have theirs: their host
    # had nothing added, so its boots are as they were).
    cur.execute("""UPDATE findings SET boot = b.boot FROM (
                       SELECT f.id, bt.boot FROM (SELECT f.id, e.host, e.pos FROM findings f
                                                  JOIN events e ON e.eid = f.eids[1]
                                                  WHERE f.logon_id IS NOT NULL AND f.boot IS NULL) f
                       ASOF JOIN boots bt ON bt.host = f.host AND f.pos >= bt.start_pos) b
                   WHERE b.id = findings.id""")


def _remember(cur: Cursor, rules: RuleSet, failed: list[str], seconds: dict[str, float]) -> None:
    sources = cur.execute("SELECT list(source_id ORDER BY source_id) FROM sources").fetchall()[0][0] or []
    for key, value in ((DIGEST_KEY, digest(cur, rules)), (FAILED_KEY, json.dumps(failed)),
                       (TIMES_KEY, json.dumps({k: round(v, 3) for k, v in seconds.items()})),
                       (RULES_KEY, _rules_digest(rules)), (SOURCES_KEY, json.dumps(sources))):
        cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


def _rules_digest(rules: RuleSet) -> str:
    from ..derived import VERSION as DERIVED

    return hashlib.sha256(f"{VERSION}\0{DERIVED}\0{rules.digest()}".encode()).hexdigest()[:16]


def added_sources(cur: Cursor, rules: RuleSet) -> list[int] | None:
    """The files added since the findings were computed, when that is all that changed (the same
    rules, allowlists and derived tables, no file taken away); None otherwise."""
    if not _has(cur, "findings") or _meta(cur, RULES_KEY) != _rules_digest(rules):
        return None
    before = set(json.loads(_meta(cur, SOURCES_KEY) or "null") or [])
    now = {int(s) for (s,) in cur.execute("SELECT source_id FROM sources").fetchall()}
    if not before or not before <= now:
        return None
    return sorted(now - before)


def refresh(case: Any, rules: RuleSet | None = None) -> float:
    """Bring the case's cached findings up to date (read-write case); seconds spent. After an
    ingest that only added files, only what the new events can change is computed again (update)."""
    import time

    rules = rules or load()
    con = case.con
    if current(con, rules):
        return 0.0
    t0 = time.perf_counter()
    with case.transaction():
        added = added_sources(con, rules)
        if added:
            update(con, rules, added)
        else:
            compute(con, rules)
    return time.perf_counter() - t0


def ensure(cur: Cursor, rules: RuleSet | None = None) -> list[str]:
    """Make `findings` current for this connection: the case's cache when it is, else temp tables
    of this connection (a read-only case is never written). The rules that failed, with why."""
    rules = rules or load()
    wanted = digest(cur, rules)
    if _has(cur, "findings_state", temp=True):
        if cur.execute("SELECT digest FROM findings_state").fetchall()[0][0] == wanted:
            return failed_rules(cur)
    elif current(cur, rules):
        return failed_rules(cur)
    failed, _ = compute(cur, rules, temp=True)
    cur.execute("CREATE OR REPLACE TEMP TABLE findings_state AS SELECT ? AS digest, ?::VARCHAR[] AS failed",
                [wanted, failed])
    return failed


def failed_rules(cur: Cursor) -> list[str]:
    if _has(cur, "findings_state", temp=True):
        return [str(x) for x in cur.execute("SELECT failed FROM findings_state").fetchall()[0][0]]
    value = _meta(cur, FAILED_KEY)
    return list(json.loads(value)) if value else []


def rule_seconds(cur: Cursor) -> dict[str, float]:
    value = _meta(cur, TIMES_KEY)
    return dict(json.loads(value)) if value else {}
