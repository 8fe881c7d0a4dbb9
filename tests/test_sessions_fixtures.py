"""`ashiato sessions` and `ashiato logons --failed` against an independent reading of generated events.

The events come from `fixtures.sessions`; what the commands should print is worked out here, in
plain Python over those canonical events, following the contract of the sessions engine
(boot epochs, one session per (host, boot, LogonId), linked UAC pairs, 4672 privileges, ends,
flags; failed-logon groups and verdicts) and domain.md §2. Nothing here reads the engine's SQL.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ingest_into

from fixtures import sessions as story
from fixtures.incident import LSM, RCM, SECURITY, SYSMON, SYSTEM, CanonicalEvent
from tui.cli import main

SEED = 7
EVENTS = story.events(SEED)

# -- what domain.md §2 and the contract say, as data -----------------------------------------------
LOGON_TYPE_NAMES = {0: "System", 2: "Interactive", 3: "Network", 4: "Batch", 5: "Service", 7: "Unlock",
                    8: "NetworkCleartext", 9: "NewCredentials", 10: "RemoteInteractive", 11: "CachedInteractive",
                    12: "CachedRemoteInteractive", 13: "CachedUnlock"}
SENSITIVE = {"SeAssignPrimaryTokenPrivilege", "SeAuditPrivilege", "SeBackupPrivilege", "SeCreateTokenPrivilege",
             "SeDebugPrivilege", "SeEnableDelegationPrivilege", "SeImpersonatePrivilege", "SeLoadDriverPrivilege",
             "SeRestorePrivilege", "SeSecurityPrivilege", "SeSystemEnvironmentPrivilege",
             "SeTakeOwnershipPrivilege", "SeTcbPrivilege", "SeDelegateSessionUserImpersonatePrivilege"}
SAME_BOOT = timedelta(minutes=10)
# RDP events that carry no LogonId (1149 comes a moment before its 4624) belong to the RDP session
# of that account whose span holds them; a minute's grace before the logon covers the 1149.
RDP_LEAD = timedelta(seconds=60)
BRUTE_FORCE = (5, timedelta(minutes=5))
SPRAY = (3, timedelta(minutes=30))
SUCCESS_AFTER = (3, timedelta(minutes=10))


def is_boot_marker(ev: CanonicalEvent) -> bool:
    return ((ev.channel == SECURITY and ev.event_id == 4608)
            or (ev.channel == SYSTEM and ev.event_id in (6005, 6009) and ev.provider.lower().endswith("eventlog")))


def is_shutdown_marker(ev: CanonicalEvent) -> bool:
    return ((ev.channel == SECURITY and ev.event_id == 4609)
            or (ev.channel == SECURITY and ev.event_id == 1100 and ev.provider.lower().endswith("eventlog"))
            or (ev.channel == SYSTEM and ev.event_id == 6006 and ev.provider.lower().endswith("eventlog")))


def luid(value: str | None) -> int | None:
    """A LogonId as Windows writes it (0x… hex, or decimal), 0 and '-' as none."""
    if value is None or value.strip() in ("", "-"):
        return None
    text = value.strip().lower()
    number = int(text, 16) if text.startswith("0x") else int(text)
    return number or None


def dash(value: str | None) -> str | None:
    return None if value is None or value.strip() in ("", "-") else value


def ip_of(value: str | None) -> str | None:
    value = dash(value)
    return value.removeprefix("::ffff:") if value else None


# -- the reading -----------------------------------------------------------------------------------
@dataclass
class Epoch:
    number: int
    first: datetime | None = None
    shutdown: datetime | None = None


@dataclass
class Reading:
    """The canonical events in timeline order, each with its boot epoch."""

    events: list[CanonicalEvent]
    boot: dict[int, int]  # id(event) -> epoch
    epochs: dict[str, list[Epoch]]

    def of(self, ev: CanonicalEvent) -> int:
        return self.boot[id(ev)]

    def epoch(self, host: str, number: int) -> Epoch:
        return next(e for e in self.epochs[host] if e.number == number)

    def next_epoch(self, host: str, number: int) -> Epoch | None:
        later = [e for e in self.epochs[host] if e.number > number and e.first is not None]
        return min(later, key=lambda e: e.number) if later else None


def whole_seconds(ev: CanonicalEvent) -> CanonicalEvent:
    return CanonicalEvent(**{**ev.__dict__, "time": ev.time.replace(microsecond=0)})


def read(events: Iterable[CanonicalEvent]) -> Reading:
    """Timeline order (time, then record order), and the contract's boot epochs per host."""
    ordered = sorted(events, key=lambda e: (e.time, e.computer, e.channel, e.record_id))
    boot: dict[int, int] = {}
    epochs: dict[str, list[Epoch]] = {}
    by_host: dict[str, list[CanonicalEvent]] = defaultdict(list)
    for ev in ordered:
        by_host[ev.computer].append(ev)
    for host, evs in by_host.items():
        current = Epoch(0)
        found = [current]
        last_marker: CanonicalEvent | None = None
        after_shutdown = False
        kinds: set[int] = set()
        for ev in evs:
            if is_boot_marker(ev):
                if after_shutdown:
                    after_shutdown = False  # the epoch the shutdown opened: this boot's marker is in it
                    kinds = {ev.event_id}
                elif (last_marker is not None and is_boot_marker(last_marker)
                      and ev.time - last_marker.time < SAME_BOOT and ev.event_id not in kinds):
                    kinds.add(ev.event_id)  # each boot marker is written once a boot
                else:
                    current = Epoch(current.number + 1)
                    found.append(current)
                    kinds = {ev.event_id}
                last_marker = ev
            elif is_shutdown_marker(ev):
                assert not after_shutdown, "the story has no shutdown written by several markers"
                boot[id(ev)] = current.number
                current.first = current.first or ev.time
                current.shutdown = ev.time
                current = Epoch(current.number + 1)
                found.append(current)
                after_shutdown = True
                last_marker = ev
                continue
            boot[id(ev)] = current.number
            current.first = current.first or ev.time
        epochs[host] = [e for e in found if e.first is not None]
    return Reading(ordered, boot, epochs)


