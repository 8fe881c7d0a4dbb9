"""Running a rule: its hits (a filter or SQL over the case), the allowlist, the grouping into
findings (by keys, and a window of quiet that ends one), and the explanation filled in."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import duckdb

from ..filters import glob_like
from .rules import Rule, RuleError

Cursor = duckdb.DuckDBPyConnection
LIST_SHOWN = 5  # values an explanation names before "+N more"
_PLACE = re.compile(r"\{([a-z_][a-z0-9_]*)(?:\|([a-z]+))?\}")
_FILTERS = ("count", "sum", "mask", "hex", "all", "first")
_STANDARD = {"count", "first", "last", "host", "user", "title", "span"}


def hits_sql(rule: Rule) -> tuple[str, list[Any]]:
    """The rule's hits as one SELECT, and its parameters."""
    if rule.sql is not None:
        return rule.sql, []
    from ..filters import compile_filter

    assert rule.filter is not None
    compiled = compile_filter(rule.filter)
    extra = "".join(f", e.{c}" for c in rule.fields if c not in ("host", "ts", "eid"))
    # The actor of an audited change is its subject (who cleared the log, created the account).
    return (f"""SELECT e.eid, e.ts, e.host, coalesce(e.subject_user, e.target_user) AS "user",
                       nullif(e.subject_logon_id, 0) AS logon_id{extra}
                FROM events e WHERE {compiled.sql}""", list(compiled.params))


def _columns(cur: Cursor, sql: str, params: list[Any]) -> list[str]:
    result = cur.execute(f"SELECT * FROM ({sql}) LIMIT 0", params)
    return [d[0] for d in result.description or []]


def run(cur: Cursor, rule: Rule) -> list[dict[str, Any]]:
    """The rule's findings: dicts with rule, title, severity, host, user, first, last, count, reason,
    eids, logon_id, process and `values` (each hit column's distinct values)."""
    sql, params = hits_sql(rule)
    try:
        columns = _columns(cur, sql, params)
    except duckdb.Error as exc:
        raise RuleError(f"{rule.source}: rule {rule.id}: its query fails: {str(exc).splitlines()[0]}") from None
    grouped = "eids" in columns
    need = {"host", "first", "last", "eids"} if grouped else {"eid", "ts", "host"}
    missing = sorted(need - set(columns))
    if missing:
        raise RuleError(f"{rule.source}: rule {rule.id}: its hits lack {', '.join(missing)} "
                        f"(they have {', '.join(columns)})")
    allow_sql, allow_params = [], []
    for column, globs in rule.allow:
        if column not in columns:
            raise RuleError(f"{rule.source}: rule {rule.id}: allow.{column} is not a column of its hits "
                            f"({', '.join(columns)})")
        ors = " OR ".join(f"lower(CAST(h.\"{column}\" AS VARCHAR)) LIKE ? ESCAPE '\\'" for _ in globs)
        allow_sql.append(f"NOT coalesce({ors}, FALSE)")
        allow_params += [glob_like(g.lower()) for g in globs]
    where = " AND ".join(allow_sql) or "TRUE"
    if grouped:
        rows = cur.execute(f"SELECT * FROM ({sql}) h WHERE {where}", params + allow_params)
        names = [d[0] for d in rows.description or []]
        found = [dict(zip(names, r, strict=True)) for r in rows.fetchall()]
        return [_finding(rule, r, {k: v for k, v in r.items() if k not in ("eids",)}) for r in found]
    keys = [k for k in rule.group_by if k in columns]
    bad = [k for k in rule.group_by if k not in columns]
    if bad:
        raise RuleError(f"{rule.source}: rule {rule.id}: group_by {bad[0]!r} is not a column of its hits "
                        f"({', '.join(columns)})")
    for column, _ in rule.min_distinct:
        if column not in columns:
            raise RuleError(f"{rule.source}: rule {rule.id}: min_distinct.{column} is not a column of its hits")
    values = [c for c in columns if c not in ("eid", "ts", *keys)]
    part = ", ".join(f'h."{k}"' for k in keys) or "NULL"
    window = ""
    group = [f'"{k}"' for k in keys]
    if rule.window is not None:
        seconds = rule.window.total_seconds()
        window = (f""", sum(CASE WHEN gap IS NULL OR gap > to_microseconds({int(seconds * 1_000_000)}) THEN 1 ELSE 0 END)
                      OVER (PARTITION BY {part.replace('h.', '')} ORDER BY ts, eid ROWS UNBOUNDED PRECEDING) AS _burst""")
        group.append("_burst")
    having = [f"count(*) >= {int(rule.min_count)}"]
    having += [f'count(DISTINCT "{c}") >= {int(n)}' for c, n in rule.min_distinct]
    aggs = ", ".join(f'list_sort(list(DISTINCT "{c}") FILTER (WHERE "{c}" IS NOT NULL)) AS "{c}"' for c in values)
    query = f"""
        WITH h AS (SELECT * FROM ({sql}) h WHERE {where}),
             g AS (SELECT *, ts - lag(ts) OVER (PARTITION BY {part} ORDER BY ts, eid) AS gap FROM h),
             b AS (SELECT *{window} FROM g)
        SELECT {', '.join(f'"{k}"' for k in keys) + ',' if keys else ''}
               count(*) AS count, min(ts) AS first, max(ts) AS last, list(eid ORDER BY ts, eid) AS eids
               {', ' + aggs if aggs else ''}
        FROM b GROUP BY {', '.join(group) or '()'} HAVING {' AND '.join(having)}
        ORDER BY first"""
    try:
        result = cur.execute(query, params + allow_params)
    except duckdb.Error as exc:
        raise RuleError(f"{rule.source}: rule {rule.id}: {str(exc).splitlines()[0]}") from None
    names = [d[0] for d in result.description or []]
    out = []
    for r in result.fetchall():
        row = dict(zip(names, r, strict=True))
        out.append(_finding(rule, row, {k: row[k] for k in (*keys, *values)}))
    return out


