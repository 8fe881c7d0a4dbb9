"""`ashiato tree` against an independent reading of generated process events.

The events come from `fixtures.lineage`; the tree the command should print is worked out here, in
plain Python over those canonical events, by the rules of the lineage contract and domain.md §3:
one node per Sysmon 1 (host, ProcessGuid) and per 4688 (host, boot, PID, time), a Sysmon 1 and a
4688 of the same process merged; edges by ParentProcessGuid, else by PID and time within one boot
(the latest process with that PID started before the child and not exited by then), else none.
Nothing here reads the engine's SQL.

A process is identified by its Sysmon ProcessGuid when it has one, else by (host, PID, start).
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fixtures import lineage as story
from fixtures.incident import SECURITY, SYSMON, SYSTEM, CanonicalEvent
from tui.cli import main

SEED = 7
EVENTS = story.events(SEED)

SAME_BOOT = timedelta(minutes=10)  # boot markers this close are one boot (engine/boots.py)
SAME_PROCESS = timedelta(seconds=2)  # a Sysmon 1 and a 4688 this close are one process
TIMEOUT = 120  # seconds a command may take before it counts as hung (a cycle followed forever)

Identity = str | tuple[str, int, datetime]


# -- reading the events ----------------------------------------------------------------------------
def is_boot_marker(ev: CanonicalEvent) -> bool:
    return ((ev.channel == SECURITY and ev.event_id == 4608)
            or (ev.channel == SYSTEM and ev.event_id in (6005, 6009) and ev.provider.lower().endswith("eventlog")))


def guid(value: str | None) -> str | None:
    """A GUID as the case stores it: lower case, no braces."""
    if value is None or not value.strip("{} -"):
        return None
    return value.strip().strip("{}").lower()


def sysmon_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


def luid(value: str | None) -> int | None:
    if value is None or value.strip() in ("", "-"):
        return None
    return int(value, 16) or None


def dash(value: str | None) -> str | None:
    return None if value is None or value.strip() in ("", "-") else value


def naive(t: datetime | None) -> datetime | None:
    return None if t is None else t.astimezone(UTC).replace(tzinfo=None)


def timeline(events: Iterable[CanonicalEvent]) -> list[CanonicalEvent]:
    return sorted(events, key=lambda e: (e.time, e.computer, e.channel, e.record_id))


def boot_epochs(events: list[CanonicalEvent]) -> dict[int, int]:
    """id(event) -> boot epoch, per host: a new epoch at a boot marker, unless it follows another
    marker of that host within ten minutes and its kind is not in the epoch yet (one boot writes
    4608 and 6005 once each); what a host logged before its first marker is epoch 0. The story logs
    no shutdown."""
    out: dict[int, int] = {}
    state: dict[str, tuple[int, datetime | None, set[int]]] = {}
    for ev in events:
        epoch, last, kinds = state.get(ev.computer, (0, None, set()))
        if is_boot_marker(ev):
            if last is not None and ev.time - last < SAME_BOOT and ev.event_id not in kinds:
                kinds = kinds | {ev.event_id}
            else:
                epoch, kinds = epoch + 1, {ev.event_id}
            last = ev.time
        state[ev.computer] = (epoch, last, kinds)
        out[id(ev)] = epoch
    return out


@dataclass
class Node:
    host: str
    boot: int
    pid: int
    start: datetime
    position: int  # of its first creation event in the timeline
    guid: str | None
    image: str
    command_line: str | None
    user: str | None
    logon_id: int | None
    parent_guid: str | None
    parent_pid: int | None
    parent_image: str | None
    sources: list[str]
    sysmon: CanonicalEvent | None = None
    audit: CanonicalEvent | None = None
    end: datetime | None = None
    end_reason: str = "open"
    parent: Node | None = None
    edge: str = "unresolved"
    children: list[Node] = field(default_factory=list)

    @property
    def identity(self) -> Identity:
        return self.guid if self.guid else (self.host, self.pid, self.start.astimezone(UTC).replace(tzinfo=None))

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    def before(self, other: Node) -> bool:
        """Started before `other` (ties: the earlier event)."""
        return (self.start, self.position) < (other.start, other.position)

    def ancestors(self) -> list[Node]:
        """From the root down to the parent."""
        chain: list[Node] = []
        node = self.parent
        while node is not None and node not in chain:
            chain.append(node)
            node = node.parent
        return chain[::-1]

    def subtree(self) -> list[Node]:
        out = [self]
        for child in self.children:
            out += child.subtree()
        return out


def from_sysmon(ev: CanonicalEvent, boot: int, position: int) -> Node:
    d = ev.event_data
    return Node(host=ev.computer, boot=boot, pid=int(d["ProcessId"]), start=sysmon_time(d["UtcTime"]),
                position=position, guid=guid(d["ProcessGuid"]), image=d["Image"],
                command_line=dash(d.get("CommandLine")), user=dash(d.get("User")), logon_id=luid(d.get("LogonId")),
                parent_guid=guid(d.get("ParentProcessGuid")), parent_pid=int(d["ParentProcessId"]),
                parent_image=dash(d.get("ParentImage")), sources=["sysmon1"], sysmon=ev)


def account_of_4688(d: dict[str, str]) -> tuple[str | None, int | None]:
    """The new process's account: Target* when Windows wrote one (another token), else the creator's."""
    if dash(d.get("TargetUserName")) and d.get("TargetUserSid") != "S-1-0-0":
        return f"{d['TargetDomainName']}\\{d['TargetUserName']}", luid(d.get("TargetLogonId"))
    return f"{d['SubjectDomainName']}\\{d['SubjectUserName']}", luid(d.get("SubjectLogonId"))


def from_audit(ev: CanonicalEvent, boot: int, position: int) -> Node:
    d = ev.event_data
    user, logon_id = account_of_4688(d)
    return Node(host=ev.computer, boot=boot, pid=int(d["NewProcessId"], 16), start=ev.time, position=position,
                guid=None, image=d["NewProcessName"], command_line=dash(d.get("CommandLine")), user=user,
                logon_id=logon_id, parent_guid=None, parent_pid=int(d["ProcessId"], 16),
                parent_image=dash(d.get("ParentProcessName")), sources=["4688"], audit=ev)


def expected_tree(events: Iterable[CanonicalEvent]) -> list[Node]:
    """Every process node with its parent and edge, in order of start."""
    ordered = timeline(events)
    boot = boot_epochs(ordered)
    nodes: list[Node] = []
    by_guid: dict[tuple[str, str], Node] = {}
    for position, ev in enumerate(ordered):
        if ev.channel == SYSMON and ev.event_id == 1:
            node = from_sysmon(ev, boot[id(ev)], position)
            assert node.guid is not None
            if (node.host, node.guid) not in by_guid:
                by_guid[(node.host, node.guid)] = node
                nodes.append(node)
    for position, ev in enumerate(ordered):
        if ev.channel == SECURITY and ev.event_id == 4688:
            audit = from_audit(ev, boot[id(ev)], position)
            twin = next((n for n in nodes if n.audit is None and n.sysmon is not None and n.host == audit.host
                         and n.pid == audit.pid and n.image.lower() == audit.image.lower()
                         and abs(n.start - audit.start) <= SAME_PROCESS), None)
            if twin is not None:
                twin.audit = ev
                twin.sources = ["sysmon1", "4688"]
            else:
                nodes.append(audit)
    nodes.sort(key=lambda n: (n.start, n.position))
    # A process still running when its host booted again ended with that boot (its first marker).
    next_boot: dict[tuple[str, int], datetime] = {}
    for ev in ordered:
        next_boot.setdefault((ev.computer, boot[id(ev)] - 1), ev.time)
    for node in nodes:
        node.end = next_boot.get((node.host, node.boot))
        node.end_reason = "open" if node.end is None else "reboot"
    # Exits: a 4689 belongs to the latest start of its PID on that host and boot before it.
    for position, ev in enumerate(ordered):
        if ev.channel == SECURITY and ev.event_id == 4689:
            pid = int(ev.event_data["ProcessId"], 16)
            earlier = [n for n in nodes if n.host == ev.computer and n.boot == boot[id(ev)] and n.pid == pid
                       and (n.start, n.position) < (ev.time, position)]
            if earlier:
                exited = max(earlier, key=lambda n: (n.start, n.position))
                exited.end, exited.end_reason = ev.time, "exit"
    for child in nodes:
        named = by_guid.get((child.host, child.parent_guid)) if child.parent_guid else None
        if named is not None and named is not child and named.before(child):
            child.parent, child.edge = named, "merged" if len(child.sources) == 2 else "guid"
        elif named is None and child.parent_pid is not None:
            alive = [n for n in nodes if n is not child and n.host == child.host and n.boot == child.boot
                     and n.pid == child.parent_pid and n.before(child)
                     and (n.end is None or n.end >= child.start)]
            if alive:
                child.parent, child.edge = max(alive, key=lambda n: (n.start, n.position)), "pid+time"
        if child.parent is not None:
            child.parent.children.append(child)
    return nodes


def roots_first(nodes: list[Node]) -> list[Node]:
    return [n for root in nodes if root.parent is None for n in root.subtree()]


EXPECTED = expected_tree(EVENTS)
BY_IDENTITY = {n.identity: n for n in EXPECTED}


def one(**where: Any) -> Node:
    """The expected node whose attributes match (`image` by file name, case-insensitively)."""
    def matches(n: Node) -> bool:
        for name, value in where.items():
            if name == "image":
                if n.image.rsplit("\\", 1)[-1].lower() != value.lower():
                    return False
            elif name == "host":
                if not n.host.lower().startswith(value.lower()):
                    return False
            elif getattr(n, name) != value:
                return False
        return True
    found = [n for n in EXPECTED if matches(n)]
    assert len(found) == 1, (where, [(n.host, n.pid, n.image) for n in found])
    return found[0]


# -- running the commands ----------------------------------------------------------------------------
def cli(*argv: str, timeout: float = TIMEOUT) -> str:
    """`ashiato ARGV` in this process, its standard output; a command still running after
    `timeout` seconds fails the test instead of hanging the suite."""
    result: dict[str, Any] = {}

    def run() -> None:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                result["code"] = main(list(argv))
        except BaseException as exc:  # handed to the test's thread below
            result["error"] = exc
        result["out"] = out.getvalue()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        pytest.fail(f"`ashiato {' '.join(argv)}` was still running after {timeout} s")
    if "error" in result:
        raise result["error"]
    assert result["code"] == 0, argv
    return str(result["out"])


def cli_jsonl(*argv: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cli(*argv).splitlines() if line.strip()]


def when(value: str | None) -> datetime | None:
    if value is None:
        return None
    t = datetime.fromisoformat(value)
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def floor(t: datetime | None, unit: timedelta | None) -> datetime | None:
    if t is None or unit is None:
        return t
    us = unit // timedelta(microseconds=1)
    return t.replace(microsecond=t.microsecond // us * us) if us < 1_000_000 else t.replace(microsecond=0)


def identity_of(row: dict[str, Any], unit: timedelta | None = None) -> Identity:
    if row.get("process_guid"):
        return str(row["process_guid"])
    start = floor(when(row["start"]), unit)
    assert start is not None, row
    return (row["host"], int(row["pid"]), start)


@dataclass
class Ran:
    case: Path
    rows: list[dict[str, Any]]
    eids: dict[tuple[str, str, int], int]  # (host, channel, record_id) -> eid
    stored: int

    @property
    def by_identity(self) -> dict[Identity, dict[str, Any]]:
        return {identity_of(r): r for r in self.rows}

    @property
    def by_key(self) -> dict[str, dict[str, Any]]:
        return {r["key"]: r for r in self.rows}

    def row(self, node: Node) -> dict[str, Any]:
        found = self.by_identity.get(node.identity)
        assert found is not None, f"no row for {node.identity} ({node.image}); rows: {sorted(map(str, self.by_identity))}"
        return found

    def parent_identity(self, row: dict[str, Any]) -> Identity | None:
        if row.get("parent_key") is None:
            return None
        parent = self.by_key.get(row["parent_key"])
        assert parent is not None, f"parent_key {row['parent_key']} of {row['key']} names no row"
        return identity_of(parent)

    def eid(self, ev: CanonicalEvent) -> int:
        return self.eids[(ev.computer, ev.channel, ev.record_id)]


def run_case(tmp: Path, paths: list[Path]) -> Ran:
    tmp.mkdir(parents=True, exist_ok=True)
    case = tmp / "case.duckdb"
    cli("ingest", str(case), *map(str, paths), "--quiet")
    rows = cli_jsonl("tree", str(case), "--format", "jsonl")
    stored = cli_jsonl("sql", str(case), "SELECT eid, host, channel, record_id FROM events", "--format", "jsonl")
    return Ran(case, rows, {(r["host"], r["channel"], r["record_id"]): r["eid"] for r in stored}, len(stored))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every shape of the story, one file each, in one directory."""
    return story.write(tmp_path_factory.mktemp("lineage-shapes"), SEED, evs=EVENTS)