def named_ids(ev: CanonicalEvent) -> set[int]:
    """The LogonIds an event names: TargetLogonId and SubjectLogonId; 4778/4779 LogonID; Sysmon LogonId."""
    fields = dict(ev.event_data)
    for inner in (ev.user_data or {}).values():
        fields.update(inner)
    if ev.channel == SYSMON:
        keys: tuple[str, ...] = ("LogonId",)
    elif ev.channel == SECURITY:
        keys = ("TargetLogonId", "SubjectLogonId") + (("LogonID",) if ev.event_id in (4778, 4779) else ())
    else:
        keys = ("SubjectLogonId",)
    return {n for k in keys if (n := luid(fields.get(k))) is not None}


def rdp_account(ev: CanonicalEvent) -> str | None:
    """The account of an RDP event that carries no LogonId (RCM 1149, LSM 21-25)."""
    fields = next(iter((ev.user_data or {}).values()), {})
    if ev.channel == RCM and ev.event_id == 1149:
        return dash(fields.get("Param1"))
    if ev.channel == LSM and ev.event_id in (21, 22, 23, 24, 25):
        return (dash(fields.get("User")) or "").rsplit("\\", 1)[-1] or None
    return None


@dataclass
class Session:
    host: str
    boot: int
    logon_id: int
    first: CanonicalEvent  # the key's first 4624
    logons: int
    linked_logon_id: int | None = None
    ids: set[int] = field(default_factory=set)
    expected: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.host, self.boot, self.logon_id)

    @property
    def user(self) -> str:
        return self.first.event_data["TargetUserName"]

    @property
    def source(self) -> str | None:
        d = self.first.event_data
        return ip_of(d.get("IpAddress")) or dash(d.get("WorkstationName"))


def expected_sessions(events: Iterable[CanonicalEvent]) -> dict[tuple[str, int, int], dict[str, Any]]:
    r = read(events)
    firsts: dict[tuple[str, int, int], CanonicalEvent] = {}
    counts: Counter[tuple[str, int, int]] = Counter()
    for ev in r.events:
        if ev.channel == SECURITY and ev.event_id == 4624 and (lid := luid(ev.event_data.get("TargetLogonId"))):
            key = (ev.computer, r.of(ev), lid)
            firsts.setdefault(key, ev)
            counts[key] += 1
    position = {id(ev): n for n, ev in enumerate(r.events)}

    def linked(key: tuple[str, int, int]) -> int | None:
        return luid(firsts[key].event_data.get("TargetLinkedLogonId"))

    absorbed: set[tuple[str, int, int]] = set()
    sessions: list[Session] = []
    for key in sorted(firsts, key=lambda k: position[id(firsts[k])]):
        if key in absorbed:
            continue
        host, boot, lid = key
        other = linked(key)
        s = Session(host, boot, lid, firsts[key], counts[key], linked_logon_id=other)
        partner = (host, boot, other or 0)
        if partner in firsts and linked(partner) == lid:
            absorbed.add(partner)
        s.ids = {lid} | ({other} if other else set())
        sessions.append(s)

    for s in sessions:
        in_boot = [ev for ev in r.events if ev.computer == s.host and r.of(ev) == s.boot]
        start = s.first.time
        privileges = [ev for ev in in_boot if ev.channel == SECURITY and ev.event_id == 4672
                      and luid(ev.event_data.get("SubjectLogonId")) in s.ids]
        names = sorted({p for ev in privileges for p in ev.event_data.get("PrivilegeList", "").split()})
        logoffs = [ev for ev in in_boot if ev.channel == SECURITY and ev.event_id in (4634, 4647)
                   and luid(ev.event_data.get("TargetLogonId")) in s.ids
                   and position[id(ev)] >= position[id(s.first)]]
        epoch = r.epoch(s.host, s.boot)
        following = r.next_epoch(s.host, s.boot)
        if logoffs:
            end: datetime | None = max(ev.time for ev in logoffs)
            reason = "4647" if any(ev.event_id == 4647 for ev in logoffs) else "4634"
        elif epoch.shutdown is not None:
            end, reason = epoch.shutdown, "shutdown"
        elif following is not None:
            end, reason = following.first, "reboot"
        else:
            end, reason = None, "open"
        members = [ev for ev in in_boot if named_ids(ev) & s.ids]
        d = s.first.event_data
        logon_type = int(d["LogonType"])
        if logon_type in (10, 12):
            members += [ev for ev in in_boot if (account := rdp_account(ev)) is not None
                        and account.lower() == s.user.lower() and ev.time >= start - RDP_LEAD
                        and (end is None or ev.time <= end)]
        s.expected = {
            "host": s.host, "boot": s.boot, "logon_id": s.logon_id, "linked_logon_id": s.linked_logon_id,
            "user": d["TargetUserName"], "domain": dash(d.get("TargetDomainName")),
            "sid": dash(d.get("TargetUserSid")), "logon_type": logon_type,
            "logon_type_name": LOGON_TYPE_NAMES.get(logon_type),
            "auth_package": dash(d.get("AuthenticationPackageName")),
            "logon_process": dash((d.get("LogonProcessName") or "").strip()),
            "src_ip": ip_of(d.get("IpAddress")),
            "src_port": int(d["IpPort"]) if dash(d.get("IpPort")) else None,
            "workstation": dash(d.get("WorkstationName")),
            "privileged": bool(privileges), "privileges": names,
            "sensitive_privileges": sorted(p for p in names if p in SENSITIVE),
            "start": start, "end": end, "end_reason": reason,
            "duration_s": (end - start).total_seconds() if end is not None else None,
            "last_seen": max([start, *(ev.time for ev in members)]),
            "logons": s.logons, "events": len({id(ev) for ev in members}),
            "processes": processes(members, s.ids),
            "flags": sorted(flags(s, sessions, in_boot)),
        }
    return {s.key: s.expected for s in sessions}


