"""Who went where: per-account summaries and logon edges (LogonTracer's graph as a table).

Successes are the 4624 of the case (each counted, so SYSTEM's many service logons are many),
failures are the failed logons of engine.logons. An edge is (account, source, target host, logon
type, auth package); `graphml` and `dot` write it as a graph that Gephi, yEd, Cytoscape or Graphviz
open, with accounts, sources and hosts as nodes.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

import duckdb

from .logons import FAILURES

Cursor = duckdb.DuckDBPyConnection

_LOGONS = f"""(
    SELECT lower(e.target_user) AS account, e.target_user AS "user", e.target_domain AS domain,
           coalesce(e.src_ip, e.workstation) AS source, e.host, e.logon_type, e.auth_package, e.ts,
           TRUE AS ok, e.target_logon_id AS logon_id
    FROM events e WHERE e.channel = 'Security' AND e.event_id = 4624 AND e.target_user IS NOT NULL
    UNION ALL
    SELECT f.account, f."user", f.domain, f.source, f.host, f.logon_type, f.auth_package, f.ts, FALSE, NULL
    FROM {FAILURES} f)"""

EDGE_TYPES = {"account": "VARCHAR", "user": "VARCHAR", "domain": "VARCHAR", "source": "VARCHAR",
              "host": "VARCHAR", "logon_type": "SMALLINT", "auth_package": "VARCHAR", "successes": "BIGINT",
              "failures": "BIGINT", "first": "TIMESTAMP", "last": "TIMESTAMP"}
USER_TYPES = {"account": "VARCHAR", "user": "VARCHAR", "domains": "VARCHAR[]", "successes": "BIGINT",
              "failures": "BIGINT", "privileged_sessions": "BIGINT", "sessions": "BIGINT",
              "hosts": "VARCHAR[]", "sources": "VARCHAR[]", "first": "TIMESTAMP", "last": "TIMESTAMP",
              "by_type": "VARCHAR", "failed_by_type": "VARCHAR", "by_source": "VARCHAR",
              "failed_by_source": "VARCHAR"}


def _table(name: str, types: dict[str, str]) -> Any:
    from .filters import Table

    return Table(name, types, {"type": ("logon_type",), "ip": ("source",), "auth": ("auth_package",),
                               "computer": ("host",), "host": ("hosts",) if name == "users" else ("host",)},
                 [c for c, t in types.items() if t == "VARCHAR"],
                 'e."last" >= ?', 'e."first" < ?', time_column="first")


def _rows(result: Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def edges(cur: Cursor, text: str = "") -> list[dict[str, Any]]:
    from .filters import compile_filter

    compiled = compile_filter(text, None, _table("edges", EDGE_TYPES))
    return _rows(cur.execute(f"""
        SELECT * FROM (
            SELECT account, any_value("user") AS "user", any_value(domain) AS domain, source, host, logon_type,
                   auth_package, count(*) FILTER (WHERE ok) AS successes, count(*) FILTER (WHERE NOT ok) AS failures,
                   min(ts) AS "first", max(ts) AS "last"
            FROM {_LOGONS} GROUP BY account, source, host, logon_type, auth_package) e
        WHERE {compiled.sql}
        ORDER BY failures + successes DESC, "last" DESC""", compiled.params))


def _tally(expr: str, cond: str) -> str:
    """"3:12 10:2" — counts per value, most first."""
    return (f"array_to_string(list_transform(list_sort(list_distinct(list({expr}) FILTER (WHERE {cond}))), "
            f"lambda v: v || ':' || list_count(list_filter(list({expr}) FILTER (WHERE {cond}), lambda w: w = v))), ' ')")


def by_user(cur: Cursor, text: str = "") -> list[dict[str, Any]]:
    """Per account: successes and failures by logon type and by source, hosts, first and last."""
    from .filters import compile_filter

    compiled = compile_filter(text, None, _table("users", USER_TYPES))
    return _rows(cur.execute(f"""
        SELECT * FROM (
            SELECT l.account, any_value(l."user") AS "user", list_sort(list_distinct(list(l.domain))) AS domains,
                   count(*) FILTER (WHERE l.ok) AS successes, count(*) FILTER (WHERE NOT l.ok) AS failures,
                   any_value(s.privileged_sessions) AS privileged_sessions, any_value(s.sessions) AS sessions,
                   list_sort(list_distinct(list(l.host) FILTER (WHERE l.ok))) AS hosts,
                   list_sort(list_distinct(list(l.source))) AS sources,
                   min(l.ts) AS "first", max(l.ts) AS "last",
                   {_tally("l.logon_type::VARCHAR", "l.ok")} AS by_type,
                   {_tally("l.logon_type::VARCHAR", "NOT l.ok")} AS failed_by_type,
                   {_tally("coalesce(l.source, '-')", "l.ok")} AS by_source,
                   {_tally("coalesce(l.source, '-')", "NOT l.ok")} AS failed_by_source
            FROM {_LOGONS} l
            LEFT JOIN (SELECT lower("user") AS account, count(*) AS sessions,
                              count(*) FILTER (WHERE privileged) AS privileged_sessions
                       FROM sessions GROUP BY 1) s ON s.account = l.account
            GROUP BY l.account) e
        WHERE {compiled.sql}
        ORDER BY failures + successes DESC, account""", compiled.params))


def _node_ids(edge_rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    ids: dict[tuple[str, str], str] = {}
    for r in edge_rows:
        for kind, value in (("account", r["account"]), ("source", r["source"]), ("host", r["host"])):
            if value is not None and (kind, value) not in ids:
                ids[(kind, value)] = f"n{len(ids)}"
    return ids


def graphml(edge_rows: list[dict[str, Any]]) -> str:
    """Accounts, sources and hosts as nodes; source → account and account → host as edges, each
    with its logon type, package and counts."""
    ids = _node_ids(edge_rows)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
           '<key id="label" for="node" attr.name="label" attr.type="string"/>',
           '<key id="kind" for="node" attr.name="kind" attr.type="string"/>',
           '<key id="logon_type" for="edge" attr.name="logon_type" attr.type="int"/>',
           '<key id="auth_package" for="edge" attr.name="auth_package" attr.type="string"/>',
           '<key id="successes" for="edge" attr.name="successes" attr.type="long"/>',
           '<key id="failures" for="edge" attr.name="failures" attr.type="long"/>',
           '<key id="first" for="edge" attr.name="first" attr.type="string"/>',
           '<key id="last" for="edge" attr.name="last" attr.type="string"/>',
           '<graph id="logons" edgedefault="directed">']
    for (kind, value), node in ids.items():
        out.append(f'<node id="{node}"><data key="label">{_xml(value)}</data><data key="kind">{kind}</data></node>')
    for i, r in enumerate(edge_rows):
        data = "".join(f'<data key="{k}">{_xml(r[k])}</data>' for k in
                       ("logon_type", "auth_package", "successes", "failures", "first", "last") if r[k] is not None)
        account = ids[("account", r["account"])]
        if r["source"] is not None:
            out.append(f'<edge id="s{i}" source="{ids[("source", r["source"])]}" target="{account}">{data}</edge>')
        out.append(f'<edge id="e{i}" source="{account}" target="{ids[("host", r["host"])]}">{data}</edge>')
    out += ["</graph>", "</graphml>"]
    return "\n".join(out) + "\n"


def dot(edge_rows: list[dict[str, Any]]) -> str:
    ids = _node_ids(edge_rows)
    shapes = {"account": "ellipse", "source": "diamond", "host": "box"}
    out = ["digraph logons {", "  rankdir=LR;"]
    for (kind, value), node in ids.items():
        out.append(f"  {node} [label={_dot(value)}, shape={shapes[kind]}];")
    for r in edge_rows:
        label = _dot(f"type {r['logon_type']} {r['auth_package'] or ''} ✓{r['successes']} ✗{r['failures']}".strip())
        account = ids[("account", r["account"])]
        if r["source"] is not None:
            out.append(f"  {ids[('source', r['source'])]} -> {account} [label={label}];")
        out.append(f"  {account} -> {ids[('host', r['host'])]} [label={label}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _xml(value: Any) -> str:
    # Element text: quoteattr escapes &, <, > and quotes; its surrounding quotes are dropped.
    return quoteattr(_printable(str(value)))[1:-1]


def _dot(value: Any) -> str:
    return '"' + _printable(str(value)).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _printable(text: str) -> str:
    """Event text may hold control characters (C0 and C1, which XML 1.0 cannot carry or a terminal
    would obey), bidi overrides and other format characters, surrogates and non-characters: each
    is written as its \\uXXXX escape instead."""
    import unicodedata

    def safe(ch: str) -> str:
        code = ord(ch)
        if ch == "\t" or (unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
                           and (code & 0xFFFE) != 0xFFFE):
            return ch
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    return "".join(safe(ch) for ch in text)
