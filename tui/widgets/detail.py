"""One event, vertically: every field with its raw value and, next to it, what it means.

Used full screen (Enter) and as the side pane of wide terminals. A value is wrapped lazily: only
the lines on screen are escaped, so a 1 MB script is paged through a window as tall as the pane
(j/k and PgDn/PgUp scroll inside it, then move on), never built whole; `copy` keeps the stored value.
A PowerShell `-enc` argument gets its decoded command on the line under it ("decoded -enc").
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.cells import cell_len, chop_cells
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.decode import channel_key, decode_field, event_name, powershell_encoded_command

from ..safe_text import escape, escape_line, fit, to_str
from .columns import format_time, short_channel

NAME_WIDTH = 22
MIN_WINDOW = 3  # a long value's window is the pane's height less a few lines, never below this

# Fields whose value may hold a PowerShell command line (`-enc` decoded under it).
_COMMAND_FIELDS = frozenset({"commandline", "parentcommandline", "processcommandline", "scriptblocktext",
                             "hostapplication", "payload", "contextinfo", "taskcontent", "imagepath",
                             "servicefilename", "command", "details", "data"})

# Windows' EventData order of common events (as the EVTX records of the shared corpus write it,
# newest schema), for exports that do not keep it (NXLog writes fields in any order).
_SUBJECT = ("SubjectUserSid", "SubjectUserName", "SubjectDomainName", "SubjectLogonId")
_SYSMON_PROC = ("RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image")
_SECURITY_ORDER: dict[int, tuple[str, ...]] = {
    4624: (*_SUBJECT, "TargetUserSid", "TargetUserName", "TargetDomainName", "TargetLogonId", "LogonType",
           "LogonProcessName", "AuthenticationPackageName", "WorkstationName", "LogonGuid", "TransmittedServices",
           "LmPackageName", "KeyLength", "ProcessId", "ProcessName", "IpAddress", "IpPort", "ImpersonationLevel",
           "RestrictedAdminMode", "TargetOutboundUserName", "TargetOutboundDomainName", "VirtualAccount",
           "TargetLinkedLogonId", "ElevatedToken"),
    4625: (*_SUBJECT, "TargetUserSid", "TargetUserName", "TargetDomainName", "Status", "FailureReason", "SubStatus",
           "LogonType", "LogonProcessName", "AuthenticationPackageName", "WorkstationName", "TransmittedServices",
           "LmPackageName", "KeyLength", "ProcessId", "ProcessName", "IpAddress", "IpPort"),
    4634: ("TargetUserSid", "TargetUserName", "TargetDomainName", "TargetLogonId", "LogonType"),
    4647: ("TargetUserSid", "TargetUserName", "TargetDomainName", "TargetLogonId"),
    4648: (*_SUBJECT, "LogonGuid", "TargetUserName", "TargetDomainName", "TargetLogonGuid", "TargetServerName",
           "TargetInfo", "ProcessId", "ProcessName", "IpAddress", "IpPort"),
    4656: (*_SUBJECT, "ObjectServer", "ObjectType", "ObjectName", "HandleId", "TransactionId", "AccessList",
           "AccessReason", "AccessMask", "PrivilegeList", "RestrictedSidCount", "ProcessId", "ProcessName",
           "ResourceAttributes"),
    4663: (*_SUBJECT, "ObjectServer", "ObjectType", "ObjectName", "HandleId", "AccessList", "AccessMask",
           "ProcessId", "ProcessName", "ResourceAttributes"),
    4672: (*_SUBJECT, "PrivilegeList"),
    4688: (*_SUBJECT, "NewProcessId", "NewProcessName", "TokenElevationType", "ProcessId", "CommandLine",
           "TargetUserSid", "TargetUserName", "TargetDomainName", "TargetLogonId", "ParentProcessName",
           "MandatoryLabel"),
    4689: (*_SUBJECT, "Status", "ProcessId", "ProcessName"),
    4698: (*_SUBJECT, "TaskName", "TaskContent"),
    4720: ("TargetUserName", "TargetDomainName", "TargetSid", *_SUBJECT, "PrivilegeList", "SamAccountName",
           "DisplayName", "UserPrincipalName", "HomeDirectory", "HomePath", "ScriptPath", "ProfilePath",
           "UserWorkstations", "PasswordLastSet", "AccountExpires", "PrimaryGroupId", "AllowedToDelegateTo",
           "OldUacValue", "NewUacValue", "UserAccountControl", "UserParameters", "SidHistory", "LogonHours"),
    4732: ("MemberName", "MemberSid", "TargetUserName", "TargetDomainName", "TargetSid", *_SUBJECT, "PrivilegeList"),
    4768: ("TargetUserName", "TargetDomainName", "TargetSid", "ServiceName", "ServiceSid", "TicketOptions", "Status",
           "TicketEncryptionType", "PreAuthType", "IpAddress", "IpPort", "CertIssuerName", "CertSerialNumber",
           "CertThumbprint"),
    4769: ("TargetUserName", "TargetDomainName", "ServiceName", "ServiceSid", "TicketOptions", "TicketEncryptionType",
           "IpAddress", "IpPort", "Status", "LogonGuid", "TransmittedServices"),
    4771: ("TargetUserName", "TargetSid", "ServiceName", "TicketOptions", "Status", "PreAuthType", "IpAddress",
           "IpPort", "CertIssuerName", "CertSerialNumber", "CertThumbprint"),
    4776: ("PackageName", "TargetUserName", "Workstation", "Status"),
    5140: (*_SUBJECT, "ObjectType", "IpAddress", "IpPort", "ShareName", "ShareLocalPath", "AccessMask", "AccessList"),
    5145: (*_SUBJECT, "ObjectType", "IpAddress", "IpPort", "ShareName", "ShareLocalPath", "RelativeTargetName",
           "AccessMask", "AccessList", "AccessReason"),
    5156: ("ProcessID", "Application", "Direction", "SourceAddress", "SourcePort", "DestAddress", "DestPort",
           "Protocol", "FilterRTID", "LayerName", "LayerRTID", "RemoteUserID", "RemoteMachineID"),
}
_SECURITY_ORDER[4728] = _SECURITY_ORDER[4732]
_SYSMON_ORDER: dict[int, tuple[str, ...]] = {
    1: (*_SYSMON_PROC, "FileVersion", "Description", "Product", "Company", "OriginalFileName", "CommandLine",
        "CurrentDirectory", "User", "LogonGuid", "LogonId", "TerminalSessionId", "IntegrityLevel", "Hashes",
        "ParentProcessGuid", "ParentProcessId", "ParentImage", "ParentCommandLine", "ParentUser"),
    2: (*_SYSMON_PROC, "TargetFilename", "CreationUtcTime", "PreviousCreationUtcTime", "User"),
    3: (*_SYSMON_PROC, "User", "Protocol", "Initiated", "SourceIsIpv6", "SourceIp", "SourceHostname", "SourcePort",
        "SourcePortName", "DestinationIsIpv6", "DestinationIp", "DestinationHostname", "DestinationPort",
        "DestinationPortName"),
    5: (*_SYSMON_PROC, "User"),
    6: ("RuleName", "UtcTime", "ImageLoaded", "Hashes", "Signed", "Signature", "SignatureStatus"),
    7: (*_SYSMON_PROC, "ImageLoaded", "FileVersion", "Description", "Product", "Company", "OriginalFileName",
        "Hashes", "Signed", "Signature", "SignatureStatus", "User"),
    8: ("RuleName", "UtcTime", "SourceProcessGuid", "SourceProcessId", "SourceImage", "TargetProcessGuid",
        "TargetProcessId", "TargetImage", "NewThreadId", "StartAddress", "StartModule", "StartFunction",
        "SourceUser", "TargetUser"),
    10: ("RuleName", "UtcTime", "SourceProcessGUID", "SourceProcessId", "SourceThreadId", "SourceImage",
         "TargetProcessGUID", "TargetProcessId", "TargetImage", "GrantedAccess", "CallTrace", "SourceUser",
         "TargetUser"),
    11: (*_SYSMON_PROC, "TargetFilename", "CreationUtcTime", "User"),
    12: ("RuleName", "EventType", "UtcTime", "ProcessGuid", "ProcessId", "Image", "TargetObject", "User"),
    13: ("RuleName", "EventType", "UtcTime", "ProcessGuid", "ProcessId", "Image", "TargetObject", "Details", "User"),
    15: (*_SYSMON_PROC, "TargetFilename", "CreationUtcTime", "Hash", "Contents", "User"),
    17: ("RuleName", "EventType", "UtcTime", "ProcessGuid", "ProcessId", "PipeName", "Image", "User"),
    22: ("RuleName", "UtcTime", "ProcessGuid", "ProcessId", "QueryName", "QueryStatus", "QueryResults", "Image",
         "User"),
    23: ("RuleName", "UtcTime", "ProcessGuid", "ProcessId", "User", "Image", "TargetFilename", "Hashes",
         "IsExecutable", "Archived"),
}
_SYSMON_ORDER[14] = _SYSMON_ORDER[13]
_SYSMON_ORDER[18] = _SYSMON_ORDER[17]
_SYSMON_ORDER[26] = _SYSMON_ORDER[23]
_FIELD_ORDER: dict[tuple[str, int], tuple[str, ...]] = {
    **{("security", eid): names for eid, names in _SECURITY_ORDER.items()},
    **{("sysmon", eid): names for eid, names in _SYSMON_ORDER.items()},
    ("powershell", 4104): ("MessageNumber", "MessageTotal", "ScriptBlockText", "ScriptBlockId", "Path"),
    ("system", 7045): ("ServiceName", "ImagePath", "ServiceType", "StartType", "AccountName"),
    ("system", 7036): ("param1", "param2", "Binary"),
    ("system", 7040): ("param1", "param2", "param3", "param4"),
}

# What a collector adds to a flat document (NXLog im_msvistalog, Logstash, the Security-Datasets
# exporters), in the order shown after the event's own fields; Message, the rendered text, last.
COLLECTOR_FIELDS: tuple[str, ...] = (
    "EventTime", "TimeCreated", "Hostname", "Keywords", "EventType", "SeverityValue", "Severity", "Level",
    "EventID", "SourceName", "ProviderName", "ProviderGuid", "Version", "Task", "Category", "OpcodeValue",
    "Opcode", "RecordNumber", "ExecutionProcessID", "ThreadID", "Channel", "Domain", "AccountName", "UserID",
    "AccountType", "EventTypeOrignal", "EventReceivedTime", "SourceModuleName", "SourceModuleType",
    "@version", "@timestamp", "@metadata", "host", "port", "tags", "Message",
)
_COLLECTOR_RANK = {name.lower(): n for n, name in enumerate(COLLECTOR_FIELDS)}


def windows_order(channel: str | None, event_id: int | None) -> tuple[str, ...] | None:
    """Windows' EventData field order of a common event, or None when it is not known here."""
    key = channel_key(channel)
    if key is None or event_id is None:
        return None
    return _FIELD_ORDER.get((key.lower(), int(event_id)))


