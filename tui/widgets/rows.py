"""What the line-API table shows: a source of rows for `Timeline` (events, sessions, …).

The widget pages, caches, prefetches and renders; a source says how a window of a view is
fetched (on the worker's own cursor), how a cell reads and whether a row is marked. Each derived
table is stored like `events` (a dense ordinal, physically sorted), so a view of it is the same
`engine.views.View` of ordinals and a window the same range scan.
"""

from __future__ import annotations

from typing import Any, Protocol

import duckdb

from engine import sessions, views

from ..safe_text import escape
from .columns import cell_text, format_time, short_host


class RowSource(Protocol):
    def window(self, cur: duckdb.DuckDBPyConnection, view: views.View, start: int, n: int) -> list[dict[str, Any]]: ...

    def mark_of(self, row: dict[str, Any]) -> str | None:
        """None: not marked; "": marked without a tag; text: tagged."""
        ...

    def cell(self, row: dict[str, Any], column: str, local: bool) -> str: ...


class EventRows:
    """Events of the timeline; marks are the case's, keyed by eid."""

    def __init__(self, marks: dict[int, str | None]) -> None:
        self.marks = marks

    def window(self, cur: duckdb.DuckDBPyConnection, view: views.View, start: int, n: int) -> list[dict[str, Any]]:
        return views.window(cur, view, start, n)

    def mark_of(self, row: dict[str, Any]) -> str | None:
        eid = row.get("eid")
        return (self.marks.get(eid) or "") if eid in self.marks else None

    def cell(self, row: dict[str, Any], column: str, local: bool) -> str:
        return cell_text(row, column, local)


def duration_text(seconds: Any) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


# Short flag names for a narrow column; the detail shows the reasons in full.
FLAG_SHORT = {"ntlm_network": "NTLM", "pass_the_hash": "PtH", "cleartext": "clear", "rdp_loopback": "tunnel", "new_source": "new-src",
              "explicit_credentials": "4648"}


# LogonType as a narrow column reads it (the detail line and the CLI give the full name).
TYPE_SHORT = {0: "system", 2: "inter", 3: "net", 4: "batch", 5: "svc", 7: "unlock", 8: "clear", 9: "newcred",
              10: "rdp", 11: "cached", 12: "cachrdp", 13: "cunlock"}


class SessionRows:
    """Logon sessions; marks are kept by the session's first 4624 (its `first_eid`)."""

    def __init__(self, marks: set[int]) -> None:
        self.marks = marks

    def window(self, cur: duckdb.DuckDBPyConnection, view: views.View, start: int, n: int) -> list[dict[str, Any]]:
        return sessions.window(cur, view, start, n)

    def mark_of(self, row: dict[str, Any]) -> str | None:
        return "" if row.get("first_eid") in self.marks else None

    def cell(self, row: dict[str, Any], column: str, local: bool) -> str:
        if column == "account":
            user, domain = row.get("user"), row.get("domain")
            return escape(f"{domain}\\{user}" if domain and user else user or "")
        if column == "type":
            value = row.get("logon_type")
            return "" if value is None else f"{value} {TYPE_SHORT.get(value, '')}".strip()
        if column == "source":
            return escape(row.get("src_ip") or row.get("workstation") or "")
        if column == "priv":
            sensitive = row.get("sensitive_privileges") or []
            return ("adm" if sensitive else "yes") if row.get("privileged") else ""
        if column == "lasted":
            return duration_text(row.get("duration_s")) if row.get("end") else "open"
        if column == "flags":
            return escape(" ".join(FLAG_SHORT.get(f, f) for f in row.get("flags") or []))
        if column == "logon_id":
            value = row.get("logon_id")
            linked = row.get("linked_logon_id")
            return "" if value is None else f"0x{value:x}" + ("+" if linked else "")
        if column in ("start", "end", "last_seen"):
            return format_time(row.get(column), local)
        if column == "host":
            return escape(short_host(row.get("host")))
        return cell_text(row, column, local)


class FindingRows:
    """Findings, worst first (engine.findings); no marks of their own (their events are marked)."""

    def window(self, cur: duckdb.DuckDBPyConnection, view: views.View, start: int, n: int) -> list[dict[str, Any]]:
        from engine import findings

        return findings.window(cur, view, start, n)

    def mark_of(self, row: dict[str, Any]) -> str | None:
        return None

    def cell(self, row: dict[str, Any], column: str, local: bool) -> str:
        if column == "severity":
            return str(row.get("severity") or "")[:4]
        if column == "first":
            return format_time(row.get("first"), local)
        if column == "host":
            return escape(short_host(row.get("host")))
        if column == "attack":
            return escape(" ".join(row.get("attack") or []))
        if column in ("reason", "rule", "user"):
            return escape(row.get(column) or "")
        return cell_text(row, column, local)