def processes(members: list[CanonicalEvent], ids: set[int]) -> int:
    """Sysmon 1 by LogonId, 4688 by its TargetLogonId when set else its creator's; a process that
    both logged (same PID and image, within 2 s) counts once (domain.md §3)."""
    sysmon = [ev for ev in members if ev.channel == SYSMON and ev.event_id == 1
              and luid(ev.event_data.get("LogonId")) in ids]
    audit = [ev for ev in members if ev.channel == SECURITY and ev.event_id == 4688
             and (luid(ev.event_data.get("TargetLogonId")) or luid(ev.event_data.get("SubjectLogonId"))) in ids]

    def same(a: CanonicalEvent, s: CanonicalEvent) -> bool:
        return (int(a.event_data["NewProcessId"], 16) == int(s.event_data["ProcessId"])
                and a.event_data["NewProcessName"].lower() == s.event_data["Image"].lower()
                and abs((a.time - s.time).total_seconds()) <= 2)

    return len(sysmon) + sum(1 for a in audit if not any(same(a, s) for s in sysmon))


def flags(s: Session, everyone: list[Session], in_boot: list[CanonicalEvent]) -> set[str]:
    d = s.first.event_data
    logon_type = int(d["LogonType"])
    anonymous = s.user.upper() == "ANONYMOUS LOGON"
    ntlm = (d.get("AuthenticationPackageName", "").upper() == "NTLM"
            or d.get("LogonProcessName", "").strip().upper() == "NTLMSSP")
    out = set()
    if logon_type == 3 and ntlm and not anonymous:
        out.add("ntlm_network")
    if ((logon_type == 3 and d.get("LogonProcessName", "").strip().upper() == "NTLMSSP"
         and d.get("KeyLength") == "0" and d.get("SubjectUserSid") == "S-1-0-0" and not anonymous)
            or (logon_type == 9 and d.get("LogonProcessName", "").strip().lower() == "seclogo")):
        out.add("pass_the_hash")
    if logon_type == 8:
        out.add("cleartext")
    earlier = [o for o in everyone if o.user.lower() == s.user.lower() and o.first.time < s.first.time]
    if earlier and s.source is not None and s.source not in {o.source for o in earlier}:
        out.add("new_source")
    if any(ev.channel == SECURITY and ev.event_id == 4648 and luid(ev.event_data.get("SubjectLogonId")) in s.ids
           for ev in in_boot):
        out.add("explicit_credentials")
    return out


# -- failed logons ----------------------------------------------------------------------------------
def failures(events: Iterable[CanonicalEvent]) -> list[CanonicalEvent]:
    def failed(ev: CanonicalEvent) -> bool:
        if ev.channel != SECURITY:
            return False
        if ev.event_id == 4625:
            return True
        return ev.event_id in (4768, 4771, 4776) and int(ev.event_data.get("Status", "0x0"), 16) != 0
    return sorted((ev for ev in events if failed(ev)), key=lambda e: e.time)


def account_of(ev: CanonicalEvent) -> str:
    return ev.event_data["TargetUserName"].lower()