def order_fields(fields: list[tuple[str, Any]], *, channel: str | None, event_id: int | None,
                 flat: bool) -> list[tuple[str, Any]]:
    """The event's own fields first, in Windows' order where it is known, then collector metadata.

    `flat` documents (NXLog-like: the document is its own event data) mix the two in any order:
    their own fields go in Windows' order, the rest by name (stable whatever order the collector
    wrote), and the collector's keys (COLLECTOR_FIELDS) last in a fixed order. Other shapes keep
    their event data's own order (EVTX writes Windows' order) after the known fields.
    """
    known = windows_order(channel, event_id) or ()
    rank = {name.lower(): n for n, name in enumerate(known)}
    own: list[tuple[int, int, str, tuple[str, Any]]] = []
    collector: list[tuple[int, int, tuple[str, Any]]] = []
    for n, item in enumerate(fields):
        low = str(item[0]).lower()
        if low in rank:
            own.append((0, rank[low], "", item))
        elif flat and low in _COLLECTOR_RANK:
            collector.append((_COLLECTOR_RANK[low], n, item))
        elif flat:
            own.append((1, 0, low, item))
        else:
            own.append((1, n, "", item))
    own.sort(key=lambda t: t[:3])
    collector.sort(key=lambda t: t[:2])
    return [t[3] for t in own] + [t[2] for t in collector]