@pytest.fixture(scope="module")
def ran(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The fixture directory (every shape of the same events) ingested into one case."""
    (directory,) = {path.parent for path in files.values()}
    return run_case(tmp_path_factory.mktemp("lineage-case"), [directory])


def edge_of(ran: Ran, node: Node) -> tuple[Identity | None, str]:
    row = ran.row(node)
    return ran.parent_identity(row), row["edge"]


def expected_edge(node: Node) -> tuple[Identity | None, str]:
    return (node.parent.identity if node.parent else None), node.edge


def describe(node: Node) -> str:
    return f"{node.host}/{node.boot}/{node.pid:#x} {node.image.rsplit(chr(92), 1)[-1]} at {node.start:%H:%M:%S.%f}"


# -- the story itself --------------------------------------------------------------------------------
def test_the_story_is_a_pure_function_of_the_seed() -> None:
    assert story.events(SEED) == EVENTS
    other = story.events(SEED + 1)
    assert [(e.computer, e.channel, e.event_id) for e in other] == [(e.computer, e.channel, e.event_id)
                                                                     for e in EVENTS]
    assert expected_tree(other) and [n.edge for n in expected_tree(other)] == [n.edge for n in EXPECTED]


def test_the_story_writes_pids_and_guids_as_windows_does() -> None:
    for ev in EVENTS:
        d = ev.event_data
        if ev.channel == SECURITY and ev.event_id in (4688, 4689):
            for name in ("NewProcessId", "ProcessId"):
                if name in d:
                    assert d[name].startswith("0x") and d[name] == d[name].lower(), (ev.event_id, name, d[name])
        if ev.channel == SYSMON:
            for name in ("ProcessId", "ParentProcessId", "SourceProcessId", "TargetProcessId"):
                if name in d:
                    assert d[name].isdigit(), (ev.event_id, name, d[name])
            for name in ("ProcessGuid", "ParentProcessGuid", "SourceProcessGUID", "TargetProcessGUID"):
                if name in d:
                    assert d[name].startswith("{") and d[name] == d[name].upper(), (ev.event_id, name, d[name])
    assert {f"{int(e.event_data['NewProcessId'], 16):#x}" for e in EVENTS if e.event_id == 4688} >= {"0x1092"}


def test_every_shape_of_the_same_events_is_stored_once(ran: Ran, files: dict[str, Path]) -> None:
    assert len(files) == len(story.shape_names())
    assert ran.stored == len(EVENTS)


# -- the whole forest ----------------------------------------------------------------------------------
def test_the_tree_has_one_row_per_process_and_every_edge_is_the_expected_one(ran: Ran) -> None:
    assert len(ran.rows) == len(ran.by_identity), "two rows for one process"
    assert sorted(map(str, ran.by_identity)) == sorted(map(str, BY_IDENTITY))
    wrong = {describe(n): {"got": edge_of(ran, n), "expected": expected_edge(n)}
             for n in EXPECTED if edge_of(ran, n) != expected_edge(n)}
    assert wrong == {}


def test_every_edge_kind_of_the_contract_occurs_in_the_story() -> None:
    assert {n.edge for n in EXPECTED} == {"guid", "merged", "pid+time", "unresolved"}


COMPARED = ("host", "boot", "pid", "process_guid", "command_line", "sources", "parent_guid", "parent_pid",
            "parent_image", "children")  # depth: see the tree-order test


def expected_fields(node: Node) -> dict[str, Any]:
    """What the row says of a node: as recorded; a 4688 records no parent GUID, so a 4688-only child
    linked by PID and time to a Sysmon process gets its parent's."""
    parent_guid = node.parent_guid or (node.parent.guid if node.parent else None)
    return {"host": node.host, "boot": node.boot, "pid": node.pid, "process_guid": node.guid,
            "command_line": node.command_line, "sources": node.sources, "parent_guid": parent_guid,
            "parent_pid": node.parent_pid, "parent_image": node.parent_image, "children": len(node.children)}


def test_every_node_carries_what_its_creation_events_recorded(ran: Ran) -> None:
    wrong: dict[str, dict[str, Any]] = {}
    for node in EXPECTED:
        row = ran.row(node)
        want = expected_fields(node)
        got = {name: (sorted(row.get(name) or []) if name == "sources" else row.get(name)) for name in COMPARED}
        want["sources"] = sorted(want["sources"])
        diff = {name: (got[name], want[name]) for name in COMPARED if got[name] != want[name]}
        # The image as either source spelled it (a merged node has two spellings of one path).
        spellings = {e.event_data.get("Image") or e.event_data.get("NewProcessName")
                     for e in (node.sysmon, node.audit) if e is not None}
        if row.get("image") not in spellings:
            diff["image"] = (row.get("image"), sorted(spellings))
        starts = {naive(node.start)} | ({naive(node.audit.time)} if node.audit else set())
        if when(row.get("start")) not in starts:
            diff["start"] = (row.get("start"), sorted(map(str, starts)))
        if (when(row.get("end")), row.get("end_reason")) != (naive(node.end), node.end_reason):
            diff["end"] = ((row.get("end"), row.get("end_reason")), (naive(node.end), node.end_reason))
        if diff:
            wrong[describe(node)] = diff
    assert wrong == {}


def test_the_user_and_logon_id_are_those_of_the_new_process(ran: Ran) -> None:
    wrong = {describe(n): {"got": (ran.row(n).get("user"), ran.row(n).get("logon_id")),
                           "expected": (n.user, n.logon_id)}
             for n in EXPECTED if (ran.row(n).get("user"), ran.row(n).get("logon_id")) != (n.user, n.logon_id)}
    assert wrong == {}


def test_a_4688_only_node_is_keyed_by_host_boot_pid_and_its_event_and_a_sysmon_node_by_its_guid(ran: Ran) -> None:
    for node in EXPECTED:
        row = ran.row(node)
        if node.guid:
            assert row["key"] == node.guid, describe(node)
        else:
            assert node.audit is not None
            assert row["key"] == f"{node.host}/{node.boot}/0x{node.pid:x}/{ran.eid(node.audit)}", describe(node)


def test_a_resolved_node_names_its_parent_by_key_and_start_and_an_orphan_names_none(ran: Ran) -> None:
    for node in EXPECTED:
        row = ran.row(node)
        if node.parent is None:
            assert row["parent_key"] is None, describe(node)
            continue
        parent = ran.row(node.parent)
        assert row["parent_key"] == parent["key"], describe(node)
        assert when(row["parent_start"]) == when(parent["start"]), describe(node)


def test_the_jsonl_forest_comes_in_tree_order_with_each_nodes_depth(ran: Ran) -> None:
    """The contract: `depth` (in text/jsonl tree order output): each root, then depth first what it
    started, so the nearest earlier row one level up is a row's parent."""
    assert [(r["key"], r["depth"]) for r in ran.rows if r["depth"] != BY_IDENTITY[identity_of(r)].depth] == []
    seen: list[dict[str, Any]] = []
    for row in ran.rows:
        if row["parent_key"] is None:
            assert row["depth"] == 0, row["key"]
        else:
            above = next(r for r in reversed(seen) if r["depth"] == row["depth"] - 1)
            assert above["key"] == row["parent_key"], row["key"]
        seen.append(row)


# -- the scenarios ------------------------------------------------------------------------------------
def test_a_pid_reused_on_one_host_gives_each_child_the_process_that_had_the_pid_then(ran: Ran) -> None:
    first, second = one(host="FS01", pid=story.REUSED_PID, image="cmd.exe"), one(
        host="FS01", pid=story.REUSED_PID, image="powershell.exe")
    robocopy, tzutil = one(host="FS01", image="robocopy.exe"), one(host="FS01", image="tzutil.exe")
    assert second.start - first.start >= timedelta(minutes=9)
    assert (robocopy.parent, robocopy.edge, tzutil.parent, tzutil.edge) == (first, "pid+time", second, "pid+time")
    assert robocopy.parent_pid == tzutil.parent_pid == 0x1092
    assert edge_of(ran, robocopy) == (first.identity, "pid+time")
    assert edge_of(ran, tzutil) == (second.identity, "pid+time")


def test_the_same_pid_on_two_hosts_gives_each_child_its_own_hosts_process(ran: Ran) -> None:
    agent, collector = one(host="SRV03", pid=story.REUSED_PID), one(host="SRV03", image="collector.exe")
    fs01_latest = one(host="FS01", pid=story.REUSED_PID, image="powershell.exe")
    # FS01's 4242 started after SRV03's and before the collector: only the host tells them apart.
    assert agent.start < fs01_latest.start < collector.start
    assert (collector.parent, collector.edge) == (agent, "pid+time")
    assert edge_of(ran, collector) == (agent.identity, "pid+time")
    assert ran.row(collector)["host"] == ran.row(agent)["host"] != ran.row(fs01_latest)["host"]


def test_a_child_after_a_reboot_naming_a_pid_of_the_previous_boot_is_an_orphan_root(ran: Ran) -> None:
    worker, cleanup = one(host="SRV03", pid=story.REBOOT_PID), one(host="SRV03", image="cleanmgr.exe")
    assert (worker.boot, cleanup.boot) == (1, 2) and cleanup.parent_pid == story.REBOOT_PID
    assert (cleanup.parent, cleanup.edge) == (None, "unresolved")
    row = ran.row(cleanup)
    assert edge_of(ran, cleanup) == (None, "unresolved")
    assert (row["boot"], row["parent_pid"], row["parent_image"]) == (2, story.REBOOT_PID, worker.image)
    assert ran.row(worker)["boot"] == 1


def test_a_child_started_after_its_parent_exited_is_unresolved_and_one_after_the_pid_reuse_attaches_to_the_new_process(
        ran: Ran) -> None:
    msiexec = one(host="SRV03", pid=story.EXITED_PID, image="msiexec.exe")
    medic = one(host="SRV03", pid=story.EXITED_PID, image="svchost.exe")
    action, late = one(host="SRV03", image="MsiExec.exe", parent_pid=story.EXITED_PID), one(
        host="SRV03", image="cmd.exe")
    medic_child = one(host="SRV03", image="WaaSMedicAgent.exe")
    assert msiexec.end is not None and msiexec.end < late.start < medic.start < medic_child.start
    assert (action.parent, action.edge) == (msiexec, "pid+time")  # started before the exit
    assert (late.parent, late.edge) == (None, "unresolved")
    assert (medic_child.parent, medic_child.edge) == (medic, "pid+time")
    assert edge_of(ran, action) == (msiexec.identity, "pid+time")
    assert edge_of(ran, late) == (None, "unresolved")
    assert edge_of(ran, medic_child) == (medic.identity, "pid+time")
    assert (when(ran.row(msiexec)["end"]), ran.row(msiexec)["end_reason"]) == (naive(msiexec.end), "exit")
    assert (ran.row(late)["parent_pid"], ran.row(late)["parent_image"]) == (story.EXITED_PID, msiexec.image)


def test_one_process_logged_by_sysmon_and_4688_is_one_merged_node(ran: Ran) -> None:
    cmd = one(host="WS07", image="cmd.exe")
    assert cmd.sysmon is not None and cmd.audit is not None
    assert cmd.audit.event_data["NewProcessName"] != cmd.sysmon.event_data["Image"]  # another case
    assert timedelta(milliseconds=700) < cmd.audit.time - cmd.start < timedelta(milliseconds=900)
    rows = [r for r in ran.rows if r["host"] == cmd.host and r["pid"] == cmd.pid]
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["process_guid"], sorted(row["sources"]), row["edge"]) == (cmd.guid, ["4688", "sysmon1"], "merged")
    assert ran.parent_identity(row) == one(image="explorer.exe").identity
    # Its conhost, seen by 4688 only, finds it by PID and time.
    conhost = one(host="WS07", image="conhost.exe")
    assert (conhost.parent, conhost.edge) == (cmd, "pid+time")
    assert edge_of(ran, conhost) == (cmd.guid, "pid+time")


