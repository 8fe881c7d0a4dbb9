"""`ashiato tree` on real logs (../shared/corpus): each file is ingested alone into a fresh case and every
process node the CLI prints is checked against a tree computed in the test from the raw records by the
lineage contract's rules (tests/independent_lineage.py), never from the engine's tables: the same set
of nodes, and for each node its parent and how it was linked (guid / merged / pid+time / unresolved),
its PID, image, command line, parent PID (and an orphan's parent image), boot, sources, start and end."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import independent_lineage as il
import pytest
from conftest import write_jsonl

from tui.cli import main

pytestmark = pytest.mark.corpus

_AS = "evtx/evtx-attack-samples/"
SYSMON_EVTX = [
    _AS + "AutomatedTestingTools/PanacheSysmon_vs_AtomicRedTeam01.evtx",  # 511 Sysmon 1
    "evtx/python-evtx/tests/data/issue_43.evtx",  # 356 Sysmon 1, 351 Sysmon 5
]
SECURITY_EVTX = [
    "evtx/deepbluecli/evtx/sliver-security.evtx",  # 28 × 4688, 31 × 4689
    _AS + "Command and Control/DE_RDP_Tunnel_5156.evtx",  # 17 × 4688
    _AS + "Privilege Escalation/security_4624_4673_token_manip.evtx",  # 8 × 4688
    _AS + "Credential Access/tutto_malseclogon.evtx",  # 6 × 4688 and 3 Sysmon 1 (one process in both)
    _AS + "Lateral Movement/LM_ScheduledTask_ATSVC_target_host.evtx",  # 4 × 4688
    _AS + "Lateral Movement/LM_4624_mimikatz_sekurlsa_pth_source_machine.evtx",  # 3 × 4688
    "evtx/velocidex-evtx/testdata/Security.evtx",  # 11 × 4688 around a reboot (4608)
]
_SD = "ndjson/security-datasets/atomic/windows/"
# Security-Datasets logs with both Sysmon 1 and 4688 of the same processes. NXLog writes the host's
# local time (EventTime, whole seconds; or TimeCreated, even when marked "Z"); Sysmon's UtcTime is
# the true UTC time, and the independent reading learns each host's offset from it.
FLAT = [
    # TimeCreated marked "Z" but local (UTC-5): 10 processes on two hosts, every one in both logs
    _SD + "lateral_movement/host/schtask_create/schtask_create_2020-12-1907003032.json.gz",
    # TimeCreated without zone and no @timestamp: 4 processes in both logs
    _SD + "credential_access/host/cmd_psexec_lsa_secrets_dump/cmd_psexec_lsa_secrets_dump_2020-10-1903305471.json.gz",
    # EventTime in whole seconds; the Sysmon 1 lines lost their ProcessId (so nothing can merge), and
    # a 4688 child and its 4688 parent start in the same second
    _SD + "discovery/host/empire_shell_net_localgroup_administrators/"
          "empire_shell_net_localgroup_administrators_2020-09-21191843.json.gz",
    # winlogbeat 6 (@timestamp is UTC): 11 processes in both logs, on two hosts
    _SD + "defense_evasion/host/empire_enable_rdp/empire_enable_rdp_2019-05-18203650.json.gz",
]
# The sigma regression pair: one EVTX and evtx_dump's JSON of it (ndjson/sigma-regression-evtxdump).
_SIGMA = "rules-emerging-threats/2025/Malware/Shai-Hulud/proc_creation_win_mal_shai_hulud_malicious_node_bun_execution/"
TWIN = ("evtx/sigma-regression/" + _SIGMA + "5299fadf-f228-4526-8274-251db1960be9.evtx",
        "ndjson/sigma-regression-evtxdump/" + _SIGMA + "5299fadf-f228-4526-8274-251db1960be9.json")
# Per node: (field in the jsonl, Node attribute)
FIELDS = [("pid", "pid"), ("image", "image"), ("command_line", "command_line"), ("parent_pid", "parent_pid")]


# -- helpers ------------------------------------------------------------------------------------------
def engine_tree(evidence: Path, case: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Ingest `evidence` alone into a new case and return what `ashiato tree --format jsonl` prints."""
    assert main(["ingest", str(case), str(evidence), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["tree", str(case), "--format", "jsonl"]) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def engine_time(value: Any) -> datetime | None:
    if value is None:
        return None
    t = datetime.fromisoformat(value)
    assert t.tzinfo is None or t.utcoffset().total_seconds() == 0, f"not UTC: {value!r}"  # type: ignore[union-attr]
    return t.replace(tzinfo=None)


def identity(row: dict[str, Any]) -> Any:
    """process_guid when set, else (host, pid, start)."""
    return row["process_guid"] or (row["host"], row["pid"], engine_time(row["start"]))


def show(ident: Any) -> str:
    if isinstance(ident, tuple):
        host, pid, start = ident
        return f"{host}/pid {pid:#x}/{start}" if isinstance(pid, int) else f"{host}/pid {pid}/{start}"
    return str(ident)


def blank_is_null(value: Any) -> Any:
    """4688 writes "" for a command line it did not record: the same as none."""
    return None if value == "" else value


def dash_is_null(value: Any) -> Any:
    return None if value in ("", "-") else value


def differences(expected: list[il.Node], rows: list[dict[str, Any]]) -> list[str]:
    """Every way the engine's nodes differ from the independent ones, one readable line each."""
    problems: list[str] = []
    want = il.by_identity(expected)
    got: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if identity(row) in got:
            problems.append(f"{show(identity(row))}: printed twice")
        got[identity(row)] = row
    by_key = {row["key"]: row for row in rows}
    for ident in sorted(set(want) - set(got), key=str):
        n = want[ident]
        problems.append(f"{show(ident)}: missing (expected {n.image} pid {n.pid} start {n.start} sources {n.sources})")
    for ident in sorted(set(got) - set(want), key=str):
        r = got[ident]
        problems.append(f"{show(ident)}: not expected (got {r['image']} pid {r['pid']} start {r['start']} "
                        f"sources {r['sources']})")
    for ident in sorted(set(got) & set(want), key=str):
        n, row = want[ident], got[ident]
        where = f"{show(ident)} [{n.image}]"
        # the link
        want_parent = n.parent.identity() if n.parent is not None else None
        parent_row = by_key.get(row["parent_key"]) if row["parent_key"] is not None else None
        if row["parent_key"] is not None and parent_row is None:
            problems.append(f"{where}: parent_key {row['parent_key']!r} names no printed node")
        got_parent = identity(parent_row) if parent_row is not None else None
        if (want_parent, n.edge) != (got_parent, row["edge"]):
            problems.append(f"{where}: parent expected {show(want_parent)} by {n.edge}, "
                            f"got {show(got_parent)} by {row['edge']}")
        # the node's own fields; a merged node may carry either log's spelling of image and command line
        for name, attr in FIELDS:
            allowed = {blank_is_null(getattr(n, attr))}
            if n.security is not None and name in n.security:
                allowed.add(blank_is_null(n.security[name]))
            if blank_is_null(row.get(name)) not in allowed:
                problems.append(f"{where}: {name} expected {' or '.join(map(repr, sorted(allowed, key=str)))}, "
                                f"got {row.get(name)!r}")
        if n.edge == "unresolved":  # an orphan shows the parent it recorded ("-" is how Windows writes none)
            allowed = {dash_is_null(n.parent_image)} | ({dash_is_null(n.security["parent_image"])} if n.security else set())
            if dash_is_null(row.get("parent_image")) not in allowed:
                problems.append(f"{where}: parent_image expected {' or '.join(map(repr, sorted(allowed, key=str)))}, "
                                f"got {row.get('parent_image')!r}")
        if row["boot"] != n.boot:
            problems.append(f"{where}: boot expected {n.boot}, got {row['boot']!r}")
        if sorted(row["sources"]) != sorted(n.sources):
            problems.append(f"{where}: sources expected {n.sources}, got {row['sources']}")
        if n.guid is not None and engine_time(row["start"]) != n.start:
            problems.append(f"{where}: start expected {n.start}, got {row['start']!r}")
        if (engine_time(row["end"]), row.get("end_reason")) != (n.end, n.end_reason):
            problems.append(f"{where}: end expected {n.end} ({n.end_reason}), got {row['end']!r} "
                            f"({row.get('end_reason')})")
    return problems


def assert_same(expected: list[il.Node], rows: list[dict[str, Any]]) -> None:
    problems = differences(expected, rows)
    shown = "\n".join(problems[:40])
    assert not problems, f"{len(problems)} differences from the independent tree:\n{shown}"


def edges(nodes: list[il.Node]) -> Counter[str]:
    return Counter(n.edge for n in nodes if n.edge)


# -- EVTX ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("relpath", SYSMON_EVTX + SECURITY_EVTX, ids=lambda p: Path(p).name)
def test_the_tree_of_an_evtx_file_matches_the_tree_computed_from_its_raw_records(
        relpath: str, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus / relpath
    expected = il.build(il.evtx_events(path))
    assert expected, f"{relpath} has process creations"
    assert_same(expected, engine_tree(path, tmp_path / "case.duckdb", capsys))


def test_the_sysmon_samples_link_mostly_by_guid(corpus: Path) -> None:
    """The independent trees themselves are not trivial: Sysmon links by guid, 4688 by PID and time."""
    panache = il.build(il.evtx_events(corpus / SYSMON_EVTX[0]))
    assert len(panache) == 511 and edges(panache)["guid"] > 450
    issue_43 = il.build(il.evtx_events(corpus / SYSMON_EVTX[1]))
    assert len(issue_43) == 356 and edges(issue_43)["guid"] > 100
    assert sum(n.end is not None for n in issue_43) > 300  # Sysmon 5
    sliver = il.build(il.evtx_events(corpus / SECURITY_EVTX[0]))
    assert edges(sliver)["pid+time"] >= 10 and sum(n.end is not None for n in sliver) > 10  # 4689


# -- Security-Datasets: Sysmon 1 and 4688 of the same processes --------------------------------------
@pytest.mark.parametrize("relpath", FLAT, ids=lambda p: Path(p).name.split("_20")[0])
def test_the_tree_of_a_json_export_with_sysmon_and_4688_matches_the_tree_computed_from_its_lines(
        relpath: str, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus / relpath
    events = il.flat_events(path)
    untimed = [e for e in events if e.ts is None and e.event_id in (1, 5, 4688, 4689)]
    assert not untimed, f"process events whose UTC time the test cannot tell: {untimed[:3]}"
    expected = il.build(events)
    assert any(n.sources == ["4688"] or len(n.sources) == 2 for n in expected)
    assert_same(expected, engine_tree(path, tmp_path / "case.duckdb", capsys))


def test_the_json_samples_merge_sysmon_and_4688(corpus: Path) -> None:
    """What the files above exercise, so a change of the independent reading cannot empty the test."""
    trees = {Path(p).name.split("_20")[0]: il.build(il.flat_events(corpus / p)) for p in FLAT}
    merged = {name: sum(len(n.sources) == 2 for n in nodes) for name, nodes in trees.items()}
    assert merged == {"schtask_create": 10, "cmd_psexec_lsa_secrets_dump": 4,
                      "empire_shell_net_localgroup_administrators": 0, "empire_enable_rdp": 11}
    assert edges(trees["schtask_create"])["merged"] >= 4
    assert edges(trees["cmd_psexec_lsa_secrets_dump"])["merged"] >= 2


# -- an EVTX and its JSON twin ------------------------------------------------------------------------
def comparable(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The rows by identity, the parent by identity too: a 4688-only key holds the engine's own event
    number, which depends on the source, not on the events."""
    by_key = {r["key"]: r for r in rows}
    out = {}
    for r in rows:
        parent = by_key.get(r["parent_key"])
        out[identity(r)] = {**{k: v for k, v in r.items() if k not in ("key", "parent_key")},
                            "parent": identity(parent) if parent is not None else None}
    return out


def assert_same_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    x, y = comparable(a), comparable(b)
    assert set(x) == set(y), f"evtx only: {sorted(set(x) - set(y), key=str)[:5]}, json only: " \
                             f"{sorted(set(y) - set(x), key=str)[:5]}"
    diffs = [f"{show(k)}: {f} evtx={x[k][f]!r} json={y[k].get(f)!r}"
             for k in sorted(x, key=str) for f in x[k] if x[k][f] != y[k].get(f)]
    assert not diffs, "\n".join(diffs[:40])


@pytest.mark.parametrize("relpath", [SYSMON_EVTX[0], _AS + "Credential Access/tutto_malseclogon.evtx"],
                         ids=lambda p: Path(p).name)
def test_an_evtx_and_its_evtx_dump_json_lines_give_the_same_tree(
        relpath: str, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus / relpath
    twin = write_jsonl(tmp_path / "twin.jsonl", il.evtx_json_lines(path))
    from_evtx = engine_tree(path, tmp_path / "evtx.duckdb", capsys)
    from_json = engine_tree(twin, tmp_path / "json.duckdb", capsys)
    assert from_evtx
    assert_same_rows(from_evtx, from_json)


def test_the_sigma_regression_evtx_and_its_json_twin_give_the_same_tree(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evtx, twin = (corpus / p for p in TWIN)
    from_evtx = engine_tree(evtx, tmp_path / "evtx.duckdb", capsys)
    from_json = engine_tree(twin, tmp_path / "json.duckdb", capsys)
    assert len(from_evtx) == 6
    assert_same_rows(from_evtx, from_json)
    assert_same(il.build(il.evtx_events(evtx)), from_evtx)
