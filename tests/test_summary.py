"""The summary, user and process of a timeline row name the right actor and target for each kind of
event (domain.md §1): a wrong one sends a responder after the wrong account."""

from __future__ import annotations

from typing import Any

import pytest

from engine.summary import process_of, summarise, user_of

SYSMON = "Microsoft-Windows-Sysmon/Operational"
RCM = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"
LSM = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"
RDP_CORE = "Microsoft-Windows-RemoteDesktopServices-RdpCoreTS/Operational"


def row(channel: str, event_id: int, **cols: Any) -> dict[str, Any]:
    return {"channel": channel, "event_id": event_id, **cols}


SUBJECT = {"subject_domain": "CORP", "subject_user": "adm_jdoe"}

# (row, summary, user column)
CASES: list[tuple[dict[str, Any], str, str]] = [
    (row("Security", 4624, target_domain="CORP", target_user="alice", subject_user="WS07$", logon_type=10,
         auth_package="Negotiate", src_ip="10.0.0.66", workstation="KALI"),
     "CORP\\alice  type 10 RemoteInteractive  Negotiate  from 10.0.0.66 (KALI)", "CORP\\alice"),
    (row("Security", 4776, target_user="alice", workstation="KALI", status=0xC000006A),
     "alice  user name correct, password wrong (0xc000006a)  from KALI", "alice"),
    (row(RCM, 1149, target_domain="CORP", target_user="alice", src_ip="10.0.0.66"),
     "CORP\\alice  from 10.0.0.66  RDP authenticated", "CORP\\alice"),
    (row(LSM, 23, target_domain="CORP", target_user="alice"), "CORP\\alice  RDP logoff", "CORP\\alice"),
    (row("Security", 4778, target_domain="THESHIRE", target_user="pgustavo", src_ip="1.2.3.4",
         workstation="robertos-mbp"),
     "THESHIRE\\pgustavo  from 1.2.3.4 (robertos-mbp)  RDP reconnected", "THESHIRE\\pgustavo"),
    # Group membership: the member is the account concerned, the group is where it went.
    (row("Security", 4732, **SUBJECT, target_domain="Builtin", target_user="Administrators",
         member_name="support_tmp", member_sid="S-1-5-21-1-2-3-1001"),
     "CORP\\adm_jdoe added support_tmp to Builtin\\Administrators", "support_tmp"),
    (row("Security", 4733, **SUBJECT, target_domain="Builtin", target_user="Administrators",
         member_sid="S-1-5-21-1-2-3-1001"),
     "CORP\\adm_jdoe removed S-1-5-21-1-2-3-1001 from Builtin\\Administrators", "S-1-5-21-1-2-3-1001"),
    (row("Security", 4720, **SUBJECT, target_domain="FS01", target_user="support_tmp"),
     "CORP\\adm_jdoe created FS01\\support_tmp", "FS01\\support_tmp"),
    (row("Security", 4740, subject_domain="CORP", subject_user="DC01$", target_domain="KALI", target_user="bob"),
     "bob locked out  (caller KALI)", "bob"),
    # Services: what they run is the ImagePath, carried as the command line.
    (row("System", 7045, service_name="PSEXESVC", command_line="%SystemRoot%\\PSEXESVC.exe"),
     "service PSEXESVC  %SystemRoot%\\PSEXESVC.exe", ""),
    (row("Security", 5140, **SUBJECT, src_ip="10.0.1.107", object_name="\\\\*\\ADMIN$"),
     "CORP\\adm_jdoe  from 10.0.1.107 → \\\\*\\ADMIN$", "CORP\\adm_jdoe"),
    (row(SYSMON, 22, process_image="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
         dst_host="cdn-update.example.net", subject_domain="CORP", subject_user="alice"),
     "powershell.exe → DNS cdn-update.example.net", "CORP\\alice"),
    (row(SYSMON, 10, process_image="C:\\Windows\\System32\\rundll32.exe",
         target_image="C:\\Windows\\system32\\lsass.exe", granted_access=0x1410, subject_domain="CORP",
         subject_user="alice"),
     "rundll32.exe → lsass.exe 0x1410", "CORP\\alice"),
    (row("Security", 4688, process_image="C:\\Windows\\System32\\whoami.exe", command_line="whoami /all",
         parent_image="C:\\Windows\\System32\\cmd.exe", **SUBJECT),
     "cmd.exe → whoami.exe /all", "CORP\\adm_jdoe"),
    # Before Windows 10 a 4688 names its parent by PID only.
    (row("Security", 4688, process_image="C:\\Windows\\System32\\ipconfig.exe", command_line="ipconfig /all",
         parent_pid=3860, **SUBJECT),
     "pid 3860 → ipconfig.exe /all", "CORP\\adm_jdoe"),
    # 4648: whose credentials were used against which server, and by what.
    (row("Security", 4648, **SUBJECT, target_domain="CORP", target_user="admin", dst_host="FS01.corp.local",
         dst_ip="10.0.1.20", process_image="C:\\Tools\\PsExec64.exe"),
     "CORP\\adm_jdoe as CORP\\admin → FS01.corp.local (10.0.1.20) via PsExec64.exe", "CORP\\admin"),
    (row("Security", 4648, **SUBJECT, target_user="admin", dst_ip="10.0.1.20"),
     "CORP\\adm_jdoe as admin → (10.0.1.20)", "admin"),
    # No account in the event data: the event's own UserID, by name when it is a well-known one.
    (row("System", 7045, service_name="evil", command_line="cmd /c x", user_sid="S-1-5-18"),
     "service evil  cmd /c x", "SYSTEM (LocalSystem)"),
    (row("Microsoft-Windows-PowerShell/Operational", 4104, script_text="Invoke-Mimikatz", user_sid="S-1-5-21-1-2-3-1104"),
     "Invoke-Mimikatz", "S-1-5-21-1-2-3-1104"),
    # Log clearing: only Security 1102 and System 104 from the Eventlog provider.
    (row("Security", 1102, **SUBJECT, provider="Microsoft-Windows-Eventlog"),
     "Security log cleared by CORP\\adm_jdoe", "CORP\\adm_jdoe"),
    (row("System", 104, **SUBJECT, provider="Microsoft-Windows-Eventlog"),
     "event log cleared by CORP\\adm_jdoe", "CORP\\adm_jdoe"),
    # firewall (WFP): Source and Dest as the event names them; IPv6 in brackets before the port
    (row("Security", 5156, src_ip="10.0.0.66", src_port=50123, dst_ip="10.0.1.7", dst_port=445,
         process_image="\\device\\harddiskvolume2\\windows\\system32\\svchost.exe"),
     "svchost.exe  10.0.0.66:50123 → 10.0.1.7:445  permitted", ""),
    (row("Security", 5157, src_ip="fe80::1", src_port=546, dst_ip="ff02::1:2", dst_port=547, process_image="System"),
     "System  [fe80::1]:546 → [ff02::1:2]:547  blocked", ""),
    (row("Security", 5158, src_ip="0.0.0.0", src_port=4444, process_image="C:\\Users\\x\\nc.exe"),
     "nc.exe  0.0.0.0:4444  bind permitted", ""),
    (row("System", 7036, service_name="PSEXESVC"), "service PSEXESVC: service state changed", ""),
    (row("Windows PowerShell", 400, command_line="powershell -nop -enc SQBFAFgA"),
     "PowerShell engine started: powershell -nop -enc SQBFAFgA", ""),
    (row("Windows PowerShell", 800, command_line="powershell.exe", subject_domain="CORP", subject_user="bob"),
     "PowerShell pipeline executed: powershell.exe", "CORP\\bob"),
    (row("Microsoft-Windows-PowerShell/Operational", 4103, script_text='CommandInvocation(Get-Random): "Get-Random"\n',
         subject_domain="CORP", subject_user="bob"),
     'module: CommandInvocation(Get-Random): "Get-Random"', "CORP\\bob"),
    # 4625: why right after who, from the more specific code; the codes in Windows' order
    (row("Security", 4625, target_domain="CORP", target_user="bob", logon_type=3, status=0xC000006D,
         substatus=0xC000006A), "CORP\\bob  user name correct, password wrong (0xc000006d/0xc000006a)  type 3 Network",
     "CORP\\bob"),
    (row("Security", 4625, target_user="bob", status=0xC0000234, substatus=0),
     "bob  account locked out (0xc0000234)", "bob"),
    (row(SYSMON, 17, process_image="C:\\x\\beacon.exe", object_name="\\MSSE-1234-server"),
     "beacon.exe → \\MSSE-1234-server", ""),
    # no target account: the subject and what happened, not an arrow to nothing
    (row("Security", 4673, **SUBJECT), "CORP\\adm_jdoe", "CORP\\adm_jdoe"),
    (row("Security", 4624, subject_user="x") | {"event_id": 4701}, "x", "x"),
    (row(SYSMON, 7, process_image="C:\\x\\rundll32.exe", object_name="C:\\Users\\x\\evil.dll"),
     "rundll32.exe loaded C:\\Users\\x\\evil.dll", ""),
    # Sysmon logs as SYSTEM whoever acted: its UserID is not the user (an older Sysmon names none)
    (row(SYSMON, 10, process_image="C:\\x\\mimikatz.exe", target_image="C:\\Windows\\System32\\lsass.exe",
         granted_access=0x1010, user_sid="S-1-5-18"), None, ""),
    (row("System", 7045, service_name="x", user_sid="S-1-5-18"), None, "SYSTEM (LocalSystem)"),
    (row(SYSMON, 6, object_name="C:\\Windows\\System32\\drivers\\x.sys"),
     "driver C:\\Windows\\System32\\drivers\\x.sys", ""),
    (row(SYSMON, 5, process_image="C:\\x\\mimikatz.exe"), "mimikatz.exe exited", ""),
    (row(SYSMON, 2, process_image="C:\\x\\t.exe", object_name="C:\\a.txt"),
     "t.exe changed the creation time of C:\\a.txt", ""),
    (row(SYSMON, 3, process_image="C:\\x\\a.exe", src_ip="::1", src_port=5000, dst_ip="::1", dst_port=80),
     "a.exe  [::1]:5000 → [::1]:80", ""),
    (row("System", 104, **SUBJECT, provider="Microsoft-Windows-Eventlog", object_name="Windows PowerShell"),
     "Windows PowerShell log cleared by CORP\\adm_jdoe", "CORP\\adm_jdoe"),
    (row("System", 104, **SUBJECT, provider="Microsoft-Windows-Eventlog",
         object_name="Microsoft-Windows-Sysmon/Operational"), "Sysmon log cleared by CORP\\adm_jdoe", "CORP\\adm_jdoe"),
]