def test_a_sysmon_child_whose_parent_guid_is_in_no_event_attaches_by_pid_and_time(ran: Ran) -> None:
    wmi, child = one(host="WS07", image="WmiPrvSE.exe"), one(host="WS07", image="HOSTNAME.EXE")
    assert wmi.sources == ["4688"] and child.sources == ["sysmon1"] and child.parent_guid is not None
    assert all(guid(e.event_data.get("ProcessGuid")) != child.parent_guid for e in EVENTS)
    assert (child.parent, child.edge) == (wmi, "pid+time")
    assert edge_of(ran, child) == (wmi.identity, "pid+time")
    assert ran.row(child)["parent_guid"] == child.parent_guid  # as recorded


def values_named(row: dict[str, Any], *words: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if any(w in k.lower() for w in words) and v not in (None, "", [])}


def test_a_merged_node_keeps_the_4688_elevation_and_label_and_the_sysmon_hashes_and_integrity(ran: Ran) -> None:
    """domain.md §3: merge them into one node; keep 4688-only attributes (TokenElevationType,
    MandatoryLabel). The names of these keys are not in the contract: any key naming them will do."""
    cmd = one(host="WS07", image="cmd.exe")
    assert cmd.audit is not None and cmd.sysmon is not None
    row = ran.row(cmd)
    missing = [what for what, words in (("TokenElevationType", ("elevation",)),
                                        ("MandatoryLabel", ("label", "mandatory")),
                                        ("Hashes", ("hash",)), ("IntegrityLevel", ("integrity",)))
               if not values_named(row, *words)]
    assert missing == [], f"the merged row has no {', '.join(missing)}: keys {sorted(row)}"


