"""Timeline columns: what each shows, how wide it wants to be, and how widths fit the terminal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.cells import cell_len

from engine.channels import short_channel as _short_channel
from engine.schema import COLUMN_TYPES, EVENT_COLUMN_NAMES

from ..safe_text import escape, fit, to_str

# Derived columns computed by engine.views.window, plus the formatted time.
DERIVED = ("time", "summary", "user", "process")
DEFAULT_COLUMNS = ["time", "host", "channel", "event_id", "summary", "user", "process"]



def needed_width(columns: list[str], prefs: dict[str, int] | None = None) -> int:
    """Cells the columns take at their preferred widths (what a side pane should leave them)."""
    prefs = prefs or {}
    widths = [max(spec(c).minimum, prefs.get(c, spec(c).pref)) for c in dict.fromkeys(c for c in columns if c)]
    return GUTTER + sum(widths) + max(0, len(widths) - 1)


def short_channel(channel: Any) -> str:
    """"Microsoft-Windows-Sysmon/Operational" → "Sysmon"; unknown channels lose the common affixes."""
    return _short_channel(to_str(channel))


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
    claims: bool = False  # takes room from the flexible column's preferred width rather than be dropped


_SPECS: dict[str, ColumnSpec] = {
    "time": ColumnSpec("time", "time", 19, 19, 100),
    "host": ColumnSpec("host", "host", 15, 8, 80),
    # 8: Security, Sysmon, TS-RCM whole; kept at 80 columns (an Application 4625 is not a failed logon)
    "channel": ColumnSpec("channel", "channel", 10, 8, 60, claims=True),
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
    "granted_access": ColumnSpec("granted_access", "access", 8, 8, 70),  # 0x1fffff whole
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
    # The sessions view (tui/widgets/rows.py SessionRows).
    "start": ColumnSpec("start", "start", 19, 19, 100),
    "logon_id": ColumnSpec("logon_id", "logon id", 10, 6, 75),
    "account": ColumnSpec("account", "account", 16, 10, 95, flex=True),
    "type": ColumnSpec("type", "type", 9, 7, 85),
    "source": ColumnSpec("source", "source", 15, 10, 82),
    "priv": ColumnSpec("priv", "priv", 5, 4, 78),
    "lasted": ColumnSpec("lasted", "lasted", 6, 6, 60),
    "end_reason": ColumnSpec("end_reason", "end", 8, 4, 40),
    "flags": ColumnSpec("flags", "flags", 14, 6, 79),
    "events": ColumnSpec("events", "events", 6, 5, 35),
    "processes": ColumnSpec("processes", "procs", 5, 5, 30),
    # The failed-logon groups of `ashiato logons`.
    "count": ColumnSpec("count", "count", 7, 5, 96),
    "first": ColumnSpec("first", "first", 19, 19, 55),
    "hosts": ColumnSpec("hosts", "hosts", 20, 8, 50),
    "event_ids": ColumnSpec("event_ids", "ids", 9, 4, 45),
    "why": ColumnSpec("why", "why", 40, 16, 88, flex=True),
    # The processes of `ashiato tree --format table`.
    "pid": ColumnSpec("pid", "pid", 6, 5, 85),
    "name": ColumnSpec("name", "image", 16, 8, 97),
    "edge": ColumnSpec("edge", "link", 10, 4, 72),
    "marks": ColumnSpec("marks", "marks", 28, 8, 90, flex=True),
    # The findings view and `ashiato findings` (tui/widgets/rows.py FindingRows).
    "severity": ColumnSpec("severity", "sev", 4, 4, 99),
    "rule": ColumnSpec("rule", "rule", 22, 14, 92),
    "reason": ColumnSpec("reason", "why", 40, 20, 94, flex=True),
    "attack": ColumnSpec("attack", "att&ck", 10, 9, 30),
    # `ashiato rules list`.
    "rule_status": ColumnSpec("rule_status", "status", 8, 6, 93),
    "title": ColumnSpec("title", "title", 40, 16, 91, flex=True),
    "file": ColumnSpec("file", "file", 22, 8, 40),
}
SESSION_COLUMNS = ["start", "host", "account", "type", "source", "priv", "flags", "lasted", "logon_id",
                   "auth_package", "events", "end_reason"]

FINDING_COLUMNS = ["severity", "first", "host", "rule", "user", "count", "reason", "attack"]

PROCESS_COLUMNS = ["start", "host", "name", "pid", "user", "marks", "edge", "command_line"]

KNOWN_COLUMNS = sorted(set(DERIVED) | set(EVENT_COLUMN_NAMES))
# Shown in hex, as Windows writes them (0xc000006a, 0x1410, 0x3e7); stored as integers.
HEX_COLUMNS = frozenset({"granted_access", "status", "substatus", "subject_logon_id", "target_logon_id",
                         "linked_logon_id"})
_BASENAME_COLUMNS = {"target_image", "parent_image"}
# Paths whose end says what they are (…\System32\lsass.exe): cut at the start, not the end.
_PATH_COLUMNS = {"object_name", "process_image"}


def spec(name: str) -> ColumnSpec:
    found = _SPECS.get(name)
    if found is not None:
        return found
    return ColumnSpec(name, name.replace("_", " "), 16, 6, 44)


def format_time(ts: datetime | None, local: bool) -> str:
    if ts is None:
        return "(no time)"  # a damaged or zeroed record: kept, sorted last
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


def fit_cell(text: str, column: str, width: int) -> str:
    """Escaped cell text cut to `width`. An account too long for the user column loses its domain
    first: seven sprayed accounts must not all read `theshire.local\\lrod…`."""
    if column == "user" and "\\" in text and cell_len(text) > width:
        text = text.rsplit("\\", 1)[1]
    if column in ("host", "hosts") and cell_len(text) > width >= 5 and text.isprintable() and text.isascii():
        # Host names share their start (WORKSTATION5, WORKSTATION6): cut in the middle, keeping
        # the end that tells them apart.
        head = (width - 1) // 2
        return text[:head] + "…" + text[len(text) - (width - 1 - head):]
    if column in _PATH_COLUMNS and cell_len(text) > width >= 2 and text.isprintable() and text.isascii():
        return "…" + text[len(text) - (width - 1):]
    return fit(text, width)


def host_width(hosts: list[Any]) -> int:
    """The host column's preferred width for a case: its longest host as shown (8 to 24 cells)."""
    return max(8, min(24, max((cell_len(short_host(h)) for h in hosts), default=8)))


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


