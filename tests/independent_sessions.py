"""Logon sessions computed straight from the raw records, in plain Python, for the corpus tests.

Nothing here reads the engine's tables or SQL: records come from the `evtx` package or from the JSON
lines themselves, and the rules are those of the README's "Logon sessions", engine/boots.py and engine/sessions.py (and domain.md §2) written out one at a
time. It is deliberately slow and simple: every rule is a loop a reader can check by eye.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

SENSITIVE = frozenset({
    "SeAssignPrimaryTokenPrivilege", "SeAuditPrivilege", "SeBackupPrivilege", "SeCreateTokenPrivilege",
    "SeDebugPrivilege", "SeEnableDelegationPrivilege", "SeImpersonatePrivilege", "SeLoadDriverPrivilege",
    "SeRestorePrivilege", "SeSecurityPrivilege", "SeSystemEnvironmentPrivilege", "SeTakeOwnershipPrivilege",
    "SeTcbPrivilege", "SeDelegateSessionUserImpersonatePrivilege",
})
SAME_BOOT_WINDOW = timedelta(minutes=10)


@dataclass
class Record:
    """One event, reduced to what sessions need."""

    host: str | None
    channel: str
    provider: str
    event_id: int
    record_id: int
    # The time used to put the host's events in order (for NXLog's EventTime: local, but one clock per host).
    order_time: datetime | None
    # The UTC time when the document states it unambiguously, else None.
    utc: datetime | None
    data: dict[str, Any]
    seq: int = 0  # position in the file, the last tie-breaker

    def sort_key(self) -> tuple[Any, ...]:
        return (self.order_time is None, self.order_time or datetime.min, self.record_id, self.seq)


# -- reading ----------------------------------------------------------------------------------------
def parse_time(text: Any) -> datetime | None:
    """ISO 8601 with or without Z / fractional digits (more than 6 are cut), as a naive UTC datetime."""
    if not isinstance(text, str) or not text.strip():
        return None
    s = text.strip().replace(" UTC", "").replace(" ", "T", 1)
    if s.endswith("Z"):
        s = s[:-1]
    if "+" in s[10:]:
        s = s[:10] + s[10:].split("+", 1)[0]
    if "." in s:
        head, frac = s.split(".", 1)
        s = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(s)


def parse_id(value: Any) -> int | None:
    """A LogonId as an unsigned integer: "0x3e7", "0x3E7", "999" or 999; None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    s = str(value).strip()
    try:
        return int(s, 16) if s.lower().startswith("0x") else int(s)
    except ValueError:
        return None


def evtx_records(path: Path) -> list[Record]:
    from evtx import PyEvtxParser

    out: list[Record] = []
    records = PyEvtxParser(str(path)).records_json()
    while True:
        try:
            for r in records:
                event = json.loads(r["data"])["Event"]
                out.append(_from_event(event, len(out)))
            return out
        except RuntimeError:  # a damaged record: skip it, keep the rest
            continue


def _from_event(event: dict[str, Any], seq: int) -> Record:
    system = event["System"]
    eid = system["EventID"]
    if isinstance(eid, dict):
        eid = eid["#text"]
    when = parse_time(system["TimeCreated"]["#attributes"]["SystemTime"])
    data = event.get("EventData")
    return Record(host=system.get("Computer"), channel=system.get("Channel") or "",
                  provider=(system.get("Provider") or {}).get("#attributes", {}).get("Name") or "",
                  event_id=int(eid), record_id=int(system.get("EventRecordID") or 0),
                  order_time=when, utc=when, data=data if isinstance(data, dict) else {}, seq=seq)


def evtx_json_lines(path: Path) -> Iterator[str]:
    """The file as evtx_dump writes it with one object per line: each record's `{"Event": …}`."""
    from evtx import PyEvtxParser

    for r in PyEvtxParser(str(path)).records_json():
        yield json.dumps(json.loads(r["data"]), separators=(",", ":"))