def test_a_sysmon_chain_by_guid_whose_roots_parent_is_older_than_the_log_is_an_orphan_root(ran: Ran) -> None:
    explorer, cmd = one(image="explorer.exe"), one(host="WS07", image="cmd.exe")
    powershell, rundll = one(host="WS07", image="powershell.exe"), one(image="rundll32.exe")
    assert [n.edge for n in (explorer, cmd, powershell, rundll)] == ["unresolved", "merged", "guid", "guid"]
    assert (powershell.parent, rundll.parent) == (cmd, powershell)
    assert edge_of(ran, powershell) == (cmd.guid, "guid")
    assert edge_of(ran, rundll) == (powershell.guid, "guid")
    row = ran.row(explorer)
    assert explorer.sysmon is not None
    recorded = explorer.sysmon.event_data
    assert (row["edge"], row["parent_key"]) == ("unresolved", None)
    assert (row["parent_pid"], row["parent_image"], row["parent_guid"]) == (
        int(recorded["ParentProcessId"]), recorded["ParentImage"], guid(recorded["ParentProcessGuid"]))
    assert row["boot"] == 0  # WS07's logs begin after its boot


def test_parents_naming_each_other_end_with_both_printed_and_one_unresolved(ran: Ran) -> None:
    agent, updater = one(image="agent.exe"), one(image="updater.exe")
    assert (agent.parent_guid, updater.parent_guid) == (updater.guid, agent.guid)
    assert (agent.edge, updater.edge, updater.parent) == ("unresolved", "guid", agent)
    rows = {r["process_guid"]: r for r in cli_jsonl("tree", str(ran.case), "--host", "WS12", "--format", "jsonl")}
    assert {agent.guid, updater.guid} <= set(rows)
    assert "unresolved" in {rows[agent.guid]["edge"], rows[updater.guid]["edge"]}
    assert edge_of(ran, agent) == (None, "unresolved")
    assert edge_of(ran, updater) == (agent.guid, "guid")
    assert agent.guid is not None and updater.guid is not None
    for key in (agent.guid, updater.guid, "{" + updater.guid.upper() + "}"):
        around = [r["process_guid"] for r in cli_jsonl("tree", str(ran.case), "--process", key, "--format", "jsonl")]
        assert around[:3] == [agent.guid, updater.guid, one(image="curl.exe").guid], key
        assert len(around) == len(set(around)) == 3, key
    text = cli("tree", str(ran.case), "--host", "WS12", "--format", "text")
    assert "agent.exe" in text and "updater.exe" in text