@pytest.mark.parametrize(("event", "summary", "user"), CASES,
                         ids=[f"{c[0]['channel'].rsplit('-', 1)[-1]}-{c[0]['event_id']}" for c in CASES])
def test_the_summary_and_user_name_the_right_accounts(event: dict[str, Any], summary: str | None, user: str) -> None:
    if summary is not None:
        assert summarise(event) == summary
    assert user_of(event) == user


@pytest.mark.parametrize("event", [
    row(RDP_CORE, 104, provider="Microsoft-Windows-RemoteDesktopServices-RdpCoreTS"),
    row("Application", 1102),
])
def test_an_event_that_only_shares_a_log_clearing_number_is_not_called_log_clearing(event: dict[str, Any]) -> None:
    assert "cleared" not in summarise(event)


def test_the_process_column_is_the_image_file_name() -> None:
    assert process_of({"process_image": "C:\\Windows\\System32\\cmd.exe"}) == "cmd.exe"
    assert process_of({}) == ""


def test_an_event_no_summary_knows_gets_its_first_meaningful_fields() -> None:
    from engine.summary import generic

    fields = {"ProviderGuid": "{C76BAA63-AE81-421C-B425-340B4B24157F}", "Version": "0", "Id": "{00000000-0000-0000-0000-000000000000}",
              "ClientMachine": "WS05", "User": "corp\\\\bob", "Operation": "x" * 200, "Later": "not shown", "More": "no"}
    line = generic(fields)
    assert line.startswith("ClientMachine: WS05  User: corp\\\\bob  Operation: xxx")
    assert line.endswith("…  Later: not shown") and "ProviderGuid" not in line and "Id:" not in line
    assert generic({"Data": {"#text": ["a", "-", "b"]}}) == "a · b"


def test_the_timeline_gives_every_event_with_data_a_summary(tmp_path: Any) -> None:
    from conftest import evtx_doc, ingest_into, write_jsonl

    from engine import Case, views

    doc = evtx_doc(1, 261, "2024-05-01T10:00:00Z",
                   channel="Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational",
                   provider="Microsoft-Windows-TerminalServices-RemoteConnectionManager", data={"Param1": "listener RDP-Tcp"})
    case = tmp_path / "case.duckdb"
    ingest_into(case, [write_jsonl(tmp_path / "e.jsonl", [doc])])
    with Case(case, read_only=True) as c:
        cur = c.cursor()
        (row,) = views.window(cur, views.resolve(cur, ""), 0, 10)
    assert row["summary"] == "Param1: listener RDP-Tcp"
