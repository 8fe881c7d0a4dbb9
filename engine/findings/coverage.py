"""What the logs can and cannot show, per host (domain.md §6): channels, key event IDs and the
setting that logs each, 4688 command lines, Sysmon and its IDs, lsass object-access auditing, the
time covered and its silences. A rule whose events a host never logged is "not visible" there,
never "nothing found": no finding must be read as no attack when the logging was off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import duckdb

from .rules import Rule

Cursor = duckdb.DuckDBPyConnection
SYSMON = "Microsoft-Windows-Sysmon/Operational"
POWERSHELL = "Microsoft-Windows-PowerShell/Operational"
QUIET = timedelta(hours=12)
# (label, channel, event ids, what logs them)
KEY_EVENTS: list[tuple[str, str, tuple[int, ...], str]] = [
    ("logons 4624/4625/4634/4672", "Security", (4624, 4625, 4634, 4672),
     "Logon/Logoff auditing (failures are often off)"),
    ("failed logons 4625", "Security", (4625,), "Logon/Logoff auditing of failures"),
    ("process creation 4688", "Security", (4688,), "Detailed Tracking → Audit Process Creation"),
    ("lsass handles 4656/4663", "Security", (4656, 4663), "Object Access → Audit Kernel Object and a SACL on lsass"),
    ("Kerberos / NTLM validation 4768/4769/4771/4776", "Security", (4768, 4769, 4771, 4776),
     "Account Logon auditing, on domain controllers"),
    ("explicit credentials 4648", "Security", (4648,), "Logon/Logoff → Audit Logon"),
    ("account and group changes 4720/4728/4732/4756", "Security", (4720, 4728, 4732, 4756),
     "Account Management auditing"),
    ("scheduled tasks 4698/4702", "Security", (4698, 4702), "Object Access → Audit Other Object Access Events"),
    ("log cleared 1102", "Security", (1102,), "always logged when the Security log is cleared"),
    ("services installed 7045", "System", (7045,), "on by default in the System log"),
    ("PowerShell script blocks 4104", POWERSHELL, (4104,), "PowerShell Script Block Logging GPO"),
    ("PowerShell modules 4103", POWERSHELL, (4103,), "PowerShell Module Logging GPO"),
    ("Sysmon process creation 1", SYSMON, (1,), "Sysmon installed, with a configuration logging event 1"),
    ("Sysmon process access 10", SYSMON, (10,), "a Sysmon configuration logging ProcessAccess (lsass)"),
]


def report(cur: Cursor, rules: list[Rule], *, host: str | None = None) -> list[dict[str, Any]]:
    """One dict per host (by name)."""
    where, params = ("WHERE lower(host) = lower(?)", [host]) if host else ("", [])
    hosts = cur.execute(f"""SELECT host, count(*), min(ts), max(ts) FROM events {where}
                            GROUP BY host ORDER BY host""", params).fetchall()
    channels: dict[str, dict[str, int]] = {}
    for h, channel, n in cur.execute(f"SELECT host, channel, count(*) FROM events {where} GROUP BY ALL "
                                     "ORDER BY 3 DESC", params).fetchall():
        channels.setdefault(h, {})[channel] = int(n)
    ids: dict[str, dict[tuple[str, int], int]] = {}
    for h, channel, eid, n in cur.execute(f"""SELECT host, channel, event_id, count(*) FROM events {where}
                                              GROUP BY ALL""", params).fetchall():
        ids.setdefault(h, {})[(channel, int(eid))] = int(n)
    cmd = {h: (int(n), int(k)) for h, n, k in cur.execute(f"""
        SELECT host, count(*), count(*) FILTER (WHERE coalesce(trim(command_line), '') <> '')
        FROM events WHERE channel = 'Security' AND event_id = 4688 {where.replace('WHERE', 'AND')}
        GROUP BY host""", params).fetchall()}
    lsass = {h: int(n) for h, n in cur.execute(f"""
        SELECT host, count(*) FROM events WHERE channel = 'Security' AND event_id IN (4656, 4663)
        AND ends_with(lower(object_name), '\\lsass.exe') {where.replace('WHERE', 'AND')} GROUP BY host""",
                                                 params).fetchall()}
    gaps: dict[str, list[tuple[Any, Any]]] = {}
    for h, before, after in cur.execute(f"""
        WITH g AS (SELECT host, ts, lag(ts) OVER (PARTITION BY host ORDER BY ts) AS before FROM events {where})
        SELECT host, before, ts FROM g WHERE ts - before > ? ORDER BY host, ts""", [*params, QUIET]).fetchall():
        gaps.setdefault(h, []).append((before, after))
    out = []
    for h, n, first, last in hosts:
        present = ids.get(h, {})
        key = []
        for label, channel, eids, setting in KEY_EVENTS:
            count = sum(present.get((channel, e), 0) for e in eids)
            key.append({"what": label, "count": count, "needs": setting})
        not_visible, visible = [], []
        for rule in rules:
            if not rule.needs:
                continue
            if any(present.get(need) for need in rule.needs):
                visible.append(rule.id)
            else:
                not_visible.append({"rule": rule.id, "title": rule.title,
                                    "needs": [f"{c}:{e}" for c, e in rule.needs]})
        n_4688, with_cmd = cmd.get(h, (0, 0))
        out.append({
            "host": h, "events": int(n), "first": first, "last": last, "channels": channels.get(h, {}),
            "key_events": key,
            "process_command_lines": None if not n_4688 else round(with_cmd / n_4688, 4),
            "sysmon_ids": sorted(e for (c, e) in present if c == SYSMON),
            "lsass_audit": lsass.get(h, 0),
            "gaps": [{"from": a, "to": b, "hours": round((b - a).total_seconds() / 3600, 1)} for a, b in gaps.get(h, [])],
            "not_visible": not_visible, "visible_rules": visible,
        })
    return out


def lines(host: dict[str, Any]) -> list[str]:
    """A host's coverage as sentences for people."""
    out = ["channels: " + ", ".join(f"{c} {n:,}" for c, n in list(host["channels"].items())[:8])
           + (f" (+{len(host['channels']) - 8} more)" if len(host["channels"]) > 8 else "")]
    for k in host["key_events"]:
        out.append(f"{k['what']}: {k['count']:,}" if k["count"] else
                   f"{k['what']}: not visible (none logged; needs {k['needs']})")
    share = host["process_command_lines"]
    if share is not None:
        out.append(f"4688 command lines: {share:.0%} of process creations"
                   + ("" if share >= 0.99 else " (not visible in the rest: needs the GPO 'Include command line in "
                                              "process creation events')"))
    out.append("Sysmon: " + (", ".join(map(str, host["sysmon_ids"])) if host["sysmon_ids"]
                             else "not present (processes, network, lsass access by Sysmon not visible)"))
    for gap in host["gaps"][:5]:
        out.append(f"silent {gap['hours']} h: {gap['from']:%Y-%m-%d %H:%M} – {gap['to']:%Y-%m-%d %H:%M}")
    if len(host["gaps"]) > 5:
        out.append(f"… {len(host['gaps']) - 5} more silences over {QUIET.total_seconds() / 3600:.0f} h")
    for rule in host["not_visible"]:
        out.append(f"not visible: {rule['title']} ({rule['rule']}; reads {', '.join(rule['needs'])})")
    return out