# -- selecting part of the forest -------------------------------------------------------------------------
def test_process_by_guid_in_braces_and_upper_case_prints_its_ancestors_then_its_whole_subtree(ran: Ran) -> None:
    cmd = one(host="WS07", image="cmd.exe")
    assert cmd.guid is not None
    rows = cli_jsonl("tree", str(ran.case), "--process", "{" + cmd.guid.upper() + "}", "--format", "jsonl")
    got = [identity_of(r) for r in rows]
    ancestors = [n.identity for n in cmd.ancestors()]
    assert got[:len(ancestors) + 1] == [*ancestors, cmd.identity]
    assert sorted(map(str, got[len(ancestors):])) == sorted(str(n.identity) for n in cmd.subtree())
    assert [r["depth"] for r in rows] == [BY_IDENTITY[i].depth for i in got]
    assert len(got) == 5  # explorer; cmd, conhost, powershell, rundll32


def test_process_by_node_key_selects_a_4688_only_process_and_its_child(ran: Ran) -> None:
    job = one(host="FS01", pid=story.REUSED_PID, image="powershell.exe")
    key = ran.row(job)["key"]
    rows = cli_jsonl("tree", str(ran.case), "--process", key, "--format", "jsonl")
    assert [identity_of(r) for r in rows] == [job.identity, one(image="tzutil.exe").identity]


