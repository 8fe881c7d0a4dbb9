"""Timeline columns: what each shows, how wide it wants to be, and how widths fit the terminal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.schema import COLUMN_TYPES, EVENT_COLUMN_NAMES

from ..safe_text import escape, to_str

# Derived columns computed by engine.views.window, plus the formatted time.
DERIVED = ("time", "summary", "user", "process")
DEFAULT_COLUMNS = ["time", "host", "channel", "event_id", "summary", "user", "process"]

_SHORT_CHANNELS = {
    "security": "Security",
    "system": "System",
    "application": "Application",
    "microsoft-windows-sysmon/operational": "Sysmon",
    "microsoft-windows-powershell/operational": "PowerShell",
    "windows powershell": "WinPS",
    "powershellcore/operational": "PwshCore",
    "microsoft-windows-terminalservices-localsessionmanager/operational": "TS-LSM",
    "microsoft-windows-terminalservices-remoteconnectionmanager/operational": "TS-RCM",
    "microsoft-windows-remotedesktopservices-rdpcorets/operational": "RdpCoreTS",
    "microsoft-windows-windows defender/operational": "Defender",
    "microsoft-windows-taskscheduler/operational": "TaskSched",
    "microsoft-windows-wmi-activity/operational": "WMI",
    "microsoft-windows-bits-client/operational": "BITS",
    "microsoft-windows-grouppolicy/operational": "GroupPolicy",
    "microsoft-windows-winrm/operational": "WinRM",
    "microsoft-windows-windows firewall with advanced security/firewall": "Firewall",
    "microsoft-windows-dns-client/operational": "DNS-Client",
    "microsoft-windows-smbserver/security": "SMBServer",
}


def short_channel(channel: Any) -> str:
    """"Microsoft-Windows-Sysmon/Operational" → "Sysmon"; unknown channels lose the common affixes."""
    text = to_str(channel)
    if not text:
        return ""
    known = _SHORT_CHANNELS.get(text.lower())
    if known:
        return known
    out = text.removeprefix("Microsoft-Windows-")
    for suffix in ("/Operational", "/Admin"):
        out = out.removesuffix(suffix)
    return out


def short_host(host: Any) -> str:
    """"WS07.corp.local" → "WS07"; IP addresses stay whole."""
    text = to_str(host)
    if not text or text.replace(".", "").isdigit() or ":" in text:
        return text
    return text.split(".", 1)[0]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    title: str
    pref: int  # preferred width
    minimum: int
    priority: int  # higher survives longer on narrow terminals
    flex: bool = False  # takes the remaining width


_SPECS: dict[str, ColumnSpec] = {
    "time": ColumnSpec("time", "time", 19, 19, 100),
    "host": ColumnSpec("host", "host", 15, 8, 80),
    "channel": ColumnSpec("channel", "channel", 10, 6, 60),
    "event_id": ColumnSpec("event_id", "id", 5, 5, 90),
    "summary": ColumnSpec("summary", "summary", 40, 24, 95, flex=True),
    "user": ColumnSpec("user", "user", 18, 8, 50),
    "process": ColumnSpec("process", "process", 16, 8, 40),
    "logon_type": ColumnSpec("logon_type", "type", 4, 4, 70),
    "src_ip": ColumnSpec("src_ip", "source ip", 15, 7, 65),
    "dst_ip": ColumnSpec("dst_ip", "dest ip", 15, 7, 65),
    "src_port": ColumnSpec("src_port", "sport", 5, 5, 30),
    "dst_port": ColumnSpec("dst_port", "dport", 5, 5, 55),
    "dst_host": ColumnSpec("dst_host", "dest host", 18, 8, 55),
    "workstation": ColumnSpec("workstation", "workstation", 14, 8, 45),
    "status": ColumnSpec("status", "status", 10, 10, 60),
    "substatus": ColumnSpec("substatus", "substatus", 10, 10, 58),
    "granted_access": ColumnSpec("granted_access", "access", 8, 6, 70),
    "object_name": ColumnSpec("object_name", "object", 28, 12, 60),
    "command_line": ColumnSpec("command_line", "command line", 40, 16, 62),
    "target_image": ColumnSpec("target_image", "target", 16, 8, 66),
    "parent_image": ColumnSpec("parent_image", "parent", 16, 8, 45),
    "process_image": ColumnSpec("process_image", "image", 24, 8, 45),
    "service_name": ColumnSpec("service_name", "service", 18, 8, 65),
    "task_name": ColumnSpec("task_name", "task", 24, 8, 65),
    "auth_package": ColumnSpec("auth_package", "auth", 9, 4, 50),
    "privileges": ColumnSpec("privileges", "privileges", 30, 12, 45),
    "script_text": ColumnSpec("script_text", "script", 40, 16, 62),
}

KNOWN_COLUMNS = sorted(set(DERIVED) | set(EVENT_COLUMN_NAMES))
# Shown in hex, as Windows writes them (0xc000006a, 0x1410, 0x3e7); stored as integers.
HEX_COLUMNS = frozenset({"granted_access", "status", "substatus", "subject_logon_id", "target_logon_id",
                         "linked_logon_id"})
_BASENAME_COLUMNS = {"target_image", "parent_image"}


def spec(name: str) -> ColumnSpec:
    found = _SPECS.get(name)
    if found is not None:
        return found
    return ColumnSpec(name, name.replace("_", " "), 16, 6, 44)


def format_time(ts: datetime | None, local: bool) -> str:
    if ts is None:
        return ""
    if local:
        ts = ts.replace(tzinfo=UTC).astimezone()
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def local_offset_label() -> str:
    """"UTC+02:00" for the terminal's current local offset."""
    offset = datetime.now().astimezone().utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(seconds)
    return f"UTC{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def raw_value(row: dict[str, Any], column: str) -> Any:
    """The stored value behind a cell (for filters, frequency and copy)."""
    if column == "time":
        return row.get("ts")
    return row.get(column)