def source_of(ev: CanonicalEvent) -> str | None:
    d = ev.event_data
    return ip_of(d.get("IpAddress")) or dash(d.get("WorkstationName")) or dash(d.get("Workstation"))


def windows(evs: list[CanonicalEvent], span: timedelta) -> Iterator[list[CanonicalEvent]]:
    """Every run of events that starts at one of them and ends within `span`."""
    for i, first in enumerate(evs):
        yield [ev for ev in evs[i:] if ev.time - first.time <= span]


def expected_groups(events: list[CanonicalEvent]) -> dict[tuple[str, str | None], dict[str, Any]]:
    groups: dict[tuple[str, str | None], list[CanonicalEvent]] = defaultdict(list)
    for ev in failures(events):
        groups[(account_of(ev), source_of(ev))].append(ev)
    return {key: {"count": len(evs), "first": evs[0].time, "last": evs[-1].time,
                  "hosts": sorted({ev.computer for ev in evs}), "event_ids": sorted({ev.event_id for ev in evs}),
                  "statuses": sorted({(int(ev.event_data["Status"], 16),
                                       int(ev.event_data["SubStatus"], 16) if "SubStatus" in ev.event_data else None)
                                      for ev in evs}, key=str)}
            for key, evs in groups.items()}


@dataclass(frozen=True)
class Verdict:
    verdict: str
    accounts: tuple[str, ...]
    host: str | None
    source: str | None
    supporting: tuple[CanonicalEvent, ...]


def expected_verdicts(events: list[CanonicalEvent]) -> list[Verdict]:
    fails = failures(events)
    out: list[Verdict] = []
    n, span = BRUTE_FORCE
    by_account_host: dict[tuple[str, str], list[CanonicalEvent]] = defaultdict(list)
    for ev in fails:
        by_account_host[(account_of(ev), ev.computer)].append(ev)
    for (account, host), evs in by_account_host.items():
        hits = [w for w in windows(evs, span) if len(w) >= n]
        if hits:
            supporting = tuple(sorted({id(e): e for w in hits for e in w}.values(), key=lambda e: e.time))
            sources = {source_of(e) for e in supporting}
            out.append(Verdict("brute_force", (account,), host, sources.pop() if len(sources) == 1 else None,
                               supporting))
    n, span = SPRAY
    by_source: dict[str | None, list[CanonicalEvent]] = defaultdict(list)
    for ev in fails:
        by_source[source_of(ev)].append(ev)
    for source, evs in by_source.items():
        hits = [w for w in windows(evs, span) if len({account_of(e) for e in w}) >= n]
        if hits:
            supporting = tuple(sorted({id(e): e for w in hits for e in w}.values(), key=lambda e: e.time))
            hosts = {e.computer for e in supporting}
            out.append(Verdict("password_spray", tuple(sorted({account_of(e) for e in supporting})),
                               hosts.pop() if len(hosts) == 1 else None, source, supporting))
    n, span = SUCCESS_AFTER
    for ev in events:
        if ev.channel == SECURITY and ev.event_id == 4624:
            before = [f for f in fails if account_of(f) == account_of(ev) and source_of(f) == source_of(ev)
                      and timedelta(0) <= ev.time - f.time <= span]
            if len(before) >= n:
                out.append(Verdict("success_after_failures", (account_of(ev),), ev.computer, source_of(ev),
                                   (*before, ev)))
    for ev in events:
        if ev.channel == SECURITY and ev.event_id == 4740:
            out.append(Verdict("lockout", (account_of(ev),), ev.computer, None, (ev,)))
    return out


# -- running the commands ---------------------------------------------------------------------------
def cli_jsonl(*argv: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    assert code == 0, argv
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


@dataclass
class Ran:
    case: Path
    sessions: dict[tuple[str, int, int], dict[str, Any]]
    logons: list[dict[str, Any]]
    eids: dict[int, tuple[str, str, int]]  # eid -> (host, channel, record_id)
    stored: int

    def events_of(self, eids: Iterable[int]) -> set[tuple[str, str, int]]:
        return {self.eids[e] for e in eids}


def run_case(tmp: Path, paths: list[Path]) -> Ran:
    tmp.mkdir(parents=True, exist_ok=True)
    case = tmp / "case.duckdb"
    ingest_into(case, paths)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(tmp / "config"))  # no user's own thresholds
        rows = cli_jsonl("sessions", str(case), "--format", "jsonl")
        logons = cli_jsonl("logons", str(case), "--failed", "--format", "jsonl")
        eids = cli_jsonl("sql", str(case), "SELECT eid, host, channel, record_id FROM events", "--format", "jsonl")
    sessions = {(r["host"], r["boot"], r["logon_id"]): r for r in rows}
    assert len(sessions) == len(rows), "two rows for one (host, boot, logon_id)"
    return Ran(case, sessions, logons, {r["eid"]: (r["host"], r["channel"], r["record_id"]) for r in eids},
               len(eids))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return story.write(tmp_path_factory.mktemp("sessions-shapes"), SEED, evs=EVENTS)