def _one(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if len(value) == 1 else None
    return value


def _finding(rule: Rule, row: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    host = row.get("host")
    hosts = host if isinstance(host, list) else [host]
    user = row.get("user")
    users = user if isinstance(user, list) else [user] if user is not None else []
    eids = [int(e) for e in row["eids"]]
    finding = {
        "rule": rule.id, "title": rule.title, "author": rule.author or None, "severity": rule.severity, "attack": list(rule.attack),
        "host": ", ".join(str(h) for h in hosts if h is not None) or None,
        "user": ", ".join(str(u) for u in users if u is not None) or None,
        "first": row["first"], "last": row["last"], "count": int(row.get("count") or len(eids)), "eids": eids,
        "logon_id": _one(row.get("logon_id")), "process": _one(row.get("process")),
        "values": {k: v for k, v in values.items() if k not in ("host", "user", "logon_id", "process")},
    }
    finding["reason"] = explain(rule, finding, values)
    return finding


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


def _render(value: Any, how: str | None) -> str:
    from ..decode import access_mask

    items = value if isinstance(value, list) else [] if value is None else [value]
    if how == "count":
        return str(len(items))
    if how == "sum":
        return str(sum(int(v) for v in items))
    if how == "first":
        items = items[:1]
    if how == "hex":
        items = [f"0x{int(v):x}" for v in items]
    elif how == "mask":
        items = [f"0x{int(v):x} ({access_mask(int(v)) or 'no known rights'})" for v in items]
    else:
        items = [_text(v) for v in items]
    if how != "all" and len(items) > LIST_SHOWN:
        return ", ".join(items[:LIST_SHOWN]) + f" (+{len(items) - LIST_SHOWN} more)"
    return ", ".join(items) if items else "?"


def explain(rule: Rule, finding: dict[str, Any], values: dict[str, Any]) -> str:
    """The rule's reason with its places filled in from the finding."""
    def fill(m: re.Match[str]) -> str:
        name, how = m.group(1), m.group(2)
        if how is not None and how not in _FILTERS:
            raise RuleError(f"{rule.source}: rule {rule.id}: reason: {{{name}|{how}}}: unknown filter "
                            f"(one of {', '.join(_FILTERS)})")
        if name == "span":
            seconds = (finding["last"] - finding["first"]).total_seconds()
            return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
                f"{seconds / 3600:.1f} h"
        if name == "title":
            return rule.title
        if name in values:
            return _render(values[name], how)
        if name in ("count", "first", "last", "host", "user"):
            return _render(finding[name], how)
        raise RuleError(f"{rule.source}: rule {rule.id}: reason names {{{name}}}, which its hits do not have "
                        f"(they have {', '.join(sorted(set(values) | _STANDARD))})")

    return _PLACE.sub(fill, rule.reason)


def run_all(cur: Cursor, rules: list[Rule], *, hosts: list[str] | None = None
            ) -> tuple[list[dict[str, Any]], list[str], dict[str, float]]:
    """Every rule's findings, the rules that failed (with why) and the seconds each took. `hosts`:
    the caller shows this cursor those hosts' events only (store.only_hosts); Sigma's worker
    cursors are told the same."""
    _verdicts(cur, rules)
    found: list[dict[str, Any]] = []
    failed: list[str] = []
    seconds: dict[str, float] = {}
    sigma = [r for r in rules if r.sigma_condition]
    if sigma:
        from .sigma import prepare

        t0 = time.perf_counter()
        bad = prepare(cur, sigma, hosts=hosts)
        seconds["sigma: one pass per logsource"] = time.perf_counter() - t0
        failed += bad
        # A Sigma rule without hits makes no finding: not grouped (most of a big rule set).
        hit = {str(r[0]) for r in cur.execute("SELECT DISTINCT rule FROM sigma_hits").fetchall()}
        rules = [r for r in rules if not r.sigma_condition or r.id in hit]
    for rule in rules:
        t0 = time.perf_counter()
        try:
            found += run(cur, rule)
        except RuleError as exc:
            failed.append(str(exc))
        seconds[rule.id] = time.perf_counter() - t0
    return found, failed, seconds


def _verdicts(cur: Cursor, rules: list[Rule]) -> None:
    """`logon_verdicts` (the failed-logon verdicts, engine.logons) for the rules that read it."""
    if not any(r.sql and "logon_verdicts" in r.sql for r in rules):
        return
    from .. import logons

    cur.execute("""CREATE OR REPLACE TEMP TABLE logon_verdicts (verdict VARCHAR, host VARCHAR, "user" VARCHAR,
                   accounts VARCHAR[], source VARCHAR, sources VARCHAR[], count INTEGER, first TIMESTAMP,
                   last TIMESTAMP, eids BIGINT[], explanation VARCHAR, logon_id UBIGINT)""")
    rows = [[v["verdict"], v["host"], v["account"] if len(v["accounts"]) == 1 else None, v["accounts"],
             v["source"], v["sources"], v["count"], v["first"], v["last"], v["eids"], v["reason"],
             (v.get("session") or {}).get("logon_id")] for v in logons.verdicts(cur)]
    if rows:
        cur.executemany("INSERT INTO logon_verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
