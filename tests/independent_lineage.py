"""Process lineage computed straight from the raw records, in plain Python, for the corpus tests.

Nothing here reads the engine's tables or SQL: records come from the `evtx` package or from the JSON
lines themselves, and the rules are those of /work/notes/lineage_contract.md (and domain.md §3)
written out one at a time. Boot epochs come from tests/independent_sessions.py, itself independent
of the engine. It is deliberately slow and simple: every rule is a loop a reader can check by eye.

The rules, in the order they are applied:
1. Nodes. A Sysmon 1 is one node per (host, ProcessGuid) (guid lower case, no braces; start = its
   UtcTime, else the event time). A Security 4688 is one node per (host, boot, PID, event time),
   PID = int(NewProcessId, 16).
2. Merge. A 4688 and a Sysmon 1 of the same host, PID and image (case-insensitive full path) that
   started at most 2 s apart are one node with sources ["sysmon1", "4688"] and the Sysmon guid.
3. Exits. Sysmon 5 ends the node of its guid. A 4689 (hex ProcessId) ends the node of that PID on
   that host and boot that started last, not after the 4689. A node with neither ends with its
   boot when the boot ended (at its shutdown marker, else when the next boot began): not in the
   contract, which says only "null when not exited"; the engine does it and it is what happens.
4. Edges, child -> parent:
   - `guid` (`merged` when the child is a merged node): the child's ParentProcessGuid names a
     node of the same host that started before the child (a tie: the parent's event came first).
   - `pid+time`: otherwise, the node of the same host and boot with PID = the parent PID the child
     recorded (4688 ProcessId in hex, Sysmon ParentProcessId) that started last before the child
     (a tie, as above: NXLog writes whole seconds) and had not exited before the child started.
   - `unresolved`: no parent node at all.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import independent_sessions as ind

SYSMON = "microsoft-windows-sysmon/operational"
SECURITY = "security"
MERGE_WINDOW = timedelta(seconds=2)
QUARTER_HOUR = timedelta(minutes=15)


@dataclass
class Event:
    """One raw record, reduced to what lineage needs. `ts` is the event's UTC time."""

    host: str | None
    channel: str  # lower case
    provider: str
    event_id: int
    record_id: int
    ts: datetime | None
    data: dict[str, Any]
    seq: int  # position in the file

    def order(self) -> tuple[Any, ...]:
        """The order of one host's events: time, then channel, record number, place in the file."""
        return (self.ts is None, self.ts or datetime.min, self.channel, self.record_id, self.seq)

    def is_(self, channel: str, event_id: int) -> bool:
        return self.channel == channel and self.event_id == event_id


# -- reading ----------------------------------------------------------------------------------------
def evtx_events(path: Path) -> list[Event]:
    """Every readable record of an EVTX file: TimeCreated/SystemTime is UTC."""
    return [Event(host=r.host, channel=r.channel.lower(), provider=r.provider, event_id=r.event_id,
                  record_id=r.record_id, ts=r.utc, data=r.data, seq=r.seq) for r in ind.evtx_records(path)]


def flat_events(path: Path) -> list[Event]:
    """Security-Datasets lines: winlogbeat 6 (its @timestamp is the event's UTC time) or NXLog.

    An NXLog line's time (EventTime, or TimeCreated in some files, even when marked "Z") is the
    host's local time. Sysmon lines carry the true UTC time beside it (UtcTime), so each host's
    offset is the one most of its Sysmon lines show (UtcTime minus the written time, to the
    quarter hour); a Sysmon line's own time is its UtcTime. A host without Sysmon lines takes
    the collector's offset: @timestamp minus EventReceivedTime, the receive time in UTC and local.
    """
    records = ind.flat_records(path)  # order_time: the written time (local for NXLog, UTC for winlogbeat 6)
    offsets: dict[Any, Counter[timedelta]] = defaultdict(Counter)
    for r in records:
        utc = ind.parse_time(r.data.get("UtcTime"))
        if r.utc is None and r.channel.lower() == SYSMON and utc is not None and r.order_time is not None:
            offsets[r.host][_to_quarter_hour(utc - r.order_time)] += 1
    out: list[Event] = []
    for r in records:
        data = r.data
        if "event_id" in data and isinstance(data.get("event_data"), dict):  # winlogbeat 6
            data = dict(data["event_data"])
        if r.utc is not None:  # winlogbeat 6
            ts: datetime | None = r.utc
        elif r.channel.lower() == SYSMON and ind.parse_time(data.get("UtcTime")) is not None:
            ts = ind.parse_time(data.get("UtcTime"))
        elif r.order_time is not None and offsets[r.host]:
            ts = r.order_time + offsets[r.host].most_common(1)[0][0]
        elif r.order_time is not None and _receive_offset(data) is not None:
            # a host without Sysmon: the collector's offset, from its receive time written both ways
            ts = r.order_time + _receive_offset(data)  # type: ignore[operator]
        else:
            ts = None
        out.append(Event(host=r.host, channel=r.channel.lower(), provider=r.provider, event_id=r.event_id,
                         record_id=r.record_id, ts=ts, data=data, seq=r.seq))
    return out