# -- lazy wrapping --------------------------------------------------------------------------------------------
_SPECIAL = re.compile(r"[^\x20-\x7e]")  # anything but printable ASCII is measured one by one


class Wrap:
    """The display lines of one value at one width, found only as far as asked: line k shows
    ``text[starts[k]:ends[k]]``, escaped when it is drawn. Escaping never happens on the whole value."""

    def __init__(self, text: str, width: int, tab: str = "    ") -> None:
        self.text = text
        self.width = max(1, width)
        self.tab = tab
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.done = False
        self._next = 0  # where the next line starts

    def _line_from(self, start: int) -> tuple[int, int]:
        """(end of the shown text, start of the next line) for the line starting at `start`."""
        text, n, width = self.text, len(self.text), self.width
        pos, cells = start, 0
        while pos < n:
            ch = text[pos]
            if ch == "\n":
                return pos, pos + 1
            if ch == "\r" and text.startswith("\n", pos + 1):
                return pos, pos + 2
            if " " <= ch <= "~":
                m = _SPECIAL.search(text, pos)
                run = (m.start() if m else n) - pos
                take = min(run, width - cells)
                if take <= 0:
                    return pos, pos
                pos += take
                cells += take
                continue
            w = cell_len(escape_line(ch, self.tab))
            if cells + w > width and cells > 0:
                return pos, pos
            cells += w
            pos += 1
        return n, n

    def ensure(self, count: int) -> int:
        """Find lines until `count` are known or the value ends; the number known."""
        while len(self.starts) < count and not self.done:
            start = self._next
            end, nxt = self._line_from(start)
            self.starts.append(start)
            self.ends.append(end)
            self._next = nxt
            if end == nxt == len(self.text):  # a line break at the very end leaves one empty line
                self.done = True
        return len(self.starts)

    def count(self) -> int:
        """Every line of the value (wraps it to the end)."""
        while not self.done:
            self.ensure(len(self.starts) + 4096)
        return len(self.starts)

    def line(self, k: int) -> str:
        self.ensure(k + 1)
        if k >= len(self.starts):
            return ""
        return escape_line(self.text[self.starts[k]:self.ends[k]], self.tab)

    def line_at(self, offset: int) -> int:
        """The line showing the character at `offset`."""
        k = 0
        while True:
            known = self.ensure(k + 256)
            while k + 1 < known and self.starts[k + 1] <= offset:
                k += 1
            if k + 1 < known or self.done:
                return k


