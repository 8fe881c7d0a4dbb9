"""Findings on the real corpus: each named file raises its rule, with the hits an independent
reading of the file's raw records (the `evtx` parser, not the engine) gives."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import evtx
import pytest
from conftest import CORPUS

from engine import findings

CA = "evtx/evtx-attack-samples/Credential Access"
# The project's default allowlist for lsass-access (rules/credential_access.toml), read literally.
ALLOWED_NAMES = ("msmpeng.exe", "mssense.exe", "sensecncproxy.exe", "taskmgr.exe", "procexp.exe", "procexp64.exe",
                 "vmtoolsd.exe", "wmiprvse.exe")


def _records(relpath: str) -> list[dict[str, Any]]:
    out = []
    for r in evtx.PyEvtxParser(str(CORPUS / relpath)).records_json():
        event = json.loads(r["data"])["Event"]
        system = event["System"]
        eid = system["EventID"]
        data = event.get("EventData") or {}
        out.append({"id": int(eid if isinstance(eid, int) else eid["#text"]), "channel": system["Channel"],
                    "record": int(system["EventRecordID"]), "data": data if isinstance(data, dict) else {},
                    "time": datetime.fromisoformat(system["TimeCreated"]["#attributes"]["SystemTime"]
                                                   .replace("Z", "+00:00")).replace(tzinfo=None)})
    return out


def _hits(corpus_case: Any, relpath: str, rule: str) -> list[int]:
    """The eids of `rule`'s findings that come from the file (a finding's eids carry the file's id)."""
    source_id = corpus_case.source(relpath)[0]
    cur = corpus_case.cursor()
    findings.ensure(cur, findings.load(user=False))
    return sorted(e for f in findings.listing(cur, rule=rule) for e in f["eids"] if e >> 32 == source_id)


def _records_of(corpus_case: Any, relpath: str, eids: list[int]) -> list[int]:
    rows = corpus_case.cursor().execute("SELECT record_id FROM events WHERE list_contains(?, eid)", [eids]).fetchall()
    return sorted(int(r[0]) for r in rows)


def test_mimikatz_sekurlsa_raises_lsass_access_for_each_memory_reading_open(corpus_case: Any) -> None:
    relpath = f"{CA}/sysmon_10_lsass_mimikatz_sekurlsa_logonpasswords.evtx"
    expected = sorted(
        r["record"] for r in _records(relpath)
        if r["channel"] == "Microsoft-Windows-Sysmon/Operational" and r["id"] == 10
        and str(r["data"].get("TargetImage", "")).lower().endswith("\\lsass.exe")
        and int(str(r["data"]["GrantedAccess"]), 16) & 0x50
        and not str(r["data"].get("SourceImage", "")).lower().endswith(ALLOWED_NAMES))
    assert expected
    assert _records_of(corpus_case, relpath, _hits(corpus_case, relpath, "lsass-access")) == expected


def test_handles_to_lsass_in_the_object_access_audit_raise_lsass_handle_audit(corpus_case: Any) -> None:
    relpath = f"{CA}/CA_hashdump_4663_4656_lsass_access.evtx"
    expected = sorted(r["record"] for r in _records(relpath)
                      if r["channel"] == "Security" and r["id"] in (4656, 4663)
                      and str(r["data"].get("ObjectName", "")).lower().endswith("\\lsass.exe")
                      and not str(r["data"].get("ProcessName", "")).lower().endswith(ALLOWED_NAMES))
    assert expected
    assert _records_of(corpus_case, relpath, _hits(corpus_case, relpath, "lsass-handle-audit")) == expected


def test_smb_password_guessing_raises_brute_force_with_the_whole_burst(corpus_case: Any) -> None:
    relpath = "evtx/deepbluecli/evtx/smb-password-guessing-security.evtx"
    # The longest run of one account's 4625s with no gap over the 5-minute window.
    by_account: dict[str, list[datetime]] = {}
    for r in _records(relpath):
        if r["id"] == 4625:
            by_account.setdefault(str(r["data"].get("TargetUserName", "")).lower(), []).append(r["time"])
    longest = 0
    for times in by_account.values():
        times.sort()
        run = 1
        for a, b in pairwise(times):
            run = run + 1 if b - a <= timedelta(minutes=5) else 1
            longest = max(longest, run)
    hits = _hits(corpus_case, relpath, "brute-force")
    assert longest >= 20 and len(hits) == longest


@pytest.mark.parametrize("name", ["eventlog-dac.evtx", "mimikatz-privesc-hashdump.evtx", "password-spray.evtx",
                                  "sliver-security.evtx"])
def test_a_deepbluecli_log_holding_1102_raises_log_cleared(corpus_case: Any, name: str) -> None:
    relpath = f"evtx/deepbluecli/evtx/{name}"
    expected = sorted(r["record"] for r in _records(relpath) if r["channel"] == "Security" and r["id"] == 1102)
    assert expected
    assert _records_of(corpus_case, relpath, _hits(corpus_case, relpath, "log-cleared")) == expected


def test_every_default_rule_runs_on_the_whole_corpus_without_failing(corpus_case: Any) -> None:
    cur = corpus_case.cursor()
    assert findings.ensure(cur, findings.load(user=False)) == []
    assert {f["rule"] for f in findings.listing(cur)} >= {"lsass-access", "brute-force", "log-cleared",
                                                          "attacker-commands", "suspicious-service"}


def test_coverage_of_a_host_without_sysmon_says_its_process_access_is_not_visible(corpus_case: Any) -> None:
    from engine.findings import coverage

    report = coverage.report(corpus_case.cursor(), findings.load(user=False).enabled)
    hosts = [h for h in report if not h["sysmon_ids"]]
    assert hosts and all(any(r["rule"] == "lsass-access" for r in h["not_visible"]) for h in hosts)
    assert all(h["events"] > 0 and h["first"] <= h["last"] for h in report)


def test_corpus_files_named_here_exist() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"real sample corpus not found at {CORPUS}")
    assert (CORPUS / Path(CA) / "sysmon_10_lsass_mimikatz_sekurlsa_logonpasswords.evtx").is_file()