def cell_text(row: dict[str, Any], column: str, local: bool = False) -> str:
    """Escaped one-line display text of a cell."""
    if column == "time":
        return format_time(row.get("ts"), local)
    value = row.get(column)
    if value is None:
        return ""
    if column == "channel":
        return escape(short_channel(value))
    if column == "host":
        return escape(short_host(value))
    if column in HEX_COLUMNS and isinstance(value, int):
        return f"0x{value:x}"
    if column in _BASENAME_COLUMNS:
        return escape(to_str(value).replace("/", "\\").rsplit("\\", 1)[-1])
    if isinstance(value, datetime):
        return format_time(value, local)
    return escape(value)


def source_column(row: dict[str, Any] | None, column: str) -> str | None:
    """The events column a displayed column comes from, for `+`/`-` and frequency.

    `user` shows the target account when there is one, else the subject; `process` is the image
    path. Time and summary are not a single stored value: None.
    """
    if column in ("time", "summary"):
        return None
    if column == "user":
        if row is not None and not row.get("target_user") and row.get("subject_user"):
            return "subject_user"
        return "target_user"
    if column == "process":
        return "process_image"
    if column in COLUMN_TYPES:
        return column
    return None


@dataclass(frozen=True)
class Placed:
    name: str
    title: str
    x: int
    width: int


GUTTER = 2  # mark glyph + space


def layout(columns: list[str], width: int) -> list[Placed]:
    """Fit `columns` into `width` cells; the order of `columns` is their importance.

    The flexible column (summary, else the last one) always gets its minimum. Columns listed
    before it come first, at their preferred width (the first that does not fit gets what is left
    if that is at least its minimum; later ones are dropped). Then the flexible column grows to its
    preferred width, and only then do the columns listed after it get a place. Spare width goes to
    the flexible column.
    """
    specs = [spec(c) for c in dict.fromkeys(c for c in columns if c)]
    if not specs:
        return []
    avail = max(10, width - GUTTER)
    flex = next((s for s in specs if s.flex), specs[-1])
    widths: dict[str, int] = {flex.name: min(flex.minimum, avail)}
    used = widths[flex.name]

    def add(group: list[ColumnSpec]) -> None:
        nonlocal used
        for s in group:
            room = avail - used - 1
            if room >= s.pref:
                widths[s.name] = s.pref
            elif room >= s.minimum:
                widths[s.name] = room
            else:
                return
            used += widths[s.name] + 1

    at = specs.index(flex)
    add(specs[:at])
    grow = max(0, min(flex.pref - widths[flex.name], avail - used))
    widths[flex.name] += grow
    used += grow
    add(specs[at + 1:])
    widths[flex.name] += avail - used
    placed: list[Placed] = []
    x = GUTTER
    for s in specs:
        if s.name not in widths:
            continue
        placed.append(Placed(s.name, s.title, x, widths[s.name]))
        x += widths[s.name] + 1
    return placed