# -- entries ----------------------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One focusable line group: a field, a header fact, a decoded command, or a section title."""

    name: str
    value: str  # the value as stored (escaped when drawn); a section's already-escaped note
    decoded: str | None = None  # a short meaning shown after the value ("→ Network")
    copy: str = ""
    section: bool = False  # a section title, not a field
    derived: bool = False  # shown in the decoded style: text worked out from the value above
    # Layout state: the value's lines at the current width, and the top line of its window when it
    # is taller than the pane (`windowed`).
    wrap: Wrap | None = field(default=None, repr=False, compare=False)
    top: int = 0
    windowed: bool = False


def _value_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return to_str(value)


def _encoded_entry(name: str, text: str) -> Entry | None:
    """"decoded -enc" under a command line or script that holds a PowerShell -EncodedCommand."""
    if str(name).rsplit(".", 1)[-1].lower() not in _COMMAND_FIELDS and name != "ScriptBlockText":
        return None
    try:
        found = powershell_encoded_command(text)
    except Exception:  # a decoder must never break the pane
        return None
    if found is None:
        return None
    label = f"decoded {escape(found.switch, 20)}"
    if found.decoded is None:
        return Entry(label, f"does not decode: {found.problem}", derived=True, copy=found.encoded)
    note = f" ({found.problem})" if found.problem else ""
    return Entry(label + note, found.decoded, derived=True, copy=found.decoded)