def _receive_offset(doc: dict[str, Any]) -> timedelta | None:
    local, utc = ind.parse_time(doc.get("EventReceivedTime")), ind.parse_time(doc.get("@timestamp"))
    return None if local is None or utc is None else _to_quarter_hour(utc - local)


def _to_quarter_hour(delta: timedelta) -> timedelta:
    return QUARTER_HOUR * round(delta / QUARTER_HOUR)


def evtx_json_lines(path: Path) -> list[str]:
    """The EVTX file as evtx_dump writes it with one object per line."""
    return list(ind.evtx_json_lines(path))


# -- small field readers ----------------------------------------------------------------------------
def norm_guid(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().strip("{}").lower()


def hex_pid(value: Any) -> int | None:
    """A 4688/4689 PID: hex text, "0x1a2b" (an int as it is)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return int(value.strip(), 16)
    except ValueError:
        return None


def dec_pid(value: Any) -> int | None:
    """A Sysmon PID: decimal text or an int."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def text(value: Any) -> str | None:
    """A text field, None when absent (an empty string stays empty: the caller decides)."""
    return value if isinstance(value, str) else None


# -- the tree ---------------------------------------------------------------------------------------
@dataclass
class Node:
    host: str | None
    boot: int
    guid: str | None  # None for a 4688-only node
    pid: int | None
    image: str | None
    command_line: str | None
    start: datetime | None
    parent_guid: str | None
    parent_pid: int | None
    parent_image: str | None
    sources: list[str]
    order: tuple[Any, ...]  # the event's place on its host's timeline: ties on start go by it
    # the 4688 of a merged node (its image and command line are the other spelling of the same values)
    security: dict[str, Any] | None = None
    end: datetime | None = None
    end_reason: str = "open"  # exit | shutdown | reboot | open
    parent: Node | None = field(default=None, repr=False)
    edge: str | None = None

    def identity(self) -> tuple[Any, ...] | str:
        """process_guid when there is one, else (host, pid, start)."""
        return self.guid if self.guid else (self.host, self.pid, self.start)

    def before(self, child: Node) -> bool:
        """This node started before `child` (equal starts: this one's event came first)."""
        if self.start is None or child.start is None:
            return False
        return self.start < child.start or (self.start == child.start and self.order < child.order)


def with_boots(events: list[Event]) -> list[tuple[Event, int]]:
    """Every event with its boot epoch, each host's events in timeline order."""
    by_host: dict[Any, list[Event]] = defaultdict(list)
    for ev in events:
        by_host[ev.host].append(ev)
    out: list[tuple[Event, int]] = []
    for host in by_host:
        evs = sorted(by_host[host], key=Event.order)
        out += list(zip(evs, ind.assign_boots([_as_record(e) for e in evs]), strict=True))
    return out


def boot_ends(timeline: list[tuple[Event, int]]) -> dict[tuple[Any, int], tuple[datetime | None, str]]:
    """When each (host, boot) ended, for the processes that never logged their exit: at the first
    shutdown marker of the boot ("shutdown"), else when the next boot began ("reboot"). The last
    boot of a host without a shutdown is still running: absent here."""
    ends: dict[tuple[Any, int], tuple[datetime | None, str]] = {}
    previous: tuple[Any, int] | None = None
    for ev, boot in timeline:  # each host's events in order, one host after another
        here = (ev.host, boot)
        if previous is not None and previous != here and previous[0] == ev.host and previous not in ends:
            ends[previous] = (ev.ts, "reboot")  # the first event of the next boot is its boot marker
        if here not in ends and ind.marker(_as_record(ev)) == "shutdown":
            ends[here] = (ev.ts, "shutdown")
        previous = here
    return ends


def _as_record(e: Event) -> ind.Record:
    """independent_sessions' boot rules take its own Record shape, with the channel's usual case."""
    channel = {"security": "Security", "system": "System"}.get(e.channel, e.channel)
    return ind.Record(host=e.host, channel=channel, provider=e.provider, event_id=e.event_id,
                      record_id=e.record_id, order_time=e.ts, utc=e.ts, data={}, seq=e.seq)


def build(events: list[Event]) -> list[Node]:
    """Every process node of the events, with its parent and edge, by the contract's rules."""
    timeline = with_boots(events)
    place = {id(ev): (ev.ts is None, ev.ts or datetime.min, ev.host or "", ev.channel, ev.record_id, ev.seq)
             for ev, _ in timeline}

    # 1. nodes: Sysmon 1 by (host, guid), the first one of a guid wins
    sysmon: dict[tuple[Any, str], Node] = {}
    security: list[Node] = []
    for ev, boot in timeline:
        d = ev.data
        if ev.is_(SYSMON, 1):
            guid = norm_guid(d.get("ProcessGuid"))
            if guid is None or (ev.host, guid) in sysmon:
                continue
            sysmon[(ev.host, guid)] = Node(
                host=ev.host, boot=boot, guid=guid, pid=dec_pid(d.get("ProcessId")), image=text(d.get("Image")),
                command_line=text(d.get("CommandLine")), start=ind.parse_time(d.get("UtcTime")) or ev.ts,
                parent_guid=norm_guid(d.get("ParentProcessGuid")), parent_pid=dec_pid(d.get("ParentProcessId")),
                parent_image=text(d.get("ParentImage")), sources=["sysmon1"], order=place[id(ev)])
        elif ev.is_(SECURITY, 4688):
            security.append(Node(
                host=ev.host, boot=boot, guid=None, pid=hex_pid(d.get("NewProcessId")),
                image=text(d.get("NewProcessName")), command_line=text(d.get("CommandLine")), start=ev.ts,
                parent_guid=None, parent_pid=hex_pid(d.get("ProcessId")),
                parent_image=text(d.get("ParentProcessName")), sources=["4688"], order=place[id(ev)]))

    # 2. merge a 4688 into the Sysmon 1 of the same process (the nearest in time when several fit)
    nodes: list[Node] = list(sysmon.values())
    merged: set[int] = set()
    for sec in security:
        fits = [s for s in sysmon.values()
                if id(s) not in merged and s.host == sec.host and s.pid == sec.pid
                and s.image is not None and sec.image is not None and s.image.lower() == sec.image.lower()
                and s.start is not None and sec.start is not None and abs(s.start - sec.start) <= MERGE_WINDOW]
        if fits:
            best = min(fits, key=lambda s: abs(s.start - sec.start))  # type: ignore[operator]
            merged.add(id(best))
            best.sources = ["sysmon1", "4688"]
            best.security = {"image": sec.image, "command_line": sec.command_line, "parent_pid": sec.parent_pid,
                             "parent_image": sec.parent_image}
        else:
            nodes.append(sec)

    # 3. exits
    for ev, boot in timeline:
        if ev.is_(SYSMON, 5):
            node = sysmon.get((ev.host, norm_guid(ev.data.get("ProcessGuid")) or ""))
            when = ind.parse_time(ev.data.get("UtcTime")) or ev.ts
            if node is not None and when is not None and (node.end is None or when < node.end):
                node.end, node.end_reason = when, "exit"
        elif ev.is_(SECURITY, 4689) and ev.ts is not None and hex_pid(ev.data.get("ProcessId")) is not None:
            pid = hex_pid(ev.data.get("ProcessId"))
            started = [n for n in nodes if n.host == ev.host and n.boot == boot and n.pid == pid
                       and n.start is not None and n.start <= ev.ts]
            if started:
                node = max(started, key=lambda n: (n.start, n.order))
                if node.end is None or ev.ts < node.end:
                    node.end, node.end_reason = ev.ts, "exit"
    # a process that logged no exit ended with its boot, if the boot ended
    ends = boot_ends(timeline)
    for node in nodes:
        if node.end is None:
            node.end, node.end_reason = ends.get((node.host, node.boot), (None, "open"))

    # 4. edges
    for child in nodes:
        parent = sysmon.get((child.host, child.parent_guid)) if child.parent_guid else None
        if parent is not None and parent is not child and parent.before(child):
            child.parent, child.edge = parent, ("merged" if len(child.sources) == 2 else "guid")
            continue
        running = [n for n in nodes
                   if child.parent_pid is not None and n is not child
                   and n.host == child.host and n.boot == child.boot and n.pid == child.parent_pid
                   and n.before(child) and not (n.end is not None and child.start is not None and n.end < child.start)]
        if running:
            child.parent, child.edge = max(running, key=lambda n: (n.start, n.order)), "pid+time"
        else:
            child.parent, child.edge = None, "unresolved"
    return nodes


def by_identity(nodes: list[Node]) -> dict[Any, Node]:
    out: dict[Any, Node] = {}
    for n in nodes:
        assert n.identity() not in out, f"two independent nodes share the identity {n.identity()!r}"
        out[n.identity()] = n
    return out


def dump(nodes: list[Node]) -> str:
    """The nodes as JSON lines, for reading a failure by eye."""
    return "\n".join(json.dumps({"id": str(n.identity()), "pid": n.pid, "image": n.image, "edge": n.edge,
                                 "parent": str(n.parent.identity()) if n.parent else None,
                                 "start": str(n.start), "end": str(n.end), "sources": n.sources})
                     for n in nodes)
