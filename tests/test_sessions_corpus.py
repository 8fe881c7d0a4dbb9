"""`ashiato sessions` on real logs (../shared/corpus): each file is ingested alone into a fresh case and
every session the CLI prints is checked, field by field, against sessions computed in the test from the
raw records by the contract's rules (tests/independent_sessions.py), never from the engine's tables."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import independent_sessions as ind
import pytest
from conftest import write_jsonl

from tui.cli import main

pytestmark = pytest.mark.corpus

EVTX = [
    "evtx/omerbenamram-evtx/samples/security.evtx",
    "evtx/velocidex-evtx/testdata/Security.evtx",
    "evtx/evtx-attack-samples/Command and Control/DE_RDP_Tunneling_4624.evtx",
    "evtx/deepbluecli/evtx/smb-password-guessing-security.evtx",
]
_SD = "ndjson/security-datasets/atomic/windows/"
# Security-Datasets logs with 4624 and 4672. Only winlogbeat 6's @timestamp is the event's UTC time;
# NXLog's EventTime is local time with no zone, and the TimeCreated some lines carry instead is local
# time marked "Z" (Sysmon's UtcTime next to it is 4-5 hours away). For those two the times are checked
# up to one zone offset per host.
FLAT = [
    _SD + "defense_evasion/host/cmd_bitsadmin_download_psh_script/cmd_bitsadmin_download_psh_script_2020-10-2302365189.json.gz",
    _SD + "lateral_movement/host/schtask_create/schtask_create_2020-12-1907003032.json.gz",
    _SD + "defense_evasion/host/empire_enable_rdp/empire_enable_rdp_2019-05-18203650.json.gz",
    _SD + "privilege_escalation/host/empire_invoke_runas/empire_invoke_runas_2019-05-18204300.json.gz",
    _SD + "credential_access/host/rdp_interactive_taskmanager_lsass_dump/rdp_interactive_taskmanager_lsass_dump_2020-09-22043748.json.gz",
    _SD + "privilege_escalation/host/empire_uac_shellapi_fodhelper/empire_uac_shellapi_fodhelper_2020-09-04032946.json.gz",
    _SD + "lateral_movement/host/covenant_copy_smb_CreateRequest/covenant_copy_smb_CreateRequest_2020-09-22145302.json.gz",
    _SD + "lateral_movement/host/empire_psexec_dcerpc_tcp_svcctl/empire_psexec_dcerpc_tcp_svcctl_2020-09-20121608.json.gz",
    _SD + "lateral_movement/host/covenant_sharpsc_query_dcerpc_smb_svcctl/covenant_sharpsc_query_dcerpc_smb_svcctl_2020-08-06012009.json.gz",
    _SD + "lateral_movement/host/purplesharp_ad_playbook_I/purplesharp_ad_playbook_I_2020-10-22042947.json.gz",
]
PLAIN_FIELDS = ["linked_logon_id", "user", "domain", "sid", "logon_type", "auth_package", "logon_process",
                "src_ip", "src_port", "workstation", "privileged", "privileges", "sensitive_privileges",
                "end_reason", "logons"]
TIME_FIELDS = ["start", "end"]
# Account fields: "-" is how Windows writes "none", so "-" and null are the same value.
DASH_IS_NULL = {"user", "domain", "sid", "auth_package", "logon_process"}
QUARTER_HOUR = timedelta(minutes=15)


# -- helpers ------------------------------------------------------------------------------------------
def engine_sessions(evidence: Path, case: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Ingest `evidence` alone into a new case and return what `ashiato sessions --format jsonl` prints."""
    assert main(["ingest", str(case), str(evidence), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sessions", str(case), "--format", "jsonl", "--limit", "0"]) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def engine_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def key_of(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["host"], row["boot"], row["logon_id"])


def show(key: tuple[Any, ...]) -> str:
    host, boot, lid = key
    return f"{host}/{boot}/{lid:#x}"


def same(name: str, expected: Any, got: Any) -> bool:
    if name in DASH_IS_NULL:
        expected, got = (None if v == "-" else v for v in (expected, got))
    return bool(expected == got)


def differences(expected: dict[tuple[Any, ...], ind.Session], got: list[dict[str, Any]], *,
                times: bool) -> list[str]:
    """Every way the engine's rows differ from the independent sessions, one readable line each."""
    problems: list[str] = []
    rows = {}
    for row in got:
        if key_of(row) in rows:
            problems.append(f"{show(key_of(row))}: printed twice")
        rows[key_of(row)] = row
    for key in sorted(set(expected) - set(rows), key=str):
        problems.append(f"{show(key)}: missing (expected {expected[key]!r})")
    for key in sorted(set(rows) - set(expected), key=str):
        problems.append(f"{show(key)}: not expected (got user={rows[key]['user']!r} "
                        f"start={rows[key]['start']} logons={rows[key]['logons']})")
    for key in sorted(set(rows) & set(expected), key=str):
        exp, row = expected[key], rows[key]
        for name in PLAIN_FIELDS:
            if not same(name, getattr(exp, name), row.get(name)):
                problems.append(f"{show(key)}: {name} expected {getattr(exp, name)!r}, got {row.get(name)!r}")
        if row["end_reason"] == "open" and (row["end"] is not None or row["duration_s"] is not None):
            problems.append(f"{show(key)}: open but end={row['end']!r} duration_s={row['duration_s']!r}")
        if not times:
            continue
        for name in TIME_FIELDS:
            if getattr(exp, name) != engine_time(row.get(name)):
                problems.append(f"{show(key)}: {name} expected {getattr(exp, name)}, got {row.get(name)!r}")
        if exp.start is not None and exp.end is not None:
            want = (exp.end - exp.start).total_seconds()
            if row.get("duration_s") is None or abs(float(row["duration_s"]) - want) > 1e-3:
                problems.append(f"{show(key)}: duration_s expected {want}, got {row.get('duration_s')!r}")
    if not times:
        problems += zone_differences(expected, rows)
    return problems


def zone_differences(expected: dict[tuple[Any, ...], ind.Session], rows: dict[tuple[Any, ...], dict[str, Any]]
                     ) -> list[str]:
    """Times written in local time: the engine's UTC start and end must be the written ones shifted by
    one offset per host, a whole number of quarter hours."""
    shifts: dict[Any, set[timedelta]] = defaultdict(set)
    problems = []
    for key in set(rows) & set(expected):
        exp, row = expected[key], rows[key]
        for written, name in ((exp.start_written, "start"), (exp.end_written, "end")):
            got = engine_time(row.get(name))
            if written is None or got is None:
                if (written is None) != (got is None):
                    problems.append(f"{show(key)}: {name} written {written}, got {row.get(name)!r}")
                continue
            shifts[key[0]].add(got - written)
    for host, found in sorted(shifts.items(), key=str):
        if len(found) != 1 or next(iter(found)) % QUARTER_HOUR:
            problems.append(f"{host}: times shifted from the written ones by {sorted(map(str, found))}, "
                            "expected one zone offset")
    return problems


def assert_same(expected: dict[tuple[Any, ...], ind.Session], got: list[dict[str, Any]], *, times: bool) -> None:
    problems = differences(expected, got, times=times)
    shown = "\n".join(problems[:40])
    assert not problems, f"{len(problems)} differences from the independent sessions:\n{shown}"


# -- EVTX ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("relpath", EVTX, ids=lambda p: Path(p).name)
def test_sessions_of_an_evtx_file_match_sessions_computed_from_its_raw_records(
        relpath: str, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus / relpath
    expected = ind.compute(ind.evtx_records(path))
    got = engine_sessions(path, tmp_path / "case.duckdb", capsys)
    assert_same(expected, got, times=True)


def test_a_log_with_only_failed_logons_has_no_sessions(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus / "evtx/deepbluecli/evtx/smb-password-guessing-security.evtx"
    records = ind.evtx_records(path)
    assert sum(r.event_id == 4625 for r in records) > 3000 and not any(r.event_id == 4624 for r in records)
    assert engine_sessions(path, tmp_path / "case.duckdb", capsys) == []


def test_the_boot_epochs_of_a_log_with_many_restarts_are_numbered_as_the_markers_say(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """security.evtx restarts tens of times: SYSTEM's 0x3e7 must be one session per boot, never merged."""
    path = corpus / "evtx/omerbenamram-evtx/samples/security.evtx"
    expected = ind.compute(ind.evtx_records(path))
    got = engine_sessions(path, tmp_path / "case.duckdb", capsys)
    want = sorted((h, b) for h, b, lid in expected if lid == 0x3E7)
    have = sorted((r["host"], r["boot"]) for r in got if r["logon_id"] == 0x3E7)
    assert len(want) > 30
    assert have == want


def test_linked_uac_logons_are_one_session_with_the_other_id_as_linked_logon_id(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus / "evtx/velocidex-evtx/testdata/Security.evtx"
    expected = ind.compute(ind.evtx_records(path))
    pairs = {k: s.linked_logon_id for k, s in expected.items() if s.linked_logon_id is not None}
    assert len(pairs) >= 2, "the velocidex Security.evtx has UAC linked logons (DWM-1, test)"
    got = {key_of(r): r for r in engine_sessions(path, tmp_path / "case.duckdb", capsys)}
    assert {k: got[k]["linked_logon_id"] for k in pairs if k in got} == pairs
    # the second id of each pair has no row of its own
    assert not [k for k, lid in pairs.items() if (k[0], k[1], lid) in got]


# -- Security-Datasets (NXLog flat JSON, winlogbeat 6) -------------------------------------------------
@pytest.mark.parametrize("relpath", FLAT, ids=lambda p: Path(p).name.split("_20")[0])
def test_sessions_of_a_json_export_match_sessions_computed_from_its_lines(
        relpath: str, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus / relpath
    records = ind.flat_records(path)
    assert any(r.event_id == 4624 for r in records) and any(r.event_id == 4672 for r in records)
    expected = ind.compute(records)
    got = engine_sessions(path, tmp_path / "case.duckdb", capsys)
    assert_same(expected, got, times=ind.times_are_utc(records))


# -- an EVTX and its JSON twin ------------------------------------------------------------------------
def test_an_evtx_and_its_evtx_dump_json_twin_give_the_same_sessions(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus / "evtx/omerbenamram-evtx/samples/security.evtx"
    twin = write_jsonl(tmp_path / "security.jsonl", ind.evtx_json_lines(path))
    from_evtx = engine_sessions(path, tmp_path / "evtx.duckdb", capsys)
    from_json = engine_sessions(twin, tmp_path / "json.duckdb", capsys)
    assert len(from_evtx) > 100

    def comparable(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
        # first_eid is the engine's own event number, which depends on the source, not on the events
        return {key_of(r): {k: v for k, v in r.items() if k != "first_eid"} for r in rows}

    a, b = comparable(from_evtx), comparable(from_json)
    assert set(a) == set(b)
    diffs = [f"{show(k)}: {f} evtx={a[k][f]!r} json={b[k].get(f)!r}"
             for k in sorted(a, key=str) for f in a[k] if a[k][f] != b[k].get(f)]
    assert not diffs, "\n".join(diffs[:40])