def build_entries(d: dict[str, Any], *, local_time: bool = False, tag: str | None = None,
                  marked: bool = False) -> list[Entry]:
    channel = d.get("channel")
    eid = d.get("event_id")
    entries: list[Entry] = []
    title = f"{short_channel(channel) or '?'} {eid if eid is not None else ''}"
    name = event_name(channel, eid)
    entries.append(Entry(title.strip(), escape(name or "", 200), section=True))

    def fact(label: str, value: Any, decoded: str | None = None) -> None:
        if value is None or value == "":
            return
        text = _value_text(value)
        entries.append(Entry(label, text, decoded, text))

    def with_decoded(entry: Entry, fname: str) -> None:
        entries.append(entry)
        extra = _encoded_entry(fname, entry.value)
        if extra is not None:
            entries.append(extra)

    ts = d.get("ts")
    fact("time (UTC)", format_time(ts, False))
    if local_time and ts is not None:
        fact("time (local)", format_time(ts, True))
    if d.get("utc_time") is not None and d.get("utc_time") != ts:
        fact("UtcTime", d["utc_time"].isoformat(sep=" "))
    fact("host", d.get("host"))
    fact("channel", channel)
    fact("provider", d.get("provider"))
    fact("event id", eid, name)
    fact("record id", d.get("record_id"))
    fact("summary", d.get("summary"))
    if marked or tag:
        fact("mark", tag or "marked")
    fact("source", d.get("path"))
    fact("eid", d.get("eid"))

    script = d.get("script")
    if script:
        entries.append(Entry(f"whole script ({script['parts']} of {script['total']} parts, joined)", "",
                             section=True))
        with_decoded(Entry("ScriptBlockText", script["text"], None, script["text"]), "ScriptBlockText")
    fields = order_fields(list(d.get("fields") or []), channel=channel, event_id=eid, flat=d.get("raw") is None)
    if fields:
        entries.append(Entry("event data", "", section=True))
        object_type = next((to_str(v) for n, v in fields if str(n).lower() == "objecttype"), None)
        # The process an access mask was to: its lsass note belongs on lsass only.
        target = next((to_str(v) for n, v in fields if str(n).lower() in ("targetimage", "objectname")), None)
        for fname, value in fields:
            text = _value_text(value)
            try:
                decoded = decode_field(str(fname), value, event_id=eid, channel=channel, object_type=object_type,
                                       target=target)
            except Exception:  # a decoder must never break the pane
                decoded = None
            with_decoded(Entry(escape(fname, 64), text, decoded, text), str(fname))
    return entries


def raw_entries(d: dict[str, Any]) -> list[Entry]:
    """The original document, pretty-printed when it is JSON, one entry per line (each paged lazily)."""
    raw = d.get("raw")
    if raw is None:
        # NXLog-like shapes keep the document as the event data itself.
        raw = json.dumps(dict(d.get("fields") or []), ensure_ascii=False, default=str)
    original = to_str(raw)
    text = original
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    entries = [Entry("raw", f"{len(original):,} characters", section=True, copy=original)]
    for line in text.replace("\r\n", "\n").split("\n"):
        entries.append(Entry("", line, copy=line))
    return entries


class _Note(str):
    """A layout row that is the pane's own text (a long value's position), drawn dim."""