def test_process_of_a_leaf_prints_its_ancestors_to_the_root(ran: Ran) -> None:
    rundll = one(image="rundll32.exe")
    rows = cli_jsonl("tree", str(ran.case), "--process", str(rundll.guid), "--format", "jsonl")
    assert [identity_of(r) for r in rows] == [n.identity for n in [*rundll.ancestors(), rundll]]


@pytest.mark.parametrize("host", ["FS01", "SRV03", "WS07", "WS12"])
def test_host_limits_the_forest_to_that_host(ran: Ran, host: str) -> None:
    rows = cli_jsonl("tree", str(ran.case), "--host", host, "--format", "jsonl")
    assert {r["host"] for r in rows} == {f"{host}.corp.local"}
    want = [n for n in EXPECTED if n.host.startswith(host + ".")]
    assert sorted(map(str, (identity_of(r) for r in rows))) == sorted(str(n.identity) for n in want)


# -- text ------------------------------------------------------------------------------------------------------
BOX = set("─│├└┌┐┘┬┴┼╰╭")


def test_text_draws_the_tree_with_box_characters_and_ascii_only_with_ascii(
        ran: Ran, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "80")  # long lines are cut to the width: the cut must be ASCII too
    text = cli("tree", str(ran.case), "--format", "text")
    plain = cli("tree", str(ran.case), "--format", "text", "--ascii")
    assert BOX & set(text), text[:2000]
    assert not BOX & set(plain), plain[:2000]
    assert [line for line in plain.splitlines() if not line.isascii()] == []
    for out in (text, plain):
        for name in ("explorer.exe", "cmd.exe", "powershell.exe", "rundll32.exe", "cleanmgr.exe", "updater.exe"):
            assert name in out.lower(), name
    assert len(text.splitlines()) == len(plain.splitlines())


