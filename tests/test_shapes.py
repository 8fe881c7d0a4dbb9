"""Every input shape maps each hot field as domain.md says: one generated file per shape, ingested
alone, compared field by field with what the generator wrote for the same event."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from engine import Case
from engine.ingest import ingest
from fixtures.incident import CanonicalEvent, incident
from fixtures.shapes import write_all

SYSMON = "Microsoft-Windows-Sysmon/Operational"
RCM = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"
LSM = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"


def _hex(v: str) -> int:
    return int(v, 16)


def _guid(v: str) -> str:
    return v.strip("{}").lower()


# (event kind, column, how to derive the expected value from the canonical event data)
EXPECTATIONS: list[tuple[tuple[str, int], str, Any]] = [
    (("Security", 4624), "target_user", lambda d: d["TargetUserName"]),
    (("Security", 4624), "target_logon_id", lambda d: _hex(d["TargetLogonId"])),
    (("Security", 4624), "logon_type", lambda d: int(d["LogonType"])),
    (("Security", 4624), "logon_process", lambda d: d["LogonProcessName"].strip()),
    (("Security", 4624), "auth_package", lambda d: d["AuthenticationPackageName"]),
    (("Security", 4624), "src_ip", lambda d: None if d["IpAddress"] in ("-", "") else d["IpAddress"]),
    (("Security", 4625), "status", lambda d: _hex(d["Status"])),
    (("Security", 4625), "substatus", lambda d: _hex(d["SubStatus"])),
    (("Security", 4625), "target_user", lambda d: d["TargetUserName"]),
    (("Security", 4672), "subject_logon_id", lambda d: _hex(d["SubjectLogonId"])),
    (("Security", 4688), "process_pid", lambda d: _hex(d["NewProcessId"])),
    (("Security", 4688), "parent_pid", lambda d: _hex(d["ProcessId"])),
    (("Security", 4688), "process_image", lambda d: d["NewProcessName"]),
    (("Security", 4688), "command_line", lambda d: d["CommandLine"]),
    (("Security", 4688), "subject_logon_id", lambda d: _hex(d["SubjectLogonId"])),
    ((SYSMON, 1), "process_guid", lambda d: _guid(d["ProcessGuid"])),
    ((SYSMON, 1), "parent_guid", lambda d: _guid(d["ParentProcessGuid"])),
    ((SYSMON, 1), "process_pid", lambda d: int(d["ProcessId"])),
    ((SYSMON, 1), "parent_pid", lambda d: int(d["ParentProcessId"])),
    ((SYSMON, 1), "process_image", lambda d: d["Image"]),
    ((SYSMON, 1), "command_line", lambda d: d["CommandLine"]),
    ((SYSMON, 1), "subject_logon_id", lambda d: _hex(d["LogonId"])),
    ((SYSMON, 1), "subject_user", lambda d: d["User"].split("\\")[-1]),
    ((SYSMON, 3), "dst_ip", lambda d: d["DestinationIp"]),
    ((SYSMON, 3), "dst_port", lambda d: int(d["DestinationPort"])),
    ((SYSMON, 10), "target_image", lambda d: d["TargetImage"]),
    ((SYSMON, 10), "granted_access", lambda d: _hex(d["GrantedAccess"])),
    ((SYSMON, 10), "process_guid", lambda d: _guid(d["SourceProcessGUID"])),
    ((SYSMON, 10), "process_image", lambda d: d["SourceImage"]),
    (("Security", 4656), "granted_access", lambda d: _hex(d["AccessMask"])),
    (("Security", 4656), "object_name", lambda d: d["ObjectName"]),
    (("System", 7045), "service_name", lambda d: d["ServiceName"]),
    (("Security", 4648), "dst_host", lambda d: d["TargetServerName"]),
    (("Security", 4648), "dst_ip", lambda d: d["IpAddress"]),
    (("Security", 4648), "dst_port", lambda d: int(d["IpPort"])),
    (("Security", 4648), "src_ip", lambda d: None),
    # UserData events: NXLog keeps their fields only in the rendered Message.
    (("Security", 1102), "subject_user", lambda d: d["SubjectUserName"]),
    (("Security", 1102), "subject_domain", lambda d: d["SubjectDomainName"]),
    (("Security", 1102), "subject_sid", lambda d: d["SubjectUserSid"]),
    (("Security", 1102), "subject_logon_id", lambda d: _hex(d["SubjectLogonId"])),
    (("System", 104), "object_name", lambda d: d["Channel"]),
    (("System", 104), "subject_user", lambda d: d["SubjectUserName"]),
    ((RCM, 1149), "target_user", lambda d: d["Param1"]),
    ((RCM, 1149), "target_domain", lambda d: d["Param2"]),
    ((RCM, 1149), "src_ip", lambda d: d["Param3"]),
    ((LSM, 21), "target_user", lambda d: d["User"].split("\\")[-1]),
    ((LSM, 21), "src_ip", lambda d: d["Address"]),
    ((LSM, 23), "target_user", lambda d: d["User"].split("\\")[-1]),
]

FILES = {
    "export-01.jsonl": "evtx-lines",
    "export-02.json": "evtx-pretty",
    "export-03.jsonl": "evtx-attributes",
    "export-04.json": "evtx-attributes-array",
    "export-05.ndjson": "ecs-raw",
    "export-06.ndjson.gz": "ecs-module",
    "export-07.json": "winlogbeat6",
    "export-08.jsonl.gz": "nxlog",
    "export-09.ndjson": "es-hits",
    "export-10.json.gz": "es-hits-array",
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[CanonicalEvent], dict[str, Path]]:
    events = incident(seed=7)
    out = tmp_path_factory.mktemp("shapes")
    write_all(events, out)
    cases: dict[str, Path] = {}
    for name, label in FILES.items():
        case_path = out / f"{label}.duckdb"
        with Case(case_path) as case:
            report = ingest(case, [out / name])
        assert report.files[0].status == "ingested", report.files[0]
        cases[label] = case_path
    return events, cases


def _user_data(ev: CanonicalEvent) -> dict[str, str]:
    return next(iter(ev.user_data.values())) if ev.user_data else {}


def _row(cur: Any, ev: CanonicalEvent) -> dict[str, Any] | None:
    res = cur.execute("SELECT * FROM events WHERE lower(host) = lower(?) AND lower(channel) = lower(?) "
                      "AND event_id = ? AND record_id = ?", [ev.computer, ev.channel, ev.event_id, ev.record_id])
    names = [d[0] for d in res.description]
    rows = res.fetchall()
    return dict(zip(names, rows[0], strict=True)) if rows else None


@pytest.mark.parametrize("label", list(FILES.values()))
def test_every_shape_stores_each_event_once_with_its_own_time(generated: Any, label: str) -> None:
    events, cases = generated
    with Case(cases[label], read_only=True) as case:
        cur = case.cursor()
        assert cur.execute("SELECT count(*) FROM events").fetchall()[0][0] == len(events)
        for ev in events[:40]:
            row = _row(cur, ev)
            assert row is not None, f"{label}: {ev.channel} {ev.event_id} #{ev.record_id} missing"
            expected = ev.time.astimezone(UTC).replace(tzinfo=None)
            # NXLog carries whole seconds of local time; Sysmon exports carry UtcTime.
            assert abs((row["ts"] - expected).total_seconds()) < 2, (label, ev.event_id, row["ts"], expected)


@pytest.mark.parametrize("label", list(FILES.values()))
def test_hot_fields_follow_the_domain_rules_in_every_shape(generated: Any, label: str) -> None:
    events, cases = generated
    wrong: list[str] = []
    with Case(cases[label], read_only=True) as case:
        cur = case.cursor()
        for kind, column, derive in EXPECTATIONS:
            matching = [e for e in events if (e.channel, e.event_id) == kind]
            assert matching, f"the generated incident has no {kind}"
            for ev in matching:
                row = _row(cur, ev)
                assert row is not None, f"{label}: {kind} #{ev.record_id} missing"
                want = derive(ev.event_data or _user_data(ev))
                if row[column] != want:
                    wrong.append(f"{kind} #{ev.record_id} {column}: {row[column]!r} != {want!r}")
    assert not wrong, f"{label}:\n" + "\n".join(wrong[:30])


def test_integers_with_surrounding_tabs_or_line_breaks_still_parse(tmp_path: Path) -> None:
    from conftest import evtx_doc, write_jsonl

    doc = evtx_doc(1, 4624, "2020-09-20T10:00:00Z", data={
        "TargetUserName": "alice", "TargetLogonId": "0x3E7\t", "LogonType": "\r\n3 ", "IpPort": "\t445"})
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.jsonl", [doc])])
        assert case.con.execute("SELECT target_logon_id, logon_type, src_port FROM events").fetchall() == [
            (999, 3, 445)]


@pytest.mark.parametrize(("user", "expected"), [
    ("CORP\\bob", ("bob", "CORP")), ("SYSTEM", ("SYSTEM", None)), ("", (None, None)), ("-", (None, None))])
def test_a_sysmon_user_without_a_domain_is_still_the_subject_user(tmp_path: Path, user: str,
                                                                   expected: tuple[str | None, str | None]) -> None:
    from conftest import evtx_doc, write_jsonl

    doc = evtx_doc(1, 1, "2020-09-20T10:00:00Z", channel=SYSMON, provider="Microsoft-Windows-Sysmon",
                   data={"User": user, "Image": "C:\\x.exe"})
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.jsonl", [doc])])
        assert case.con.execute("SELECT subject_user, subject_domain FROM events").fetchall() == [expected]


def test_a_group_member_is_named_by_its_dn_or_by_the_name_the_case_knows_for_its_sid(tmp_path: Path) -> None:
    from conftest import evtx_doc, write_jsonl

    sid = "S-1-5-21-1-2-3-1001"
    admins = {"TargetUserName": "Administrators", "TargetDomainName": "Builtin", "TargetSid": "S-1-5-32-544",
              "SubjectUserName": "adm_jdoe", "SubjectDomainName": "CORP"}
    docs = [
        evtx_doc(1, 4732, "2020-09-20T10:00:00Z", data={**admins, "MemberName": "CN=Smith\\, John,OU=IT,DC=corp,DC=local",
                                                        "MemberSid": "S-1-5-21-1-2-3-1107"}),
        evtx_doc(2, 4732, "2020-09-20T10:01:00Z", data={**admins, "MemberName": "-", "MemberSid": sid}),
        evtx_doc(3, 4732, "2020-09-20T10:02:00Z", data={**admins, "MemberName": "-", "MemberSid": "S-1-5-21-9-9-9-9"}),
    ]
    later = [evtx_doc(4, 4720, "2020-09-20T09:59:00Z", data={
        "TargetUserName": "support_tmp", "TargetDomainName": "FS01", "TargetSid": sid, "SubjectUserName": "adm_jdoe"})]
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.jsonl", docs)])
        # The account's creation arrives in a later ingest: the member is named then.
        ingest(case, [write_jsonl(tmp_path / "b.jsonl", later)])
        assert case.con.execute("SELECT record_id, member_name, member_sid FROM events WHERE event_id = 4732 "
                                "ORDER BY record_id").fetchall() == [
            (1, "Smith, John", "S-1-5-21-1-2-3-1107"), (2, "support_tmp", sid), (3, None, "S-1-5-21-9-9-9-9")]


def test_classic_windows_powershell_text_gives_the_host_command_line_and_user_in_evtx_and_nxlog(
        tmp_path: Path) -> None:
    from conftest import evtx_doc, nxlog_doc, write_jsonl

    context = ("\tDetailSequence=1\r\n\tUserId=CORP\\bob\r\n\tHostName=ConsoleHost\r\n"
               "\tHostApplication=powershell.exe -nop -w hidden -enc SQBFAFgA\r\n\tEngineVersion=5.1")
    evtx = evtx_doc(1, 800, "2020-09-20T10:00:00Z", channel="Windows PowerShell", provider="PowerShell")
    evtx["Event"]["EventData"] = {"Data": {"#text": ["Get-Process", context, "details"]}}
    nx = nxlog_doc(2, 800, "2020-09-20 06:00:00", "2020-09-20 06:00:01", "2020-09-20T10:00:01Z",
                   channel="Windows PowerShell",
                   data={"SourceName": "PowerShell",
                         "Message": f"Pipeline execution details for command line: Get-Process\r\n\r\n"
                                    f"Context Information: \r\n{context}\r\n\r\nDetails: \r\nCommandInvocation(x)"})
    # A 400 without a user: the engine started for a host application only.
    started = evtx_doc(3, 400, "2020-09-20T10:00:02Z", channel="Windows PowerShell", provider="PowerShell")
    started["Event"]["EventData"] = {"Data": {"#text": ["Available", "None",
                                                        "\tHostApplication=C:\\w\\powershell.exe -enc QQB\r\n"]}}
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.jsonl", [evtx, started]), write_jsonl(tmp_path / "b.json", [nx])])
        rows = case.con.execute("SELECT record_id, command_line, subject_domain, subject_user FROM events "
                                "ORDER BY record_id").fetchall()
    assert rows == [(1, "powershell.exe -nop -w hidden -enc SQBFAFgA", "CORP", "bob"),
                    (2, "powershell.exe -nop -w hidden -enc SQBFAFgA", "CORP", "bob"),
                    (3, "C:\\w\\powershell.exe -enc QQB", None, None)]


def test_firewall_image_load_and_service_state_events_fill_their_columns(tmp_path: Path) -> None:
    from conftest import evtx_doc, write_jsonl

    docs = [
        evtx_doc(1, 5156, "2020-09-20T10:00:00Z", data={
            "Application": "\\device\\harddiskvolume2\\windows\\system32\\svchost.exe", "Direction": "%%14592",
            "SourceAddress": "::ffff:10.0.0.66", "SourcePort": "50123", "DestAddress": "10.0.1.7", "DestPort": "445"}),
        evtx_doc(2, 7, "2020-09-20T10:00:01Z", channel=SYSMON, provider="Microsoft-Windows-Sysmon", data={
            "Image": "C:\\x\\rundll32.exe", "ImageLoaded": "C:\\Users\\x\\evil.dll"}),
        evtx_doc(3, 7036, "2020-09-20T10:00:02Z", channel="System", provider="Service Control Manager", data={
            "param1": "PSEXESVC", "param2": "running"}),
        # Outside these events the same names mean nothing to these columns.
        evtx_doc(4, 4624, "2020-09-20T10:00:03Z", data={"Application": "x.exe", "param1": "y", "ImageLoaded": "z"}),
    ]
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.jsonl", docs)])
        rows = case.con.execute("SELECT record_id, src_ip, src_port, dst_ip, dst_port, process_image, object_name, "
                                "service_name FROM events ORDER BY record_id").fetchall()
    assert rows == [
        (1, "10.0.0.66", 50123, "10.0.1.7", 445, "\\device\\harddiskvolume2\\windows\\system32\\svchost.exe", None, None),
        (2, None, None, None, None, "C:\\x\\rundll32.exe", "C:\\Users\\x\\evil.dll", None),
        (3, None, None, None, None, None, None, "PSEXESVC"),
        (4, None, None, None, None, None, None, None),
    ]


def test_module_logging_context_gives_the_host_command_line_and_user_but_not_the_connected_user(
        tmp_path: Path) -> None:
    from conftest import evtx_doc, write_jsonl

    context = ("        Severity = Informational\r\n        Host Application = powershell.exe -enc SQBFAFgA\n"
               "        User = CORP\\helpdesk\r\n"  # a line feed in the command line poses as the user
               "        Engine Version = 5.1\r\n"
               "        Command Name = Invoke-Expression\r\n        Script Name = \r\n"
               "        Connected User = EVIL\\remote\r\n        User = CORP\\bob\r\n")
    doc = evtx_doc(1, 4103, "2020-09-20T10:00:00Z", channel="Microsoft-Windows-PowerShell/Operational",
                   provider="Microsoft-Windows-PowerShell",
                   data={"ContextInfo": context, "UserData": "", "Payload": 'CommandInvocation(Invoke-Expression): "iex"'})
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.jsonl", [doc])])
        assert case.con.execute("SELECT command_line, subject_domain, subject_user, script_text FROM events"
                                ).fetchall() == [("powershell.exe -enc SQBFAFgA", "CORP", "bob",
                                                  'CommandInvocation(Invoke-Expression): "iex"')]


def _nxlog_event(record_id: int, event_id: int, channel: str, provider: str, **fields: Any) -> dict[str, Any]:
    from conftest import nxlog_doc

    doc = nxlog_doc(record_id, event_id, "2020-09-20 06:00:00", "2020-09-20 06:00:01", "2020-09-20T10:00:01Z",
                    channel=channel, data=fields)
    doc["SourceName"] = provider
    return doc


def test_a_user_name_with_line_breaks_cannot_forge_the_rdp_client_address_in_nxlog(tmp_path: Path) -> None:
    from conftest import write_jsonl

    forged = ("Remote Desktop Services: User authentication succeeded:\r\n\r\n"
              "User: evil\r\nSource Network Address: 10.9.9.9\r\nDomain: \r\n"
              "Domain: CORP\r\nSource Network Address: 203.0.113.7")
    doc = _nxlog_event(1, 1149, RCM, "Microsoft-Windows-TerminalServices-RemoteConnectionManager", Message=forged)
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.json", [doc])])
        assert case.con.execute("SELECT target_user, target_domain, src_ip FROM events").fetchall() == [
            ("evil", "CORP", "203.0.113.7")]


def test_only_the_event_log_service_s_104_names_who_cleared_a_log(tmp_path: Path) -> None:
    from conftest import evtx_doc, write_jsonl

    cleared = _nxlog_event(1, 104, "System", "Microsoft-Windows-Eventlog", Message="The Application log file was cleared.",
                           AccountName="bob", Domain="CORP", UserID="S-1-5-21-1-2-3-1104")
    other = _nxlog_event(2, 104, "System", "Microsoft-Windows-Something", Message="The Application log file was cleared.",
                         AccountName="SYSTEM", Domain="NT AUTHORITY", UserID="S-1-5-18")
    evtx = evtx_doc(3, 104, "2020-09-20T10:00:02Z", channel="System", provider="Microsoft-Windows-Eventlog",
                    user_sid="S-1-5-21-1-2-3-1104")
    del evtx["Event"]["EventData"]
    evtx["Event"]["UserData"] = {"LogFileCleared": {"SubjectUserName": "bob", "SubjectDomainName": "CORP",
                                                    "Channel": "Security", "BackupPath": None}}
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.json", [cleared, other]), write_jsonl(tmp_path / "b.jsonl", [evtx])])
        assert case.con.execute("SELECT record_id, subject_domain, subject_user, subject_sid, object_name "
                                "FROM events ORDER BY record_id").fetchall() == [
            (1, "CORP", "bob", "S-1-5-21-1-2-3-1104", "Application"),
            (2, None, None, None, None),
            (3, "CORP", "bob", "S-1-5-21-1-2-3-1104", "Security")]


@pytest.mark.parametrize("element", ['Log"Cleared', "", "LogFileCleared"])
def test_any_user_data_element_name_is_read_in_the_attribute_split_layout(tmp_path: Path, element: str) -> None:
    from conftest import write_jsonl

    doc = {"Event": {"System": {
        "Provider_attributes": {"Name": "Microsoft-Windows-Eventlog"}, "EventID": 1102, "EventRecordID": 5,
        "TimeCreated_attributes": {"SystemTime": "2020-09-20T10:00:00Z"}, "Channel": "Security", "Computer": "WS01"},
        "UserData": {f"{element}_attributes": {"xmlns": "http://manifests.microsoft.com/win/2004/08/windows/eventlog"},
                     element: {"SubjectUserName": "bob", "SubjectDomainName": "CORP"}}}}
    with Case(tmp_path / "case.duckdb") as case:
        report = ingest(case, [write_jsonl(tmp_path / "a.jsonl", [doc])])
        assert report.records == 1
        assert case.con.execute("SELECT subject_domain, subject_user FROM events").fetchall() == [("CORP", "bob")]


def test_an_azure_row_without_event_data_does_not_take_its_own_channel_for_the_cleared_log(tmp_path: Path) -> None:
    from conftest import write_jsonl

    base = {"TimeGenerated": "2020-09-20T10:00:00Z", "Computer": "WS01", "Channel": "System", "EventID": 104,
            "EventSourceName": "Microsoft-Windows-Eventlog", "EventRecordId": 1}
    with_data = {**base, "EventRecordId": 2, "EventData": '{"Channel": "Application", "SubjectUserName": "bob"}'}
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.json", [base, with_data])])
        assert case.con.execute("SELECT record_id, object_name FROM events ORDER BY record_id").fetchall() == [
            (1, None), (2, "Application")]


def test_a_pipeline_command_cannot_pose_as_the_context_fields_of_its_800(tmp_path: Path) -> None:
    from conftest import evtx_doc, nxlog_doc, write_jsonl

    forged = "Write-Output 'x'\r\nContext Information:\r\n\tUserId=CORP\\admin\r\n\tHostApplication=fake.exe"
    # The real context echoes the command (CommandLine=) after its own fields; the details quote it too.
    context = f"\tUserId=CORP\\bob\r\n\tHostApplication=powershell.exe -nop\r\n\tCommandLine={forged}\r\n"
    evtx = evtx_doc(1, 800, "2020-09-20T10:00:00Z", channel="Windows PowerShell", provider="PowerShell")
    evtx["Event"]["EventData"] = {"Data": {"#text": [forged, context, f"ParameterBinding: value={forged}"]}}
    nx = nxlog_doc(2, 800, "2020-09-20 06:00:00", "2020-09-20 06:00:01", "2020-09-20T10:00:01Z",
                   channel="Windows PowerShell", data={
                       "SourceName": "PowerShell",
                       "Message": f"Pipeline execution details for command line: {forged}\r\n\r\n"
                                  f"Context Information: \r\n{context}\r\nDetails: \r\nCommandInvocation(x)"})
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "a.jsonl", [evtx]), write_jsonl(tmp_path / "b.json", [nx])])
        # EVTX reads the context element alone; NXLog's Message repeats the heading, so nothing is guessed.
        assert case.con.execute("SELECT subject_user, command_line FROM events ORDER BY record_id").fetchall() == [
            ("bob", "powershell.exe -nop"), (None, None)]