class DetailView(ScrollView, can_focus=True, inherit_bindings=False):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"detail--name", "detail--section", "detail--decoded", "detail--cursor", "detail--dim"}
    DEFAULT_CSS = """
    DetailView { overflow-x: hidden; overflow-y: auto; scrollbar-size-vertical: 1; scrollbar-gutter: stable; }
    DetailView > .detail--name { color: $text-muted; }
    DetailView > .detail--section { text-style: bold; color: $accent; }
    DetailView > .detail--decoded { color: $success; text-style: italic; }
    DetailView > .detail--cursor { background: $accent 30%; text-style: bold; }
    DetailView > .detail--dim { text-style: dim; }
    """

    def __init__(self, *, show_cursor: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.show_cursor = show_cursor
        self.event: dict[str, Any] | None = None
        self.raw = False
        self.entries: list[Entry] = []
        self.cursor = 0
        self._lines: list[tuple[int, int]] = []  # (entry index, row within entry)
        self._wrapped: list[list[Any]] = []  # per entry its rows: str, _Note, or (value, decoded) on one line
        self._first: list[int] = []  # per entry its first layout line
        self.local_time = False
        self.tag: str | None = None
        self.marked = False
        self.message = ""

    def show(self, event: dict[str, Any] | None, *, message: str = "") -> None:
        self.event = event
        self.message = message
        self._rebuild(keep_cursor=False)

    def set_raw(self, raw: bool) -> None:
        self.raw = raw
        self._rebuild(keep_cursor=False)

    def _rebuild(self, *, keep_cursor: bool = True) -> None:
        if self.event is None:
            self.entries = [Entry("", escape(self.message or "", 300), section=True)]
        elif self.raw:
            self.entries = raw_entries(self.event)
        else:
            self.entries = build_entries(self.event, local_time=self.local_time, tag=self.tag,
                                         marked=self.marked)
        if not keep_cursor:
            self.cursor = next((i for i, e in enumerate(self.entries) if not e.section), 0)
        self.cursor = min(self.cursor, max(0, len(self.entries) - 1))
        self._reflow()
        if not keep_cursor:
            self.scroll_to(y=0, animate=False)

    def on_resize(self) -> None:
        self._reflow()

    def _value_x(self) -> int:
        return 0 if self.raw else min(NAME_WIDTH, max(8, self.content_width // 3)) + 1

    def window_height(self) -> int:
        """Lines of a long value shown at once: the pane less its name, position and decoded lines."""
        height = self.size.height or 24
        return max(MIN_WINDOW, height - 3)

    def _value_width(self) -> int:
        width = max(10, self.content_width or 80)
        return max(4, width - self._value_x())

    def _reflow(self) -> None:
        value_width = self._value_width()
        window = self.window_height()
        tab = "  " if self.raw else "    "
        self._lines = []
        self._wrapped = []
        self._first = []
        for i, entry in enumerate(self.entries):
            if not entry.section:
                old = wrap = entry.wrap
                if wrap is None or wrap.width != value_width or wrap.tab != tab:
                    wrap = entry.wrap = Wrap(entry.value, value_width, tab)
                    if old is not None and entry.top:  # keep the same text at the top of the window
                        entry.top = wrap.line_at(old.starts[entry.top] if entry.top < len(old.starts) else 0)
                known = wrap.ensure(window + 1)
                entry.windowed = known > window
                if entry.windowed:
                    entry.top = min(entry.top, self._max_top(entry))
                else:
                    entry.top = 0
            rows = self._rows(entry)
            self._wrapped.append(rows)
            self._first.append(len(self._lines))
            self._lines.extend((i, j) for j in range(len(rows)))
        self.virtual_size = Size(max(10, self.content_width or 80), len(self._lines))
        self.refresh()

    def _max_top(self, entry: Entry) -> int:
        """The last top line of an entry's window, as far as its lines are known."""
        assert entry.wrap is not None
        known = entry.wrap.ensure(entry.top + 2 * self.window_height() + 1)
        return max(0, known - self.window_height()) if entry.wrap.done else max(entry.top, known - self.window_height())

    def _rows(self, entry: Entry) -> list[Any]:
        """The layout rows of one entry: its value lines (a window of them when it is long), the
        window's position, and the short decoded meaning."""
        if entry.section:
            return [entry.value]
        wrap = entry.wrap
        assert wrap is not None
        value_width = wrap.width
        if entry.windowed:
            window = self.window_height()
            rows: list[Any] = [wrap.line(k) for k in range(entry.top, entry.top + window)]
            last = min(entry.top + window, len(wrap.starts)) - 1
            total = len(entry.value)
            first_char = wrap.starts[entry.top] + 1 if total else 0
            more = "" if wrap.done and last == len(wrap.starts) - 1 else " · j/PgDn more"
            rows.append(_Note(f"{first_char:,}–{wrap.ends[last]:,} of {total:,} characters{more}"))
        else:
            rows = [wrap.line(k) for k in range(len(wrap.starts))] or [""]
        if entry.decoded:
            decoded = "→ " + escape(entry.decoded, 300)
            tail = rows[-1]
            if not entry.windowed and cell_len(tail) + 2 + cell_len(decoded) <= value_width:
                rows[-1] = (tail, decoded)
            else:
                rows.extend(("", chunk) for chunk in chop_cells(decoded, value_width))
        return rows

    def _refill(self, index: int) -> None:
        """Redraw one entry after its window moved (its number of rows does not change)."""
        self._wrapped[index] = self._rows(self.entries[index])
        self.refresh()

    # -- cursor -----------------------------------------------------------------------------------------
    def focused_entry(self) -> Entry | None:
        return self.entries[self.cursor] if 0 <= self.cursor < len(self.entries) else None

    def _scroll_within(self, index: int, step: int, lines: int = 1) -> bool:
        """Move a long value's window by `lines` in the direction of `step`; False at its end."""
        entry = self.entries[index] if 0 <= index < len(self.entries) else None
        if entry is None or not entry.windowed or entry.wrap is None:
            return False
        if step > 0:
            window = self.window_height()
            if entry.wrap.ensure(entry.top + window + 1) <= entry.top + window:
                return False
            entry.wrap.ensure(entry.top + lines + window)
            entry.top = min(entry.top + lines, self._max_top(entry))
        else:
            if entry.top == 0:
                return False
            entry.top = max(0, entry.top - lines)
        self._refill(index)
        return True

    def _enter(self, index: int, *, from_below: bool) -> None:
        """The cursor arrives on an entry: a long value shows its start, or its end coming back up."""
        entry = self.entries[index]
        if entry.windowed and entry.wrap is not None:
            entry.top = max(0, entry.wrap.count() - self.window_height()) if from_below else 0
            self._refill(index)

    def _neighbour(self, index: int, step: int) -> int | None:
        j = index + step
        while 0 <= j < len(self.entries) and self.entries[j].section:
            j += step
        return j if 0 <= j < len(self.entries) else None

    def move(self, delta: int) -> None:
        """One line at a time: inside a value taller than the pane first, then to the next field."""
        if not self.entries:
            return
        step = 1 if delta > 0 else -1
        for _ in range(abs(delta)):
            if self._scroll_within(self.cursor, step):
                continue
            j = self._neighbour(self.cursor, step)
            if j is None:
                break
            self.cursor = j
            self._enter(j, from_below=step < 0)
        self._scroll_to_cursor()
        self.refresh()

    def move_to(self, index: int) -> None:
        self.cursor = max(0, min(len(self.entries) - 1, index))
        if self.entries and self.entries[self.cursor].section:
            j = self._neighbour(self.cursor, 1 if index <= 0 else -1)
            if j is not None:
                self.cursor = j
        if self.entries:
            self._enter(self.cursor, from_below=False)
        self._scroll_to_cursor()
        self.refresh()

    def page(self, pages: int) -> None:
        """A page: through a long value's window first; a page of fields never skips a long value."""
        if not self._lines:
            return
        height = max(1, self.size.height)
        step = 1 if pages > 0 else -1
        if self._scroll_within(self.cursor, step, max(1, self.window_height() - 1) * abs(pages)):
            self._scroll_to_cursor()
            self.refresh()
            return
        line = self._first[self.cursor] + pages * height
        line = max(0, min(len(self._lines) - 1, line))
        target = self._lines[line][0]
        # Stop at the first long value on the way, entering it from the side we come from.
        k = self.cursor + step
        while 0 <= k < len(self.entries) and (k - target) * step < 0:
            if self.entries[k].windowed:
                target = k
                break
            k += step
        if self.entries[target].section:
            found = self._neighbour(target, step)
            if found is None:
                found = self._neighbour(target, -step)
            target = self.cursor if found is None else found
        if target != self.cursor:
            self.cursor = target
            self._enter(target, from_below=step < 0)
        self.scroll_to(y=max(0, int(self.scroll_offset.y) + pages * height), animate=False)
        self._scroll_to_cursor()
        self.refresh()

    def _first_line(self, entry: int) -> int:
        return self._first[entry] if 0 <= entry < len(self._first) else 0

    def _scroll_to_cursor(self) -> None:
        first = self._first_line(self.cursor)
        last = first + len(self._wrapped[self.cursor]) - 1 if self._wrapped else first
        height = max(1, self.size.height)
        after = self.cursor + 1
        if after < len(self.entries) and self.entries[after].derived:  # its decoded -enc comes along
            with_decoded = self._first_line(after) + len(self._wrapped[after]) - 1
            if with_decoded - first < height:
                last = with_decoded
        top = int(self.scroll_offset.y)
        if first < top:
            self.scroll_to(y=max(0, first - 1), animate=False)
        elif last >= top + height:
            self.scroll_to(y=max(0, min(first, last - height + 1)), animate=False)

    # -- rendering ----------------------------------------------------------------------------------------
    @property
    def content_width(self) -> int:
        return self.scrollable_content_region.width

    def render_line(self, y: int) -> Strip:
        width = self.content_width
        base = self.rich_style
        n = int(self.scroll_offset.y) + y
        if n >= len(self._lines) or width <= 0:
            return Strip.blank(width, base)
        i, j = self._lines[n]
        entry = self.entries[i]
        text = self._wrapped[i][j]
        is_cursor = self.show_cursor and i == self.cursor and not entry.section
        row_style = base + self.get_component_rich_style("detail--cursor") if is_cursor else base
        if entry.section:
            style = base + self.get_component_rich_style("detail--section")
            segs = [Segment(fit(f"{entry.name}  ", min(width, cell_len(entry.name) + 2)), style)]
            segs.append(Segment(text, base + self.get_component_rich_style("detail--dim")))
            return Strip(segs).crop_extend(0, width, base)
        segs = []
        value_x = self._value_x()
        if value_x:
            name = entry.name if j == 0 else ""
            segs.append(Segment(fit(name, value_x - 1) + " ",
                                row_style + self.get_component_rich_style("detail--name")))
        value_style = row_style + self.get_component_rich_style("detail--decoded") if entry.derived else row_style
        if isinstance(text, tuple):
            value, decoded = text
            if value:
                segs.append(Segment(value + "  ", value_style))
            segs.append(Segment(decoded, row_style + self.get_component_rich_style("detail--decoded")))
        elif isinstance(text, _Note):
            segs.append(Segment(str(text), row_style + self.get_component_rich_style("detail--dim")))
        else:
            segs.append(Segment(text, value_style))
        return Strip(segs).crop_extend(0, width, row_style)

    def plain_lines(self) -> list[str]:
        """The pane as plain text lines (name, value, decoded), for tests: a long value shows its window."""
        out = []
        for i, entry in enumerate(self.entries):
            for j, text in enumerate(self._wrapped[i]):
                prefix = f"{entry.name}: " if j == 0 and entry.name else ""
                if isinstance(text, tuple):
                    out.append(prefix + (f"{text[0]}  " if text[0] else "") + text[1])
                else:
                    out.append(prefix + str(text))
        return out

    def cursor_style(self) -> Style:
        return self.get_component_rich_style("detail--cursor")