@pytest.fixture(scope="module")
def ran(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The EVTX JSON and the winlogbeat (module-processed) export of the same events, in one case."""
    return run_case(tmp_path_factory.mktemp("sessions-case"),
                    [files["evtx_jsonl"], files["winlogbeat_module"]])


@pytest.fixture(scope="module")
def expected() -> dict[tuple[str, int, int], dict[str, Any]]:
    return expected_sessions(EVENTS)


def ev_key(ev: CanonicalEvent) -> tuple[str, str, int]:
    return (ev.computer, ev.channel, ev.record_id)


def when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def naive(t: datetime | None) -> datetime | None:
    return None if t is None else t.replace(tzinfo=None)


COMPARED = ("host", "boot", "logon_id", "linked_logon_id", "user", "domain", "sid", "logon_type", "logon_type_name",
            "auth_package", "logon_process", "src_ip", "src_port", "workstation", "privileged", "privileges",
            "sensitive_privileges", "start", "end", "end_reason", "duration_s", "last_seen", "logons", "events",
            "processes", "flags")


def differences(got: dict[str, Any], want: dict[str, Any], fields: Iterable[str] = COMPARED) -> dict[str, Any]:
    """{field: (got, expected)} for every field that differs; times compared as naive UTC."""
    out = {}
    for name in fields:
        g, w = got.get(name), want.get(name)
        if name in ("start", "end", "last_seen"):
            g, w = when(g), naive(w)
        elif name == "duration_s":
            if g is not None and w is not None and abs(g - w) < 1e-5:
                continue
        elif name == "flags" or name in ("privileges", "sensitive_privileges"):
            g = sorted(g or [])
        if g != w:
            out[name] = (g, w)
    return out


def find(want: dict[tuple[str, int, int], dict[str, Any]], *, user: str, host: str | None = None,
         boot: int | None = None) -> dict[str, Any]:
    rows = [r for r in want.values() if r["user"].lower() == user.lower()
            and (host is None or r["host"].startswith(host)) and (boot is None or r["boot"] == boot)]
    assert len(rows) == 1, (user, host, boot, rows)
    return rows[0]


def check(ran: Ran, row: dict[str, Any], fields: Iterable[str] = COMPARED) -> dict[str, Any]:
    key = (row["host"], row["boot"], row["logon_id"])
    assert key in ran.sessions, f"no session {key[0]}/{key[1]}/0x{key[2]:x}; have {sorted(ran.sessions)}"
    got = ran.sessions[key]
    assert differences(got, row, fields) == {}, f"{key[0]}/{key[1]}/0x{key[2]:x}"
    return got


# -- the story itself ------------------------------------------------------------------------------
def test_the_story_is_a_pure_function_of_the_seed() -> None:
    assert story.events(SEED) == EVENTS
    other = story.events(SEED + 1)
    assert other != EVENTS
    # Another seed moves LogonIds and times a little, never the story.
    assert Counter((e.computer, e.event_id) for e in other) == Counter((e.computer, e.event_id) for e in EVENTS)
    assert expected_sessions(other).keys() != expected_sessions(EVENTS).keys()
    assert sorted((w["host"], w["boot"], w["user"], w["end_reason"], tuple(w["flags"]), w["privileged"])
                  for w in expected_sessions(other).values()) == sorted(
        (w["host"], w["boot"], w["user"], w["end_reason"], tuple(w["flags"]), w["privileged"])
        for w in expected_sessions(EVENTS).values())


def test_the_same_events_in_two_shapes_are_stored_once(ran: Ran) -> None:
    assert ran.stored == len(EVENTS)


def test_every_shape_is_written_and_deduplicates_into_one_case(files: dict[str, Path], tmp_path: Path) -> None:
    assert set(files) == set(story.shape_names())
    report = ingest_into(tmp_path / "all.duckdb", list(files.values()))
    assert [f.status for f in report.files] == ["ingested"] * len(files)
    assert (report.records, report.duplicates) == (len(EVENTS), len(EVENTS) * (len(files) - 1))


# -- sessions ---------------------------------------------------------------------------------------
def test_the_sessions_are_exactly_one_per_host_boot_and_logon_id_of_the_reading(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    assert sorted(ran.sessions) == sorted(expected)


def test_every_session_matches_the_reading_field_by_field(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    wrong = {f"{k[0]}/{k[1]}/0x{k[2]:x}": d for k, w in expected.items() if k in ran.sessions
             if (d := differences(ran.sessions[k], w))}
    assert wrong == {}


def test_every_flag_comes_with_a_reason(ran: Ran) -> None:
    for row in ran.sessions.values():
        assert len(row["reasons"]) == len(row["flags"]), row["session"]
        assert all(isinstance(r, str) and r.strip() for r in row["reasons"]), row["session"]


def test_a_linked_uac_pair_is_one_privileged_session_named_by_its_first_logon_id(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    alice = find(expected, user="alice")
    logons = [e for e in EVENTS if e.event_id == 4624 and e.event_data["TargetUserName"] == "alice"]
    assert [alice["logon_id"], alice["linked_logon_id"]] == [luid(e.event_data["TargetLogonId"]) for e in logons]
    got = check(ran, alice)
    assert got["privileged"] is True and "SeDebugPrivilege" in got["sensitive_privileges"]
    assert not any(k[2] == alice["linked_logon_id"] for k in ran.sessions), "the filtered half has a row of its own"


def test_a_linked_pair_session_ends_at_the_later_logoff_of_either_half_and_says_4647(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    alice = find(expected, user="alice")
    assert alice["end_reason"] == "4647"
    check(ran, alice, ("end", "end_reason", "duration_s", "last_seen", "events"))


def test_processes_of_either_half_count_and_one_process_seen_by_sysmon_and_4688_counts_once(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    alice = find(expected, user="alice")
    assert alice["processes"] == 2  # cmd (Sysmon 1 + 4688, filtered half), powershell (Sysmon 1, elevated half)
    check(ran, alice, ("processes",))


def test_explicit_credentials_from_the_filtered_half_flag_the_pair(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    alice = find(expected, user="alice")
    assert "explicit_credentials" in alice["flags"]
    check(ran, alice, ("flags",))


def test_a_linked_logon_id_without_a_4624_of_its_own_still_brings_its_privileges_processes_and_logoff(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    judy = find(expected, user="judy")
    assert judy["linked_logon_id"] is not None and judy["privileged"] is True
    assert judy["end_reason"] == "4634" and judy["processes"] == 1
    check(ran, judy)


def test_the_same_logon_id_on_two_hosts_is_two_sessions_privileged_only_where_the_4672_is(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    ivan, carol = find(expected, user="ivan"), find(expected, user="carol")
    assert ivan["logon_id"] == carol["logon_id"] and ivan["host"] != carol["host"]
    assert (ivan["privileged"], carol["privileged"]) == (True, False)
    check(ran, ivan)
    check(ran, carol)


def test_a_logon_id_reused_after_a_reboot_is_two_sessions(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    dave, backup = find(expected, user="dave"), find(expected, user="svc_backup")
    assert dave["logon_id"] == backup["logon_id"] and dave["host"] == backup["host"]
    assert (dave["boot"], backup["boot"]) == (1, 2)
    assert (dave["privileged"], backup["privileged"]) == (False, True)
    check(ran, dave)
    check(ran, backup)


def test_a_session_without_logoff_ends_at_the_shutdown_of_its_boot(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    dave = find(expected, user="dave")
    shutdown = next(e for e in EVENTS if e.event_id == 4609)
    assert (dave["end_reason"], dave["end"]) == ("shutdown", shutdown.time)
    check(ran, dave, ("end", "end_reason", "duration_s"))


def test_a_session_without_logoff_ends_at_a_reboot_that_logged_no_shutdown(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    kevin = find(expected, user="kevin")
    first_of_next_boot = next(e for e in EVENTS if e.computer.startswith("WS15") and e.event_id == 6009)
    assert (kevin["end_reason"], kevin["end"]) == ("reboot", first_of_next_boot.time)
    check(ran, kevin)


def test_the_markers_of_one_boot_start_one_epoch(ran: Ran) -> None:
    judy = next(r for r in ran.sessions.values() if r["user"] == "judy")
    assert judy["boot"] == 2  # 6009, 6005 and 4608 of the second boot: one epoch, not three


def test_system_gets_one_session_per_boot_counting_its_service_logons(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    system = {k: w for k, w in expected.items() if k[2] == 0x3E7}
    assert sorted((k[0][:4], k[1], w["logons"], w["end_reason"]) for k, w in system.items()) == [
        ("FS01", 1, 1, "open"), ("WS12", 1, 1, "shutdown"), ("WS12", 2, 2, "open")]
    for w in system.values():
        check(ran, w)


def test_a_4672_written_before_its_4624_still_makes_the_session_privileged(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    frank = find(expected, user="frank")
    special = next(e for e in EVENTS if e.event_id == 4672 and e.event_data["SubjectUserName"] == "frank")
    logon = next(e for e in EVENTS if e.event_id == 4624 and e.event_data["TargetUserName"] == "frank")
    assert special.record_id < logon.record_id and special.time.second == logon.time.second
    assert frank["privileged"] is True
    check(ran, frank)


def test_a_network_logon_without_logoff_is_open_at_end_of_log_not_zero_length(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    grace = find(expected, user="grace")
    assert (grace["end"], grace["end_reason"], grace["duration_s"]) == (None, "open", None)
    assert grace["src_ip"] == "10.0.1.112"  # written ::ffff:10.0.1.112
    check(ran, grace)


def test_an_rdp_session_gathers_its_disconnect_reconnect_and_the_rdp_events_of_its_account(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    bob = find(expected, user="bob")
    assert (bob["logon_type"], bob["end_reason"], bob["events"]) == (10, "4647", 13)
    got = check(ran, bob)
    assert sorted(got["rdp_clients"]) == [story.RDP_CLIENT_IP, story.RDP_RECONNECT_IP]


def test_an_rdp_session_disconnected_and_reconnected_once_counts_one_of_each(ran: Ran,
        expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    # One disconnect is written twice (Security 4779 and LocalSessionManager 24), one reconnect too
    # (4778 and LSM 25): a responder reading "reconnects: 2" looks for a second one.
    got = check(ran, find(expected, user="bob"), ())
    assert (got["disconnects"], got["reconnects"]) == (1, 1)


def test_ntlm_network_logons_are_flagged_and_the_pass_the_hash_shape_too(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    jdoe, oscar = find(expected, user="adm_jdoe"), find(expected, user="oscar")
    assert jdoe["flags"] == ["ntlm_network", "pass_the_hash"]
    assert oscar["flags"] == ["ntlm_network"]  # NTLMv2 with a 128-bit session key: no pass-the-hash shape
    check(ran, jdoe)
    check(ran, oscar)


def test_an_anonymous_ntlm_logon_is_not_flagged(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    anonymous = find(expected, user="ANONYMOUS LOGON")
    assert anonymous["flags"] == []
    check(ran, anonymous)


def test_a_cleartext_logon_is_flagged(ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    web = find(expected, user="svc_web")
    assert web["flags"] == ["cleartext"]
    check(ran, web)


def test_an_account_logging_on_from_a_source_it_never_used_is_flagged_once(
        ran: Ran, expected: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    heidi = sorted((w for w in expected.values() if w["user"] == "heidi"), key=lambda w: w["start"])
    assert [w["flags"] for w in heidi] == [[], ["new_source"], []]
    for w in heidi:
        check(ran, w)


# -- failed logons ----------------------------------------------------------------------------------
def groups_of(ran: Ran) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(g["account"], g["source"]): g for g in ran.logons if g["kind"] == "group"}


def verdicts_of(ran: Ran) -> list[dict[str, Any]]:
    return [v for v in ran.logons if v["kind"] == "verdict"]


def test_verdict_rows_come_before_group_rows(ran: Ran) -> None:
    kinds = [r["kind"] for r in ran.logons]
    assert kinds == sorted(kinds, key=lambda k: k != "verdict") and set(kinds) == {"verdict", "group"}


def test_failed_logons_are_grouped_by_account_and_source(ran: Ran) -> None:
    want = expected_groups(EVENTS)
    got = groups_of(ran)
    assert sorted(got, key=str) == sorted(want, key=str)
    for key, w in want.items():
        g = got[key]
        statuses = sorted({(s["status"], s["substatus"]) for s in g["statuses"]}, key=str)
        assert (g["count"], when(g["first"]), when(g["last"]), sorted(g["hosts"]), sorted(g["event_ids"]),
                statuses) == (w["count"], naive(w["first"]), naive(w["last"]), w["hosts"], w["event_ids"],
                              w["statuses"]), key
        assert all(s["meaning"] for s in g["statuses"]), key


def test_exactly_the_expected_verdicts_are_given_and_no_near_miss(ran: Ran) -> None:
    want = sorted((v.verdict, v.accounts, v.host) for v in expected_verdicts(EVENTS))
    got = sorted((v["verdict"], tuple(sorted(v["accounts"])) if v.get("accounts") else (v["account"],), v["host"])
                 for v in verdicts_of(ran))
    assert got == want
    assert want == sorted([
        ("brute_force", ("oscar",), "FS01.corp.local"),
        ("lockout", ("quentin",), "DC01.corp.local"),
        ("password_spray", ("peggy", "trent", "victor"), "DC01.corp.local"),
        ("success_after_failures", ("oscar",), "FS01.corp.local"),
    ])


def one_verdict(ran: Ran, name: str) -> dict[str, Any]:
    rows = [v for v in verdicts_of(ran) if v["verdict"] == name]
    assert len(rows) == 1, rows
    return rows[0]


def expected_verdict(name: str) -> Verdict:
    return next(v for v in expected_verdicts(EVENTS) if v.verdict == name)


def test_a_password_spray_at_the_threshold_names_its_source_accounts_and_failures(ran: Ran) -> None:
    got, want = one_verdict(ran, "password_spray"), expected_verdict("password_spray")
    assert (got["source"], sorted(got["accounts"]), got["count"]) == (story.SPRAYER_IP, list(want.accounts), 3)
    assert (when(got["first"]), when(got["last"])) == (naive(want.supporting[0].time),
                                                       naive(want.supporting[-1].time))
    assert ran.events_of(got["eids"]) == {ev_key(e) for e in want.supporting}


def test_a_brute_force_at_the_threshold_names_its_account_host_and_failures(ran: Ran) -> None:
    got, want = one_verdict(ran, "brute_force"), expected_verdict("brute_force")
    assert (got["account"], got["host"], got["count"]) == ("oscar", "FS01.corp.local", 5)
    assert got["source"] in (None, story.BRUTE_IP)
    assert (when(got["first"]), when(got["last"])) == (naive(want.supporting[0].time),
                                                       naive(want.supporting[-1].time))
    assert ran.events_of(got["eids"]) == {ev_key(e) for e in want.supporting}


def test_a_success_after_failures_carries_the_session_it_opened(ran: Ran) -> None:
    got, want = one_verdict(ran, "success_after_failures"), expected_verdict("success_after_failures")
    logon = want.supporting[-1]
    session = got["session"]
    key = ((session["host"], session["boot"], session["logon_id"]) if isinstance(session, dict)
           else (session.rsplit("/", 2)[0], int(session.rsplit("/", 2)[1]), int(session.rsplit("/", 2)[2], 16)))
    assert key == (logon.computer, 1, luid(logon.event_data["TargetLogonId"]))
    assert key in ran.sessions
    assert (got["account"], got["source"], got["host"]) == ("oscar", story.BRUTE_IP, "FS01.corp.local")
    assert got["count"] == len(want.supporting) - 1 == 5  # the failures before the logon
    failed = {ev_key(e) for e in want.supporting[:-1]}
    assert failed <= ran.events_of(got["eids"]) <= failed | {ev_key(logon)}


def test_a_lockout_is_a_verdict_of_its_own(ran: Ran) -> None:
    got, want = one_verdict(ran, "lockout"), expected_verdict("lockout")
    (lockout,) = want.supporting
    assert (got["account"], got["host"], got["count"]) == ("quentin", "DC01.corp.local", 1)
    assert when(got["first"]) == when(got["last"]) == naive(lockout.time)
    assert ran.events_of(got["eids"]) == {ev_key(lockout)}


# -- one shape, or several ----------------------------------------------------------------------------
# Shapes that carry the time at a coarser precision: NXLog's EventTime has whole seconds, winlogbeat 6
# milliseconds. Their sessions are the same, at that precision.
PRECISION = {"nxlog": timedelta(seconds=1), "winlogbeat6": timedelta(milliseconds=1)}


def floor(t: datetime | None, unit: timedelta) -> datetime | None:
    if t is None:
        return None
    us = unit // timedelta(microseconds=1)
    return t.replace(microsecond=t.microsecond // us * us) if us < 1_000_000 else t.replace(microsecond=0)


TIMES = ("start", "end", "last_seen")


def at_precision(row: dict[str, Any], unit: timedelta | None = None) -> dict[str, Any]:
    """A session row with its times read (and floored to `unit`, as a shape of that precision
    stores them, the duration with them); `first_eid` (an order of storage) left out."""
    out = {c: (when(v) if c in TIMES else v) for c, v in row.items() if c != "first_eid"}
    if unit is not None:
        out.update({c: floor(out[c], unit) for c in TIMES})
        out["duration_s"] = None if out["end"] is None else (out["end"] - out["start"]).total_seconds()
    return out


def same_rows(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name in sorted(set(got) | set(want)):
        g, w = got.get(name), want.get(name)
        if name == "duration_s" and g is not None and w is not None and abs(g - w) < 1e-5:
            continue
        if g != w:
            out[name] = (g, w)
    return out


def failed_logons(r: Ran, unit: timedelta | None = None) -> list[dict[str, Any]]:
    """`logons --failed` rows with their events named by (host, channel, record_id), times floored."""
    rows = []
    for row in r.logons:
        out = {c: v for c, v in row.items() if c != "eids"}
        out["events"] = sorted(r.events_of(row["eids"] or []))
        for c in ("first", "last"):
            out[c] = floor(when(row[c]), unit) if unit else when(row[c])
        rows.append(out)
    return rows


@pytest.mark.parametrize("shape", story.shape_names())
def test_one_shape_alone_gives_the_sessions_and_failed_logons_of_two_shapes_together(
        shape: str, files: dict[str, Path], ran: Ran, tmp_path: Path) -> None:
    alone = run_case(tmp_path, [files[shape]])
    unit = PRECISION.get(shape)
    assert alone.stored == len(EVENTS)
    assert sorted(alone.sessions) == sorted(ran.sessions)
    wrong = {f"{k[0]}/{k[1]}/0x{k[2]:x}": d for k, row in ran.sessions.items()
             if (d := same_rows(at_precision(alone.sessions[k]), at_precision(row, unit)))}
    assert wrong == {}
    assert failed_logons(alone) == failed_logons(ran, unit)


def test_one_shape_alone_and_two_shapes_together_give_the_same_sessions(
        files: dict[str, Path], ran: Ran, tmp_path: Path) -> None:
    def comparable(r: Ran) -> dict[tuple[str, int, int], dict[str, Any]]:
        return {k: {c: v for c, v in row.items() if c != "first_eid"} for k, row in r.sessions.items()}

    evtx = run_case(tmp_path / "evtx", [files["evtx_jsonl"]])
    beat = run_case(tmp_path / "beat", [files["winlogbeat_module"]])
    assert comparable(evtx) == comparable(ran) == comparable(beat)
    assert [v for v in evtx.logons if v["kind"] == "group"] == [v for v in ran.logons if v["kind"] == "group"]