def line_of(text: str, node: Node) -> str:
    """The text line that draws `node`: its image's file name and its PID."""
    name = node.image.rsplit("\\", 1)[-1].lower()
    found = [line for line in text.splitlines() if f" {name} " in line.lower() and f" {node.pid} " in line]
    assert len(found) == 1, (describe(node), found)
    return found[0].lower()


def test_the_text_tree_says_which_links_are_by_pid_and_time_and_which_processes_are_orphans(
        ran: Ran, monkeypatch: pytest.MonkeyPatch) -> None:
    """domain.md §3: record how each edge was made and show it; a responder must know which links
    are certain. A link by GUID is the certain, unannotated one."""
    monkeypatch.setenv("COLUMNS", "400")
    text = cli("tree", str(ran.case), "--format", "text")
    wrong = {}
    for node in EXPECTED:
        line = line_of(text, node)
        says = {"pid+time": "pid+time" in line, "unresolved": "orphan" in line or "unresolved" in line}
        want = {kind: node.edge == kind for kind in says}
        if says != want:
            wrong[describe(node)] = (node.edge, line)
    assert wrong == {}


# -- marks -------------------------------------------------------------------------------------------------------
def test_the_marks_flag_the_encoded_powershell_and_the_lsass_opener(ran: Ran) -> None:
    powershell, rundll = ran.row(one(host="WS07", image="powershell.exe")), ran.row(one(image="rundll32.exe"))
    assert any("enc" in m.lower() for m in powershell["marks"]), powershell["marks"]
    assert any("lsass" in m.lower() for m in rundll["marks"]), rundll["marks"]
    explorer = ran.row(one(image="explorer.exe"))
    assert explorer["subtree_marks"] >= 2
    assert ran.row(one(image="tzutil.exe"))["subtree_marks"] == 0
    marked = cli_jsonl("tree", str(ran.case), "mark:lsass", "--format", "jsonl")
    assert rundll["key"] in {r["key"] for r in marked}


# -- the events of a process ------------------------------------------------------------------------------------
def events_of(ran: Ran, term: str) -> set[tuple[str, str, int]]:
    rows = cli_jsonl("query", str(ran.case), term, "--limit", "0", "--columns", "host,channel,record_id",
                     "--format", "jsonl")
    return {(r["host"], r["channel"], r["record_id"]) for r in rows}


