"""Findings cached in the case: computed after an ingest, and again only when the files, the rules
or the allowlists change (`meta.findings_digest`). A case opened read-only whose cache is behind
gets its findings computed into temp tables of that connection: read, never written."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import duckdb

from .rules import SEVERITIES, RuleSet, load
from .run import run_all

Cursor = duckdb.DuckDBPyConnection
VERSION = "2"  # 2: author
DIGEST_KEY = "findings_digest"
FAILED_KEY = "findings_failed"
TIMES_KEY = "findings_seconds"
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
    # An event without a time (a damaged record) still makes a finding: it sorts last of its severity.
    found.sort(key=lambda f: (-SEVERITIES.index(f["severity"]), f["first"] is None, f["first"] or datetime.min,
                              f["rule"], f["host"] or ""))
    kind = "TEMP TABLE" if temp else "TABLE"
    cur.execute(f"CREATE OR REPLACE {kind} findings ({COLUMNS})")
    cur.execute(f"CREATE OR REPLACE {kind} finding_events (finding INTEGER, eid BIGINT)")
    # One Arrow table in one INSERT: executemany inserts row by row (84 s for 70,000 findings).
    import pyarrow as pa

    names = ["id", "ord", "rule", "title", "author", "severity", "rank", "attack", "host", "user", "first", "last", "count",
             "reason", "eids", "logon_id", "boot", "process", "values"]
    columns: dict[str, list[Any]] = {n: [] for n in names}
    for n, f in enumerate(found, 1):
        row = {**f, "id": n, "ord": n - 1, "rank": SEVERITIES.index(f["severity"]), "boot": None,
               "values": json.dumps(f["values"], default=str)}
        for name in names:
            columns[name].append(row[name])
    types = {"id": pa.int32(), "ord": pa.int64(), "rank": pa.int32(), "attack": pa.list_(pa.string()),
             "first": pa.timestamp("us"), "last": pa.timestamp("us"), "count": pa.int32(), "eids": pa.list_(pa.int64()),
             "logon_id": pa.uint64(), "boot": pa.int32(), "process": pa.int64()}
    cur.register("_findings_batch", pa.table({n: pa.array(columns[n], type=types.get(n, pa.string())) for n in names}))
    try:
        cur.execute("INSERT INTO findings SELECT * FROM _findings_batch")
    finally:
        cur.unregister("_findings_batch")
    cur.execute("INSERT INTO finding_events SELECT id, unnest(eids) FROM findings")
    # The boot of a finding's session: that of its first event.
    cur.execute("""UPDATE findings SET boot = b.boot FROM (
                       SELECT f.id, bt.boot FROM (SELECT f.id, e.host, e.pos FROM findings f
                                                  JOIN events e ON e.eid = f.eids[1] WHERE f.logon_id IS NOT NULL) f
                       ASOF JOIN boots bt ON bt.host = f.host AND f.pos >= bt.start_pos) b
                   WHERE b.id = findings.id""")
    if not temp:
        for key, value in ((DIGEST_KEY, digest(cur, rules)), (FAILED_KEY, json.dumps(failed)),
                           (TIMES_KEY, json.dumps({k: round(v, 3) for k, v in seconds.items()}))):
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])
    return failed, seconds


def refresh(case: Any, rules: RuleSet | None = None) -> float:
    """Bring the case's cached findings up to date (read-write case); seconds spent."""
    import time

    rules = rules or load()
    con = case.con
    if current(con, rules):
        return 0.0
    t0 = time.perf_counter()
    with case.transaction():
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
