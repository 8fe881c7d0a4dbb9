"""Findings: where to look first. Rules (`rules/`, the user's rules directory, `--rules DIR`) read
the case's events, sessions and processes; each finding says why it fired, links its events, its
session and its process, and can be silenced by an allowlist."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from .rules import SEVERITIES, Rule, RuleError, RuleSet, add_to_allowlist, load, user_rules_dir
from .store import compute, current, ensure, failed_rules, refresh, rule_seconds

Cursor = duckdb.DuckDBPyConnection
__all__ = [
    "SEVERITIES",
    "Rule",
    "RuleError",
    "RuleSet",
    "add_to_allowlist",
    "compile_finding_filter",
    "compute",
    "contract",
    "count",
    "counts",
    "current",
    "ensure",
    "failed_rules",
    "get",
    "listing",
    "load",
    "refresh",
    "resolve",
    "rule_seconds",
    "term_sql",
    "user_rules_dir",
    "window",
]


def _rows(result: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description or []]
    out = []
    for r in result.fetchall():
        row = dict(zip(names, r, strict=True))
        row["values"] = json.loads(row["values"]) if row.get("values") else {}
        out.append(row)
    return out


def listing(cur: Cursor, *, rule: str | None = None, min_severity: str | None = None,
            host: str | None = None) -> list[dict[str, Any]]:
    """Findings, worst first, then oldest."""
    where: list[str] = ["TRUE"]
    params: list[Any] = []
    if rule:
        where.append("rule = ?")
        params.append(rule)
    if min_severity:
        where.append("rank >= ?")
        params.append(SEVERITIES.index(min_severity))
    if host:
        where.append("lower(host) = lower(?)")
        params.append(host)
    return _rows(cur.execute(f"SELECT * FROM findings WHERE {' AND '.join(where)} ORDER BY rank DESC, first, id",
                             params))


def get(cur: Cursor, finding: int) -> dict[str, Any] | None:
    rows = _rows(cur.execute("SELECT * FROM findings WHERE id = ?", [finding]))
    return rows[0] if rows else None


def count(cur: Cursor) -> int | None:
    """How many findings the case has cached (None when it has none computed)."""
    try:
        return int(cur.execute("SELECT count(*) FROM findings").fetchall()[0][0])
    except duckdb.CatalogException:
        return None


def _table() -> Any:
    from ..filters import Table, column_types
    from .store import COLUMNS

    types = column_types(f"CREATE TABLE findings ({COLUMNS})")
    return Table("findings", types, {"technique": ("attack",), "account": ("user",), "computer": ("host",),
                                     "why": ("reason",), "level": ("severity",)},
                 [c for c, t in types.items() if t == "VARCHAR"], "e.last >= ?", "e.first < ?", time_column="first")


def compile_finding_filter(text: str) -> Any:
    from ..filters import compile_filter

    return compile_filter(text, None, _table())


def resolve(cur: Cursor, text: str) -> Any:
    """A filter over findings → a `views.View` of their `ord`s (worst first, then oldest)."""
    from ..views import ordinal_view

    return ordinal_view(cur, compile_finding_filter(text), "findings", "ord",
                        int(cur.execute("SELECT count(*) FROM findings").fetchall()[0][0]))


def window(cur: Cursor, view: Any, start: int, n: int) -> list[dict[str, Any]]:
    from ..views import window_where

    where = window_where(view, start, n, "ord")
    if where is None:
        return []
    return _rows(cur.execute(f"SELECT * FROM findings WHERE {where[0]} ORDER BY ord", where[1]))


def counts(cur: Cursor) -> tuple[int, int] | None:
    """(findings, those high or critical), None when the case has none computed."""
    try:
        row = cur.execute("SELECT count(*), count(*) FILTER (WHERE rank >= ?) FROM findings",
                          [SEVERITIES.index("high")]).fetchall()[0]
    except duckdb.CatalogException:
        return None
    return int(row[0]), int(row[1])


def term_sql() -> str:
    """SQL over `events e` for the events of one finding (`finding:N`, bound with its id)."""
    return "e.eid IN (SELECT fe.eid FROM finding_events fe WHERE fe.finding = ?)"


def contract(cur: Cursor, row: dict[str, Any]) -> dict[str, Any]:
    """A finding as `--format jsonl` writes it."""
    from .. import lineage

    session = (f"{row['host']}/{row['boot']}/0x{int(row['logon_id']):x}"
               if row.get("logon_id") is not None and row.get("boot") is not None else None)
    process = None
    if row.get("process") is not None:
        node = lineage.get(cur, int(row["process"]))
        process = lineage.key_of(node) if node else None
    return {"id": row["id"], "rule": row["rule"], "title": row["title"], "severity": row["severity"],
            "attack": row["attack"], "host": row["host"], "user": row["user"], "first": row["first"],
            "last": row["last"], "count": row["count"], "reason": row["reason"], "eids": row["eids"],
            "session": session, "process": process, "values": row["values"]}