def ev_key(ev: CanonicalEvent) -> tuple[str, str, int]:
    return (ev.computer, ev.channel, ev.record_id)


def named_by(node: Node) -> list[CanonicalEvent]:
    """The events that name the process: its creation, and by guid, or by PID on its host while it ran."""
    out = [e for e in (node.sysmon, node.audit) if e is not None]
    for ev in EVENTS:
        d = ev.event_data
        if ev.computer != node.host or ev in out:
            continue
        by_guid = ev.channel == SYSMON and ev.event_id != 1 and node.guid in (guid(d.get("ProcessGuid")),
                                                                               guid(d.get("SourceProcessGUID")))
        by_pid = (ev.channel == SECURITY and ev.event_id == 4663 and luid(d.get("ProcessId")) == node.pid
                  and ev.time >= node.start and (node.end is None or ev.time <= node.end))
        if by_guid or by_pid:
            out.append(ev)
    return out


def test_process_term_gives_the_events_of_that_process_by_guid_and_by_pid(ran: Ran) -> None:
    rundll = one(image="rundll32.exe")
    want = named_by(rundll)
    assert sorted((e.channel, e.event_id) for e in want) == sorted([(SECURITY, 4663), (SYSMON, 1), (SYSMON, 10),
                                                                     (SYSMON, 11)])
    assert rundll.guid is not None
    assert events_of(ran, f"process:{{{rundll.guid.upper()}}}") == {ev_key(e) for e in want}


def test_tree_term_gives_the_events_of_the_subtree(ran: Ran) -> None:
    powershell = one(host="WS07", image="powershell.exe")
    want = {ev_key(e) for n in powershell.subtree() for e in named_by(n)}
    outside = {ev_key(e) for n in EXPECTED if n not in powershell.subtree() for e in (n.sysmon, n.audit) if e}
    got = events_of(ran, f"tree:{powershell.guid}")
    assert want <= got
    assert not got & outside


# -- one shape, or all of them -------------------------------------------------------------------------------
# Shapes that carry the time at a coarser precision: NXLog's EventTime has whole seconds, winlogbeat 6
# milliseconds. The 4688 times (a 4688-only process's start, a 4689 end) come at that precision.
PRECISION = {"nxlog": timedelta(seconds=1), "winlogbeat6": timedelta(milliseconds=1)}
SHAPE_COMPARED = ("host", "boot", "pid", "process_guid", "image", "command_line", "user", "logon_id", "sources",
                  "parent_guid", "parent_pid", "parent_image", "edge", "marks", "subtree_marks", "children", "depth")


def comparable(r: Ran, unit: timedelta | None) -> dict[Identity, dict[str, Any]]:
    """The tree by identity, each row's parent by identity, times floored to `unit`."""
    by_key = r.by_key
    out: dict[Identity, dict[str, Any]] = {}
    for row in r.rows:
        parent = by_key.get(row["parent_key"]) if row["parent_key"] else None
        fields = {c: (sorted(row.get(c) or []) if c in ("sources", "marks") else row.get(c)) for c in SHAPE_COMPARED}
        fields.update(parent=identity_of(parent, unit) if parent else None,
                      start=floor(when(row["start"]), unit), end=floor(when(row.get("end")), unit))
        out[identity_of(row, unit)] = fields
    return out


@pytest.mark.parametrize("shape", story.shape_names())
def test_one_shape_alone_gives_the_tree_of_all_shapes_together(shape: str, files: dict[str, Path], ran: Ran,
                                                               tmp_path: Path) -> None:
    alone = run_case(tmp_path, [files[shape]])
    unit = PRECISION.get(shape)
    assert alone.stored == len(EVENTS)
    got, want = comparable(alone, unit), comparable(ran, unit)
    assert sorted(map(str, got)) == sorted(map(str, want))
    wrong = {str(k): {c: (got[k][c], w[c]) for c in w if got[k][c] != w[c]} for k, w in want.items()
             if got[k] != w}
    assert wrong == {}


def test_the_expected_tree_has_the_shape_the_story_tells() -> None:
    roots = [n for n in EXPECTED if n.parent is None]
    by_host: dict[str, int] = defaultdict(int)
    for n in EXPECTED:
        by_host[n.host.split(".")[0]] += 1
    assert dict(by_host) == {"FS01": 4, "SRV03": 10, "WS12": 3, "WS07": 7}
    assert [n.image for n in EXPECTED] != [n.image for n in roots_first(EXPECTED)]  # tree order is not start order
    assert len([n for n in EXPECTED if len(n.sources) == 2]) == 1
    assert {n.image.rsplit("\\", 1)[-1] for n in roots} == {
        "cmd.exe", "powershell.exe", "agentsvc.exe", "msiexec.exe", "svchost.exe", "TiWorker.exe", "cleanmgr.exe",
        "agent.exe", "explorer.exe", "WmiPrvSE.exe"}
    assert len(roots_first(EXPECTED)) == len(EXPECTED)