OWN_VIEW_SUMMARY_MINIMUM = 16  # the summary's minimum in a view with its own columns (layout())
BOOST_PRIORITY = 75  # a view's own columns (a preset's user, source IP, …): above the channel, below the host
FRAME_COLUMNS = frozenset({"time", "host", "channel", "event_id", "summary"})  # every view's; never boosted


def own_columns(columns: list[str]) -> set[str]:
    """The columns a timeline view chose beyond every view's frame (a preset's user, source IP, …);
    none for the default columns and for the views of other objects (sessions, findings), whose
    columns are their own."""
    if columns == DEFAULT_COLUMNS or not set(columns) <= set(KNOWN_COLUMNS):
        return set()
    return set(columns) - FRAME_COLUMNS


def layout(columns: list[str], width: int, prefs: dict[str, int] | None = None,
           boost: frozenset[str] | set[str] = frozenset()) -> list[Placed]:
    """Fit `columns` into `width` cells, shown in the order given.

    Which columns get a place goes by priority: in priority order each column takes its minimum
    width, and the flexible column (summary, else the last one) its preferred width, because it
    carries what tells events apart; a column that does not fit is dropped. Then the columns grow
    toward their preferred widths, a cell each in turn, and what is left goes to the flexible
    column. At 80 columns that keeps time, event id, host and a readable summary, and drops the
    columns a summary repeats (user, process). The channel (an Application 4625 is not a failed
    logon) and the view's own columns take room from the summary's preferred width when it would
    push them out, down to the summary's minimum. `prefs` sets preferred widths the data
    decides (the host column as wide as the case's longest host); `boost` names the view's own
    columns (a preset's), which outrank the generic ones at narrow widths.
    """
    from dataclasses import replace

    prefs = prefs or {}

    def made(c: str) -> ColumnSpec:
        s = spec(c)
        if c in prefs:
            s = replace(s, pref=max(s.minimum, prefs[c]))
        if c in boost and not s.flex:
            s = replace(s, priority=max(s.priority, BOOST_PRIORITY), claims=True)
        return s

    specs = [made(c) for c in dict.fromkeys(c for c in columns if c)]
    if not specs:
        return []
    avail = max(10, width - GUTTER)
    flex = next((s for s in specs if s.flex), specs[-1])
    if boost & {s.name for s in specs} and flex.flex:
        # A view that chose its columns (the LSASS preset's process, target and access) reads them
        # first; its summary mostly repeats them, so it gives way further.
        flex = replace(flex, minimum=min(flex.minimum, OWN_VIEW_SUMMARY_MINIMUM))
        specs = [flex if s.name == flex.name else s for s in specs]
    ranked = sorted(specs, key=lambda s: -s.priority)  # stable: equal priorities keep their order
    own = [s for s in specs if s.name in boost and not s.flex]
    first_own = own[0].name if own else None
    second_own = own[1].minimum + 1 if len(own) > 1 else 0
    widths: dict[str, int] = {}
    used = 0  # every column but the flexible one is followed by a one-cell gap

    def cost(s: ColumnSpec, w: int) -> int:
        return w if s is flex else w + 1

    for s in ranked:
        want = min(flex.pref, avail) if s is flex else s.minimum
        if (s.name == first_own and s is not flex
                and used - widths.get(flex.name, 0) + flex.minimum + cost(s, s.pref) + second_own <= avail):
            # The view's first own column is what it was chosen for (the LSASS view's process):
            # readable whole when it fits beside the summary's minimum and the next own column's
            # (the failed logons keep their source IP). The others take their minimum and grow.
            want = s.pref
        if used + cost(s, want) <= avail:
            widths[s.name] = want
        elif s is flex:
            widths[s.name] = max(min(flex.minimum, avail), avail - used)
        elif s.claims and flex.name in widths and widths[flex.name] - (over := used + cost(s, want) - avail) >= flex.minimum:
            widths[flex.name] -= over
            used -= over
            widths[s.name] = want
        else:
            continue
        used += cost(s, widths[s.name])
    if flex.name in widths and used > avail:
        # The flexible column took its minimum past the edge: drop the least important others.
        for s in reversed(ranked):
            if used <= avail:
                break
            if s is not flex and s.name in widths:
                used -= cost(s, widths.pop(s.name))
    # The room left is shared a cell at a time, in priority order, so a user column does not
    # take all of it to its preferred 18 while the source IP beside it stays cut.
    growing = [s for s in ranked if s is not flex and s.name in widths and widths[s.name] < s.pref]
    while growing and used < avail:
        for s in growing:
            if used >= avail:
                break
            widths[s.name] += 1
            used += 1
        growing = [s for s in growing if widths[s.name] < s.pref]
    if flex.name in widths:
        widths[flex.name] += max(0, avail - used)
        # The view's own columns then grow toward their preferred widths out of the summary's
        # share above its minimum, a cell each in turn: a process column of 8 cells (`Outflan…`)
        # says less than the summary's last words.
        growing = [s for s in ranked if s.name in boost and s is not flex and s.name in widths and widths[s.name] < s.pref]
        while growing and widths[flex.name] > flex.minimum:
            for s in growing:
                if widths[flex.name] <= flex.minimum:
                    break
                widths[s.name] += 1
                widths[flex.name] -= 1
            growing = [s for s in growing if widths[s.name] < s.pref]
    placed: list[Placed] = []
    x = GUTTER
    for s in specs:
        if s.name not in widths:
            continue
        placed.append(Placed(s.name, s.title, x, widths[s.name]))
        x += widths[s.name] + 1
    return placed
