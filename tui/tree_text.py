"""One process as one line, the same in `ashiato tree --format text` and in the TUI's tree.

start time, image name, PID, user, the command line (cut to fit), then what a responder must see
about the node: its marks, how many marked processes are below it, and how its parent link was
made when that link is not certain. Every value from the case goes through `safe_text` (never
markup, never terminal control). No Textual here: the CLI imports it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .safe_text import escape, fit

UNICODE = {"tee": "├─ ", "last": "└─ ", "pipe": "│  ", "gap": "   "}
ASCII = {"tee": "|- ", "last": "`- ", "pipe": "|  ", "gap": "   "}


def image_name(image: Any) -> str:
    return re.split(r"[\\/]", str(image or "?"))[-1] or "?"


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "????-??-?? ??:??:??" if value is None else str(value)[:19]


def link_note(row: dict[str, Any]) -> str:
    """How the node hangs from its parent, when that is not by GUID (certain)."""
    edge = row.get("edge")
    if edge == "pid+time":
        return "[parent by PID+time]"
    if edge == "unresolved":
        pid = row.get("parent_pid")
        who = image_name(row["parent_image"]) if row.get("parent_image") else "?"
        parent = f"PID 0x{pid:x} {who}" if isinstance(pid, int) else who
        note = row.get("edge_note") or "the parent is not in the log"
        return f"[orphan: {parent}; {note}]" if note != "the parent is not in the log" else f"[orphan: parent {parent} not in log]"
    return ""


def flags(row: dict[str, Any]) -> str:
    parts = []
    marks = row.get("marks") or []
    if marks:
        parts.append("! " + "; ".join(marks))
    below = row.get("subtree_marks") or 0
    if below:
        parts.append(f"({below} marked below)")
    return "  ".join(parts)


def fields(row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """(time, image name, pid, user, command line), escaped, uncut."""
    pid = row.get("pid")
    return (when(row.get("start")), escape(image_name(row.get("image"))), str(pid if pid is not None else "?"),
            escape(row.get("user") or "-"), escape(row.get("command_line") or ""))


def cut(text: str, width: int) -> str:
    """`fit` without the padding: at most `width` cells."""
    from rich.cells import cell_len

    return text if cell_len(text) <= width else fit(text, width)


def line(row: dict[str, Any], prefix: str, width: int) -> str:
    """The whole line for one process under `prefix` (the tree's drawing), cut to `width`: the
    command line gives way first, so the marks and the link note stay readable."""
    t, name, pid, user, cmd = fields(row)
    head = f"{prefix}{t}  {name}  {pid}  {user}"
    tail = "  ".join(x for x in (escape(flags(row)), escape(link_note(row))) if x)
    from rich.cells import cell_len

    room = width - cell_len(head) - 2 - (cell_len(tail) + 2 if tail else 0)
    if cmd and room >= 12:
        head += "  " + cut(cmd, room)
    return cut(head + ("  " + tail if tail else ""), width)


def draw(rows: list[dict[str, Any]], width: int, *, ascii_only: bool = False,
         focus: int | None = None) -> list[str]:
    """A forest in tree order (each row with `depth`, as engine.lineage gives it) as text lines,
    one header per host."""
    glyph = ASCII if ascii_only else UNICODE
    out: list[str] = []
    host: str | None = None
    # Whether each row is the last among its siblings, looking ahead in tree order.
    last = [True] * len(rows)
    for i, r in enumerate(rows):
        d = r.get("depth", 0)
        for j in range(i + 1, len(rows)):
            dj = rows[j].get("depth", 0)
            if rows[j].get("host") != r.get("host") and d == 0:
                break
            if dj < d:
                break
            if dj == d:
                last[i] = False
                break
    open_levels: list[bool] = []
    for i, r in enumerate(rows):
        if r.get("host") != host:
            host = r.get("host")
            out.append(escape(host or "?"))
        d = int(r.get("depth", 0))
        open_levels = open_levels[:d]
        prefix = "".join(glyph["pipe"] if o else glyph["gap"] for o in open_levels)
        prefix += glyph["last"] if last[i] else glyph["tee"]
        if focus is not None and r.get("node") == focus:
            prefix = prefix[:-1] + (">" if ascii_only else "▶")
        out.append(line(r, prefix, width))
        open_levels.append(not last[i])
    return out
