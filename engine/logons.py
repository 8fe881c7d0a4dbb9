"""Failed logons, grouped by account and source, and the verdicts they support (domain.md §2).

Failures are Security 4625 on the target host, and the domain controller's view of them: 4771
(Kerberos pre-authentication), 4776 (NTLM credential validation) and 4768 (TGT request) with a
non-zero status. A verdict names the events behind it:

- brute force: one account failing on one host, N times within M minutes;
- password spraying: one source failing against N distinct accounts within M minutes;
- success after failures: failures for an account from a source, then its 4624 from that source
  within M minutes, with the session it opened;
- lockout: each 4740.

The thresholds are data (`logon_thresholds.toml` beside this module), overridable per user.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from . import boots
from .decode import kerberos_status, ntstatus, percent_string

Cursor = duckdb.DuckDBPyConnection
DEFAULT_THRESHOLDS = Path(__file__).with_name("logon_thresholds.toml")

FAILURES = """(SELECT e.eid, e.pos, e.ts, e.host, e.channel, e.event_id, lower(e.target_user) AS account,
        e.target_user AS "user", e.target_domain AS domain, coalesce(e.src_ip, e.workstation) AS source,
        e.logon_type, e.status, e.substatus, e.failure_reason, e.auth_package
    FROM events e
    WHERE e.channel = 'Security' AND e.target_user IS NOT NULL
      AND (e.event_id = 4625 OR (e.event_id IN (4768, 4771, 4776) AND coalesce(e.status, 0) <> 0)))"""


# One wrong password on a domain controller is logged twice, as the logon's 4625 and as the
# Kerberos (4771 / 4768) or NTLM (4776) validation of it: brute force counts each kind apart, so one
# attempt is one.
FAMILY = "CASE WHEN event_id = 4625 THEN 'logon' WHEN event_id = 4776 THEN 'ntlm' ELSE 'kerberos' END"


# A successful logon, or what a domain controller sees of one: a TGT issued, an NTLM validation
# that passed (the guess that worked, from the source its failures came from).
SUCCESS = "(e.event_id = 4624 OR (e.event_id IN (4768, 4776) AND e.status = 0))"


class ThresholdError(ValueError):
    """A thresholds file that cannot be used, naming the file, the line and the key."""


@dataclass(frozen=True)
class Thresholds:
    brute_force_failures: int = 5
    brute_force_minutes: int = 5
    spray_accounts: int = 3
    spray_minutes: int = 30
    success_failures: int = 3
    success_minutes: int = 10


_KEYS = {
    ("brute_force", "failures"): "brute_force_failures",
    ("brute_force", "minutes"): "brute_force_minutes",
    ("password_spray", "accounts"): "spray_accounts",
    ("password_spray", "minutes"): "spray_minutes",
    ("success_after_failures", "failures"): "success_failures",
    ("success_after_failures", "minutes"): "success_minutes",
}


def user_thresholds_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("ashiato")) / "logon_thresholds.toml"


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith((f"{key} ", f"{key}=", f"[{key}]")):
            return number
    return 0


def _suggest(name: str, names: list[str]) -> str:
    from rapidfuzz import process

    best = process.extractOne(name, names, score_cutoff=60)
    return f' (did you mean "{best[0]}"?)' if best else ""


def load_thresholds(*paths: Path | None) -> Thresholds:
    """The defaults, then each existing file in turn (the user's config dir when none is given)."""
    values = dict(Thresholds().__dict__)
    chosen = [p for p in (paths or (DEFAULT_THRESHOLDS, user_thresholds_path())) if p is not None]
    sections = sorted({s for s, _ in _KEYS})
    for path in chosen:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ThresholdError(f"{path}: {exc}") from None
        for section, table in data.items():
            if section not in sections or not isinstance(table, dict):
                raise ThresholdError(f"{path}:{_line_of(text, section)}: unknown section [{section}]"
                                     f"{_suggest(section, sections)}")
            keys = sorted(k for s, k in _KEYS if s == section)
            for key, value in table.items():
                if key not in keys:
                    raise ThresholdError(f"{path}:{_line_of(text, key)}: unknown key {key!r} in [{section}]"
                                         f"{_suggest(key, keys)}")
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ThresholdError(f"{path}:{_line_of(text, key)}: {section}.{key} must be a whole "
                                         f"number of at least 1, not {value!r}")
                values[_KEYS[(section, key)]] = value
    return Thresholds(**values)


def meaning(event_id: int | None, status: int | None, substatus: int | None, reason: str | None) -> str:
    """Why a logon failed, decoded next to the raw codes."""
    if event_id in (4768, 4771):
        return kerberos_status(status) or ""
    # SubStatus says why when Status is the generic 0xC000006D; FailureReason repeats it in words.
    return (ntstatus(substatus) if substatus else None) or (ntstatus(status) if status else None) \
        or (percent_string(reason) if reason else None) or ""


def code_text(status: int | None, substatus: int | None) -> str:
    """The raw codes as Windows writes them, to show next to their meaning."""
    if status is None:
        return "-"
    return f"0x{status:x}" + (f"/0x{substatus:x}" if substatus else "")


def groups(cur: Cursor, *, account: str | None = None) -> list[dict[str, Any]]:
    """One row per (account, source): how often, when, where, and why."""
    where = "WHERE f.account = lower(?)" if account else ""
    rows = cur.execute(f"""
        SELECT f.account, any_value(f."user") AS "user", list_sort(list_distinct(list(f.domain))) AS domains,
               f.source, count(*) AS count, min(f.ts) AS first, max(f.ts) AS last,
               list_sort(list_distinct(list(f.host))) AS hosts, list_sort(list_distinct(list(f.event_id))) AS event_ids,
               list_sort(list_distinct(list(f.logon_type))) AS logon_types,
               list({{'event_id': f.event_id, 'status': f.status, 'substatus': f.substatus,
                      'failure_reason': f.failure_reason}}) AS codes
        FROM {FAILURES} f {where}
        GROUP BY f.account, f.source ORDER BY count DESC, last DESC""", [account] if account else []).fetchall()
    out = []
    for (acct, user, domains, source, count, first, last, hosts, event_ids, logon_types, codes) in rows:
        tally: dict[tuple[Any, Any, Any, Any], int] = {}
        for c in codes:
            k = (c["status"], c["substatus"], c["failure_reason"], c["event_id"])
            tally[k] = tally.get(k, 0) + 1
        statuses = [{"status": s, "substatus": ss, "failure_reason": fr, "meaning": meaning(eid, s, ss, fr), "count": n}
                    for (s, ss, fr, eid), n in sorted(tally.items(), key=lambda kv: -kv[1])]
        out.append({"kind": "group", "account": acct, "user": user, "domains": [d for d in domains if d],
                    "source": source, "count": int(count), "first": first, "last": last, "hosts": hosts,
                    "event_ids": event_ids, "logon_types": [t for t in logon_types if t is not None],
                    "statuses": statuses})
    return out


def verdicts(cur: Cursor, thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
    """Every verdict, worst kind first, each with the events that support it."""
    t = thresholds or load_thresholds()
    out: list[dict[str, Any]] = []
    # Brute force: bursts of one account's failures on one host (a gap longer than the window ends
    # a burst), kept when some window of the burst holds enough of them.
    for row in cur.execute(f"""
        WITH k AS (SELECT *, {FAMILY} AS family FROM {FAILURES}),
             f AS (SELECT *, count(*) OVER (PARTITION BY host, account, family ORDER BY ts
                       RANGE BETWEEN CURRENT ROW AND INTERVAL (?) MINUTE FOLLOWING) AS in_window,
                       ts - lag(ts) OVER (PARTITION BY host, account, family ORDER BY ts, pos) AS gap
                   FROM k),
             b AS (SELECT *, sum(CASE WHEN gap IS NULL OR gap > INTERVAL (?) MINUTE THEN 1 ELSE 0 END)
                       OVER (PARTITION BY host, account, family ORDER BY ts, pos) AS burst FROM f)
        SELECT host, account, any_value("user"), list_sort(list_distinct(list(source))) AS sources, count(*),
               min(ts), max(ts), list(eid ORDER BY pos), max(in_window)
        FROM b GROUP BY host, account, family, burst HAVING max(in_window) >= ?
        ORDER BY min(ts), host, account""", [t.brute_force_minutes, t.brute_force_minutes, t.brute_force_failures]).fetchall():
        host, account, user, sources, count, first, last, eids, peak = row
        srcs = [s for s in sources if s]
        out.append({"kind": "verdict", "verdict": "brute_force", "account": account, "accounts": [account],
                    "source": srcs[0] if len(srcs) == 1 else None, "sources": srcs, "host": host,
                    "count": int(count), "first": first, "last": last, "eids": eids,
                    "reason": f"{peak} failed logons for {user} on {host} within {t.brute_force_minutes} min "
                              f"({count} in the burst{', from ' + ', '.join(srcs[:3]) if srcs else ''})"})
    # Password spraying: one source, many accounts.
    for row in cur.execute(f"""
        WITH f AS (SELECT *, count(DISTINCT account) OVER (PARTITION BY source ORDER BY ts
                       RANGE BETWEEN CURRENT ROW AND INTERVAL (?) MINUTE FOLLOWING) AS in_window,
                       ts - lag(ts) OVER (PARTITION BY source ORDER BY ts, pos) AS gap
                   FROM {FAILURES} WHERE source IS NOT NULL),
             b AS (SELECT *, sum(CASE WHEN gap IS NULL OR gap > INTERVAL (?) MINUTE THEN 1 ELSE 0 END)
                       OVER (PARTITION BY source ORDER BY ts, pos) AS burst FROM f)
        SELECT source, list_sort(list_distinct(list(account))), list_sort(list_distinct(list(host))), count(*),
               min(ts), max(ts), list(eid ORDER BY pos), max(in_window)
        FROM b GROUP BY source, burst HAVING max(in_window) >= ?
        ORDER BY min(ts), source""", [t.spray_minutes, t.spray_minutes, t.spray_accounts]).fetchall():
        source, accounts, hosts, count, first, last, eids, peak = row
        out.append({"kind": "verdict", "verdict": "password_spray", "account": None, "accounts": accounts,
                    "source": source, "sources": [source], "host": hosts[0] if len(hosts) == 1 else None,
                    "hosts": hosts, "count": int(count), "first": first, "last": last, "eids": eids,
                    "reason": f"{source} failed against {peak} accounts within {t.spray_minutes} min "
                              f"({len(accounts)} in all: {', '.join(accounts[:5])}{' …' if len(accounts) > 5 else ''})"})
    # Success after failures: the logon the failures led to, and its session.
    for row in cur.execute(f"""
        WITH ok AS (SELECT * FROM {boots.boot_of_sql(
                        "(SELECT e.eid, e.pos, e.ts, e.host, lower(e.target_user) AS account, e.target_user, "
                        "coalesce(e.src_ip, e.workstation) AS source, e.target_logon_id, e.logon_type FROM events e "
                        f"WHERE e.channel = 'Security' AND e.target_user IS NOT NULL AND {SUCCESS})")}),
             hits AS (SELECT ok.eid AS ok_eid, ok.ts AS ok_ts, ok.host AS ok_host, ok.account, ok.target_user,
                             ok.source, ok.target_logon_id, ok.boot, ok.logon_type,
                             list(f.eid ORDER BY f.pos) AS eids, count(*) AS n, min(f.ts) AS first
                      FROM (SELECT *, lag(pos) OVER (PARTITION BY account, source ORDER BY pos) AS previous_ok
                            FROM ok) ok
                      JOIN {FAILURES} f ON f.account = ok.account AND f.source = ok.source
                           AND f.ts <= ok.ts AND f.ts >= ok.ts - INTERVAL (?) MINUTE AND f.pos < ok.pos
                           -- the failures since the last success only: one guess that worked is
                           -- one verdict, not one per later logon of the same account
                           AND f.pos > coalesce(ok.previous_ok, -1)
                      GROUP BY ALL HAVING count(*) >= ?)
        SELECT h.*, s.logon_id AS session_logon_id FROM hits h
        LEFT JOIN sessions s ON s.host = h.ok_host AND s.boot = h.boot
             AND (s.logon_id = h.target_logon_id OR s.linked_logon_id = h.target_logon_id)
        ORDER BY h.ok_ts""", [t.success_minutes, t.success_failures]).fetchall():
        (ok_eid, ok_ts, host, account, user, source, _lid, boot, logon_type, eids, n, first, session_lid) = row
        how = f"type {logon_type}" if logon_type is not None else "validated by the domain controller"
        session = ({"host": host, "boot": boot, "logon_id": int(session_lid)} if session_lid is not None else None)
        out.append({"kind": "verdict", "verdict": "success_after_failures", "account": account,
                    "accounts": [account], "source": source, "sources": [source], "host": host,
                    "count": int(n), "first": first, "last": ok_ts, "eids": [*eids, ok_eid],
                    "session": session, "logon_type": logon_type,
                    "reason": f"{user} logged on to {host} from {source} ({how}) after {n} failures "
                              f"within {t.success_minutes} min: the guessing may have worked"})
    # A spray that worked: a sprayer fails once per account, so "failures of the same account" never
    # sees it; the spraying source logging on as any account soon after is the sign.
    for spray in [v for v in out if v["verdict"] == "password_spray"]:
        for row in cur.execute(f"""
            SELECT ok.eid, ok.ts, ok.host, lower(ok.target_user), ok.target_user, ok.logon_type, s.logon_id, ok.boot
            FROM {boots.boot_of_sql(
                "(SELECT e.eid, e.pos, e.ts, e.host, e.target_user, e.target_logon_id, e.logon_type FROM events e "
                "WHERE e.channel = 'Security' AND e.event_id = 4624 AND coalesce(e.src_ip, e.workstation) = ? "
                "AND e.ts >= ? AND e.ts <= ? + INTERVAL (?) MINUTE)")} ok
            LEFT JOIN sessions s ON s.host = ok.host AND s.boot = ok.boot
                 AND (s.logon_id = ok.target_logon_id OR s.linked_logon_id = ok.target_logon_id)
            ORDER BY ok.pos LIMIT 1""", [spray["source"], spray["first"], spray["last"], t.success_minutes]).fetchall():
            eid, ts, host, account, user, logon_type, session_lid, boot = row
            session = {"host": host, "boot": boot, "logon_id": int(session_lid)} if session_lid is not None else None
            out.append({"kind": "verdict", "verdict": "success_after_failures", "account": account,
                        "accounts": [account], "source": spray["source"], "sources": [spray["source"]],
                        "host": host, "count": spray["count"], "first": spray["first"], "last": ts,
                        "eids": [*spray["eids"], eid], "session": session, "logon_type": logon_type,
                        "after": "password_spray",
                        "reason": f"{user} logged on to {host} from {spray['source']} (type {logon_type}) during or "
                                  f"soon after its password spray ({len(spray['accounts'])} accounts): "
                                  f"one guess may have worked"})
    for row in cur.execute("""SELECT e.eid, e.ts, e.host, lower(e.target_user), e.target_user, e.target_domain
                              FROM events e WHERE e.channel = 'Security' AND e.event_id = 4740 ORDER BY e.pos""").fetchall():
        eid, ts, host, account, user, caller = row
        out.append({"kind": "verdict", "verdict": "lockout", "account": account, "accounts": [account],
                    "source": caller, "sources": [caller] if caller else [], "host": host, "count": 1,
                    "first": ts, "last": ts, "eids": [eid],
                    "reason": f"{user} locked out on {host}" + (f" (caller computer {caller})" if caller else "")})
    return out


def failed(cur: Cursor, thresholds: Thresholds | None = None, text: str = "") -> list[dict[str, Any]]:
    """The failed-logon view: verdicts first, then the groups; with `text`, those it matches."""
    rows = verdicts(cur, thresholds) + groups(cur)
    return filter_rows(rows, text) if text.strip() else rows


def group_eids(cur: Cursor, row: dict[str, Any]) -> list[int]:
    """The events behind a row: a verdict names them; a group's are its account's failures from its source."""
    if row.get("eids"):
        return [int(e) for e in row["eids"]]
    found = cur.execute(f"SELECT eid FROM {FAILURES} f WHERE f.account = ? AND f.source IS NOT DISTINCT FROM ? "
                        "ORDER BY pos", [row["account"], row.get("source")]).fetchall()
    return [int(r[0]) for r in found]


# -- the filter language over the rows of the view -------------------------------------------------
ROW_TYPES = {"kind": "VARCHAR", "verdict": "VARCHAR", "account": "VARCHAR", "accounts": "VARCHAR[]",
             "source": "VARCHAR", "sources": "VARCHAR[]", "hosts": "VARCHAR[]", "count": "BIGINT",
             "first": "TIMESTAMP", "last": "TIMESTAMP", "reason": "VARCHAR", "codes": "VARCHAR"}


def _rows_table() -> Any:
    from .filters import Table

    return Table("failed logon rows", ROW_TYPES,
                 {"user": ("account", "accounts"), "ip": ("source", "sources"), "src_ip": ("source", "sources"),
                  "workstation": ("source", "sources"), "host": ("hosts",), "computer": ("hosts",),
                  "status": ("codes",), "why": ("reason", "codes")},
                 ["kind", "verdict", "account", "source", "reason", "codes"],
                 "e.last >= ?", "e.first < ?", time_column="first")


def compile_row_filter(text: str) -> Any:
    from .filters import compile_filter

    return compile_filter(text, None, _rows_table())


def filter_rows(rows: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The rows (verdicts and groups) a filter matches: `user:alice host:DC01 verdict:spray count>10
    after:…`, the same language as the timeline's over the rows' own columns. Worked out in an
    in-memory DuckDB, never in the case."""
    import pyarrow as pa

    compiled = compile_row_filter(text)
    if not rows:
        return []
    table = pa.table({
        "i": list(range(len(rows))),
        "kind": [r["kind"] for r in rows], "verdict": [r.get("verdict") for r in rows],
        "account": [r.get("account") for r in rows],
        "accounts": [list(r.get("accounts") or ([r["account"]] if r.get("account") else [])) for r in rows],
        "source": [r.get("source") for r in rows],
        "sources": [list(r.get("sources") or ([r["source"]] if r.get("source") else [])) for r in rows],
        "hosts": [list(r.get("hosts") or ([r["host"]] if r.get("host") else [])) for r in rows],
        "count": [int(r.get("count") or 0) for r in rows],
        "first": pa.array([r.get("first") for r in rows], pa.timestamp("us")),
        "last": pa.array([r.get("last") for r in rows], pa.timestamp("us")),
        "reason": [r.get("reason") for r in rows],
        "codes": [" ".join(f"{code_text(s['status'], s['substatus'])} {s['meaning']}" for s in r.get("statuses", []))
                  or None for r in rows],
    }, schema=pa.schema([("i", pa.int64()), ("kind", pa.string()), ("verdict", pa.string()),
                         ("account", pa.string()), ("accounts", pa.list_(pa.string())), ("source", pa.string()),
                         ("sources", pa.list_(pa.string())), ("hosts", pa.list_(pa.string())),
                         ("count", pa.int64()), ("first", pa.timestamp("us")), ("last", pa.timestamp("us")),
                         ("reason", pa.string()), ("codes", pa.string())]))
    con = duckdb.connect()
    try:
        con.register("failed_rows", table)
        keep = [int(r[0]) for r in con.execute(f"SELECT i FROM failed_rows e WHERE {compiled.sql} ORDER BY i",
                                                list(compiled.params)).fetchall()]
    finally:
        con.close()
    return [rows[i] for i in keep]


def frequency(rows: list[dict[str, Any]], column: str) -> list[tuple[Any, int]]:
    """How many failures each value of `column` (account, source, host, verdict) has among the rows'
    groups (verdicts for `verdict`), most first."""
    counts: dict[Any, int] = {}
    for r in rows:
        if column == "verdict":
            if r["kind"] == "verdict":
                counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
            continue
        if r["kind"] != "group":
            continue
        values = r.get("hosts") or [None] if column == "host" else [r.get(column)]
        for v in values:
            counts[v] = counts.get(v, 0) + int(r["count"])
    return sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))


ROW_FREQUENCY_COLUMNS = ("account", "source", "host", "verdict")