def json_lines(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                yield doc


def flat_records(path: Path) -> list[Record]:
    """NXLog-style flat lines and winlogbeat 6 lines (Security-Datasets)."""
    out: list[Record] = []
    for doc in json_lines(path):
        if "event_id" in doc:  # winlogbeat 6
            utc = parse_time(doc.get("@timestamp"))  # winlogbeat's @timestamp is the event's TimeCreated
            out.append(Record(host=doc.get("computer_name"), channel=doc.get("log_name") or "",
                              provider=doc.get("source_name") or "", event_id=int(doc["event_id"]),
                              record_id=int(doc.get("record_number") or 0), order_time=utc, utc=utc,
                              data=dict(doc.get("event_data") or {}), seq=len(out)))
            continue
        if "EventID" not in doc:
            continue
        # Neither is UTC one can trust: EventTime is local time with no zone, and the producers that
        # write TimeCreated write local time too, marked "Z" (Sysmon's UtcTime beside it is hours
        # away). Either is good for the order of one host's events, not for UTC.
        utc = None
        order = parse_time(doc["TimeCreated"] if "TimeCreated" in doc else doc.get("EventTime"))
        out.append(Record(host=doc.get("Hostname"), channel=doc.get("Channel") or "",
                          provider=doc.get("SourceName") or "", event_id=int(doc["EventID"]),
                          record_id=int(doc.get("RecordNumber") or 0), order_time=order, utc=utc,
                          data=doc, seq=len(out)))
    return out


def times_are_utc(records: Iterable[Record]) -> bool:
    return all(r.utc is not None for r in records)


# -- boot epochs --------------------------------------------------------------------------------------
def marker(r: Record) -> str | None:
    ch = r.channel.lower()
    if ch == "security" and r.event_id == 4608:
        return "boot"
    if ch == "system" and r.event_id in (6005, 6009) and r.provider == "EventLog":
        return "boot"
    if ch == "security" and r.event_id == 4609:
        return "shutdown"
    if ch == "security" and r.event_id == 1100 and r.provider == "Microsoft-Windows-Eventlog":
        return "shutdown"
    if ch == "system" and r.event_id == 6006:
        return "shutdown"
    return None


def assign_boots(events: list[Record]) -> list[int]:
    """Epoch of each event of one host (already in timeline order), as the contract's rules say."""
    epochs: list[int] = []
    epoch = 0
    after_shutdown = False   # the last event was a shutdown marker: the next event opens an epoch
    absorb_boot = False      # an epoch was opened after a shutdown: the boot marker that follows is its own
    prev_marker: tuple[str, datetime | None] | None = None
    seen: set[int] = set()
    for ev in events:
        kind = marker(ev)
        if kind == "shutdown":
            after_shutdown = True
            absorb_boot = False
        elif after_shutdown:
            epoch += 1
            after_shutdown = False
            absorb_boot = kind != "boot"
            seen = {ev.event_id} if kind == "boot" else set()
        elif kind == "boot":
            if absorb_boot:
                absorb_boot = False
                seen = {ev.event_id}
            elif (prev_marker is not None and prev_marker[0] == "boot" and prev_marker[1] is not None
                  and ev.order_time is not None and ev.order_time - prev_marker[1] < SAME_BOOT_WINDOW
                  and ev.event_id not in seen):
                seen.add(ev.event_id)  # 4608, 6005 and 6009 of one boot; each is written once a boot
            else:
                epoch += 1
                seen = {ev.event_id}
        epochs.append(epoch)
        if kind:
            prev_marker = (kind, ev.order_time)
    return epochs


# -- sessions -----------------------------------------------------------------------------------------
@dataclass
class Session:
    host: str | None
    boot: int
    logon_id: int
    linked_logon_id: int | None
    user: Any
    domain: Any
    sid: Any
    logon_type: int | None
    auth_package: Any
    logon_process: Any
    src_ip: str | None
    src_port: int | None
    workstation: Any
    privileged: bool
    privileges: list[str]
    sensitive_privileges: list[str]
    start: datetime | None
    end: datetime | None
    end_reason: str
    logons: int
    # start and end on the clock the document wrote (equal to start/end when that clock is UTC)
    start_written: datetime | None = field(repr=False)
    end_written: datetime | None = field(repr=False)

    def key(self) -> tuple[Any, ...]:
        return (self.host, self.boot, self.logon_id)


def dash_null(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and value.strip() in ("", "-"):
        return None
    return value


def canonical_ip(value: Any) -> str | None:
    v = dash_null(value)
    if v is None:
        return None
    s = str(v).strip()
    if s.lower().startswith("::ffff:") and "." in s:
        return s[7:]
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        return s


def as_int(value: Any) -> int | None:
    v = dash_null(value)
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def privilege_names(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return str(value or "").split()


def compute(records: list[Record]) -> dict[tuple[Any, ...], Session]:
    by_host: dict[Any, list[Record]] = defaultdict(list)
    for r in records:
        by_host[r.host].append(r)
    out: dict[tuple[Any, ...], Session] = {}
    for host, events in by_host.items():
        events.sort(key=Record.sort_key)
        epochs = assign_boots(events)
        per_boot: dict[int, list[Record]] = defaultdict(list)
        for ev, epoch in zip(events, epochs, strict=True):
            per_boot[epoch].append(ev)
        last_epoch = max(per_boot)
        for epoch, evs in per_boot.items():
            nxt = per_boot.get(epoch + 1)
            nxt_first = nxt[0] if nxt else None
            for s in _sessions_of_boot(host, epoch, evs, nxt_first, epoch < last_epoch):
                out[s.key()] = s
    return out


def _security(ev: Record, eid: int) -> bool:
    return ev.event_id == eid and ev.channel.lower() == "security"


def _sessions_of_boot(host: Any, epoch: int, evs: list[Record], next_first: Record | None,
                      later_epoch: bool) -> list[Session]:
    first: dict[int, Record] = {}
    count: dict[int, int] = defaultdict(int)
    order: list[int] = []
    for ev in evs:
        if _security(ev, 4624):
            lid = parse_id(ev.data.get("TargetLogonId"))
            if lid is None:
                continue
            count[lid] += 1
            if lid not in first:
                first[lid] = ev
                order.append(lid)
    shutdowns = [ev for ev in evs if marker(ev) == "shutdown"]
    sessions: list[Session] = []
    consumed: set[int] = set()
    for lid in order:
        if lid in consumed:
            continue
        doc = first[lid]
        linked = parse_id(doc.data.get("TargetLinkedLogonId")) or None
        if linked is not None and linked in first:
            back = parse_id(first[linked].data.get("TargetLinkedLogonId"))
            if back == lid and linked != lid and linked not in consumed:
                consumed.add(linked)
            else:
                linked = None
        consumed.add(lid)
        ids = {lid} | ({linked} if linked is not None else set())
        privs: set[str] = set()
        privileged = False
        logoffs: list[Record] = []
        for ev in evs:
            if _security(ev, 4672) and parse_id(ev.data.get("SubjectLogonId")) in ids:
                privileged = True
                privs.update(privilege_names(ev.data.get("PrivilegeList")))
            if (_security(ev, 4634) or _security(ev, 4647)) and parse_id(ev.data.get("TargetLogonId")) in ids:
                logoffs.append(ev)
        end_event: Record | None = None
        if logoffs:
            end_event = max(logoffs, key=Record.sort_key)
            reason = "4647" if any(e.event_id == 4647 for e in logoffs) else "4634"
        elif shutdowns:
            end_event, reason = shutdowns[-1], "shutdown"
        elif later_epoch and next_first is not None:
            end_event, reason = next_first, "reboot"
        else:
            reason = "open"
        d = doc.data
        lp = d.get("LogonProcessName")
        sessions.append(Session(
            host=host, boot=epoch, logon_id=lid, linked_logon_id=linked,
            user=d.get("TargetUserName"), domain=d.get("TargetDomainName"), sid=d.get("TargetUserSid"),
            logon_type=as_int(d.get("LogonType")), auth_package=d.get("AuthenticationPackageName"),
            logon_process=lp.strip() if isinstance(lp, str) else lp,
            src_ip=canonical_ip(d.get("IpAddress")), src_port=as_int(d.get("IpPort")),
            workstation=dash_null(d.get("WorkstationName")),
            privileged=privileged, privileges=sorted(privs), sensitive_privileges=sorted(privs & SENSITIVE),
            start=doc.utc, end=end_event.utc if end_event else None, end_reason=reason,
            # "how many 4624 the key has": the key is (host, boot, logon_id), so a linked pair's
            # second id does not add its own 4624
            logons=count[lid],
            start_written=doc.order_time, end_written=end_event.order_time if end_event else None))
    return sessions
