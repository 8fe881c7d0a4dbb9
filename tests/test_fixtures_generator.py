"""The synthetic incident generator: deterministic, complete, consistent, and faithful per shape."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from fixtures.generate import main as generate_main
from fixtures.incident import (
    ATTACKER_IP,
    BLOAT_SIZE,
    HOSTILE_ANSI,
    HOSTILE_MARKUP,
    HOSTILE_OSC52,
    HOSTILE_SQL,
    LSM,
    POWERSHELL,
    RCM,
    SECURITY,
    SYSMON,
    SYSTEM,
    CanonicalEvent,
    incident,
    scale_plan,
    scaled,
)
from fixtures.shapes import (
    FILES,
    evtx_attributes_json,
    evtx_json,
    json_line,
    nxlog_json,
    scaled_chunks,
    winlogbeat_module,
    winlogbeat_raw,
    write_all,
)

HOSTILE_CR = "\rC:\\Windows\\System32\\svchost.exe -k netsvcs -p"
HOSTILE = (HOSTILE_MARKUP, HOSTILE_OSC52, HOSTILE_ANSI, HOSTILE_CR, HOSTILE_SQL)

REQUIRED = {
    (SECURITY, 4608), (SYSTEM, 6005), (SECURITY, 4625), (SECURITY, 4776), (SECURITY, 4624), (SECURITY, 4672),
    (RCM, 1149), (LSM, 21), (LSM, 22), (SYSMON, 1), (SECURITY, 4688), (SYSMON, 3), (SYSMON, 10),
    (SYSMON, 11), (SYSMON, 22), (SECURITY, 4656), (SYSTEM, 7045), (SECURITY, 4697), (SECURITY, 4698),
    (SECURITY, 4648), (SECURITY, 5140), (POWERSHELL, 4104), (SECURITY, 4720), (SECURITY, 4732),
    (SECURITY, 4634), (SECURITY, 4647), (SECURITY, 1102), (SYSTEM, 104),
}


@pytest.fixture(scope="module")
def events() -> list[CanonicalEvent]:
    return incident()


@pytest.fixture(scope="module")
def written(events: list[CanonicalEvent], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_all(events, tmp_path_factory.mktemp("shapes"))


def read_documents(path: Path) -> list[Any]:
    """Every JSON document in a file: an array's items, JSON lines, or pretty objects back to back."""
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
    if text.lstrip().startswith("["):
        docs = json.loads(text)
        assert isinstance(docs, list)
        return docs
    decoder, docs, position = json.JSONDecoder(), [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return docs
        doc, position = decoder.raw_decode(text, position)
        docs.append(doc)


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def of(events: list[CanonicalEvent], channel: str, event_id: int) -> list[CanonicalEvent]:
    return [ev for ev in events if ev.channel == channel and ev.event_id == event_id]


# -- the incident itself -----------------------------------------------------------------------


def test_the_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    assert incident(7) == incident(7)
    assert incident(7) != incident(8)


def test_the_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    first = write_all(incident(11, noise=40), tmp_path / "a")
    second = write_all(incident(11, noise=40), tmp_path / "b")
    assert first.keys() == second.keys() == {spec.shape for spec in FILES}
    for shape in first:
        assert first[shape].name == second[shape].name
        assert first[shape].read_bytes() == second[shape].read_bytes(), shape


def test_every_required_event_type_is_present(events: list[CanonicalEvent]) -> None:
    present = {(ev.channel, ev.event_id) for ev in events}
    assert present >= REQUIRED, sorted(REQUIRED - present)


def test_events_are_sorted_utc_with_increasing_record_ids_per_log(events: list[CanonicalEvent]) -> None:
    assert all(ev.time.tzinfo is UTC for ev in events)
    assert [ev.time for ev in events] == sorted(ev.time for ev in events)
    last: dict[tuple[str, str], int] = {}
    for ev in events:
        log = (ev.computer, ev.channel)
        assert ev.record_id > last.get(log, 0)
        last[log] = ev.record_id


def test_noise_adds_exactly_the_requested_number_of_events() -> None:
    assert len(incident(3, noise=57)) - len(incident(3, noise=0)) == 57


def test_every_host_boots_before_anything_else_happens_on_it(events: list[CanonicalEvent]) -> None:
    for computer in {ev.computer for ev in events}:
        first_security = next(ev for ev in events if ev.computer == computer and ev.channel == SECURITY)
        first_system = next(ev for ev in events if ev.computer == computer and ev.channel == SYSTEM)
        assert (first_security.event_id, first_system.event_id) == (4608, 6005)


def test_the_spray_fails_against_three_accounts_from_one_address_then_logs_on_with_ntlm(
        events: list[CanonicalEvent]) -> None:
    failures = of(events, SECURITY, 4625)
    assert {ev.event_data["IpAddress"] for ev in failures} == {ATTACKER_IP}
    assert len({ev.event_data["TargetUserName"] for ev in failures}) >= 3
    assert {ev.event_data["SubStatus"] for ev in failures} == {"0xc000006a", "0xc0000064"}
    assert {(ev.event_data["LogonType"], ev.event_data["Status"], ev.event_data["FailureReason"])
            for ev in failures} == {("3", "0xc000006d", "%%2313")}
    success = next(ev for ev in of(events, SECURITY, 4624) if ev.event_data["IpAddress"] == ATTACKER_IP
                   and ev.event_data["LogonType"] == "3")
    assert success.time > max(ev.time for ev in failures)
    assert success.event_data["AuthenticationPackageName"] == "NTLM"
    assert success.event_data["LogonProcessName"] == "NtLmSsp "
    assert success.event_data["KeyLength"] == "0"


def test_the_4672_of_the_rdp_logon_carries_that_logon_target_logon_id(events: list[CanonicalEvent]) -> None:
    rdp = [ev for ev in of(events, SECURITY, 4624) if ev.event_data["LogonType"] == "10"]
    elevated = next(ev for ev in rdp if ev.event_data["ElevatedToken"] == "%%1842")
    privileges = [ev for ev in of(events, SECURITY, 4672)
                  if ev.event_data["SubjectLogonId"] == elevated.event_data["TargetLogonId"]
                  and ev.computer == elevated.computer]
    assert len(privileges) == 1
    assert privileges[0].time - elevated.time < timedelta(seconds=1)
    assert "\r\n\t\t\tSeDebugPrivilege" in privileges[0].event_data["PrivilegeList"]


def test_each_4688_names_its_creator_by_the_creator_new_process_id(events: list[CanonicalEvent]) -> None:
    created: dict[tuple[str, int], CanonicalEvent] = {}
    linked = 0
    for ev in of(events, SECURITY, 4688):
        parent = created.get((ev.computer, int(ev.event_data["ProcessId"], 16)))
        if parent is not None:
            assert parent.event_data["NewProcessName"] == ev.event_data["ParentProcessName"]
            linked += 1
        created[(ev.computer, int(ev.event_data["NewProcessId"], 16))] = ev
    assert linked >= 15


def test_sysmon_1_and_4688_describe_the_same_processes(events: list[CanonicalEvent]) -> None:
    audit = {(ev.computer, int(ev.event_data["NewProcessId"], 16)): ev for ev in of(events, SECURITY, 4688)}
    matched = 0
    for ev in of(events, SYSMON, 1):
        twin = audit.get((ev.computer, int(ev.event_data["ProcessId"])))
        if twin is None:
            continue
        matched += 1
        assert twin.event_data["NewProcessName"] == ev.event_data["Image"]
        assert int(twin.event_data["ProcessId"], 16) == int(ev.event_data["ParentProcessId"])
        assert twin.event_data["CommandLine"] == ev.event_data["CommandLine"]
        assert abs(twin.time - ev.time) < timedelta(seconds=2)
        assert ev.event_data["ProcessGuid"].startswith("{") and ev.event_data["LogonId"].startswith("0x")
    assert matched >= 12


def test_the_recon_tree_runs_under_alice_below_explorer(events: list[CanonicalEvent]) -> None:
    sysmon = of(events, SYSMON, 1)
    by_guid = {ev.event_data["ProcessGuid"]: ev for ev in sysmon}
    whoami = next(ev for ev in sysmon if ev.event_data["CommandLine"] == "whoami  /all")
    cmd = by_guid[whoami.event_data["ParentProcessGuid"]]
    explorer = by_guid[cmd.event_data["ParentProcessGuid"]]
    assert explorer.event_data["Image"].endswith("\\explorer.exe")
    assert {whoami.event_data["User"], cmd.event_data["User"]} == {"CORP\\alice"}
    siblings = {ev.event_data["CommandLine"] for ev in sysmon
                if ev.event_data["ParentProcessGuid"] == cmd.event_data["ProcessGuid"]}
    assert {"net  user /domain", "net  localgroup administrators", "ipconfig  /all"} <= siblings


def test_lsass_is_opened_by_the_comsvcs_minidump(events: list[CanonicalEvent]) -> None:
    access = of(events, SYSMON, 10)[0].event_data
    assert access["SourceImage"].endswith("\\rundll32.exe")
    assert access["TargetImage"] == "C:\\Windows\\system32\\lsass.exe"
    assert access["GrantedAccess"] == "0x1410"
    dumper = next(ev for ev in of(events, SYSMON, 1) if ev.event_data["ProcessGuid"] == access["SourceProcessGUID"])
    assert "comsvcs.dll, MiniDump" in dumper.event_data["CommandLine"]
    handle = of(events, SECURITY, 4656)[0].event_data
    assert handle["ObjectName"] == "\\Device\\HarddiskVolume2\\Windows\\System32\\lsass.exe"
    assert handle["AccessMask"] == "0x1010"


def test_the_script_block_is_split_in_two_parts_of_one_id(events: list[CanonicalEvent]) -> None:
    blocks = Counter(ev.event_data["ScriptBlockId"] for ev in of(events, POWERSHELL, 4104)
                     if ev.event_data["MessageTotal"] == "2")
    (script_id, count), = blocks.items()
    parts = sorted(ev.event_data["MessageNumber"] for ev in of(events, POWERSHELL, 4104)
                   if ev.event_data["ScriptBlockId"] == script_id)
    assert (count, parts) == (2, ["1", "2"])


def test_the_logs_are_cleared_at_the_end_of_the_attack_on_ws07(events: list[CanonicalEvent]) -> None:
    cleared = of(events, SECURITY, 1102)[0]
    assert cleared.user_data is not None
    assert cleared.user_data["LogFileCleared"]["SubjectUserName"] == "alice"
    system_cleared = of(events, SYSTEM, 104)[0]
    assert system_cleared.user_data == {"LogFileCleared": {
        "SubjectUserName": "alice", "SubjectDomainName": "CORP", "Channel": "System", "BackupPath": ""}}
    assert [ev for ev in events if ev.computer == cleared.computer and ev.channel == SYSTEM][-1] is system_cleared
    after = [ev for ev in events if ev.computer == cleared.computer and ev.channel == SECURITY
             and ev.time > cleared.time]
    for ev in after:
        wevtutil = ev.event_id == 4688 and ev.event_data["NewProcessName"].endswith("wevtutil.exe")
        logoff = ev.event_id in (4634, 4647) and ev.event_data["TargetUserName"] == "alice"
        service = ev.event_id in (4624, 4672) and ev.event_data.get("TargetLogonId", "0x3e7") == "0x3e7"
        assert wevtutil or logoff or service, ev


# -- the shapes --------------------------------------------------------------------------------


def test_every_file_holds_one_document_per_event(events: list[CanonicalEvent], written: dict[str, Path]) -> None:
    for shape, path in written.items():
        assert len(read_documents(path)) == len(events), shape


def test_some_files_are_gzipped_and_names_do_not_reveal_the_shape(written: dict[str, Path]) -> None:
    names = [path.name for path in written.values()]
    assert any(name.endswith(".gz") for name in names)
    assert all(name.startswith("export-") for name in names)


def test_hostile_strings_survive_verbatim_in_every_file(written: dict[str, Path]) -> None:
    for shape, path in written.items():
        values = set(strings_in(read_documents(path)))
        for needle in HOSTILE:
            assert any(needle in value for value in values), (shape, needle)
        assert any(len(value) == BLOAT_SIZE and value.startswith("function Invoke-Bloat") for value in values), shape


def test_evtx_json_types_values_like_the_rust_parser(events: list[CanonicalEvent]) -> None:
    process = evtx_json(of(events, SYSMON, 1)[0])["Event"]
    assert isinstance(process["EventData"]["ProcessId"], int)
    assert not process["EventData"]["ProcessGuid"].startswith("{")
    assert process["System"]["Security"] == {"#attributes": {"UserID": "S-1-5-18"}}
    connection = evtx_json(of(events, SYSMON, 3)[0])["Event"]["EventData"]
    assert connection["Initiated"] is True and isinstance(connection["DestinationPort"], int)
    logon = evtx_json(of(events, SECURITY, 4624)[0])["Event"]["EventData"]
    assert isinstance(logon["LogonType"], int) and logon["TargetLogonId"].startswith("0x")
    service = evtx_json(of(events, SYSTEM, 7045)[0])["Event"]["System"]
    assert service["EventID"] == {"#attributes": {"Qualifiers": 16384}, "#text": 7045}
    assert service["TimeCreated"]["#attributes"]["SystemTime"].endswith("Z")
    cleared = evtx_json(of(events, SECURITY, 1102)[0])["Event"]
    assert "EventData" not in cleared and "SubjectLogonId" in cleared["UserData"]["LogFileCleared"]


def test_the_attributes_variant_keeps_attributes_in_sibling_keys(events: list[CanonicalEvent]) -> None:
    doc = evtx_attributes_json(of(events, SYSTEM, 7045)[0])
    system = doc["Event"]["System"]
    assert doc["Event_attributes"] == {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"}
    assert system["EventID"] == 7045 and system["EventID_attributes"] == {"Qualifiers": 16384}
    assert "Provider" not in system and system["Provider_attributes"]["Name"] == "Service Control Manager"


def test_nxlog_time_is_local_and_its_timestamp_is_the_later_receive_time(events: list[CanonicalEvent]) -> None:
    ev = of(events, SECURITY, 4625)[0]
    doc = nxlog_json(ev)
    assert doc["EventTime"] == (ev.time - timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S")
    assert timedelta(seconds=1) <= _parse_iso(doc["@timestamp"]) - ev.time <= timedelta(seconds=4)
    assert doc["ProcessID"] != int(doc["ProcessId"], 16)
    lower = {nxlog_json(ev)["Channel"] for ev in of(events, SECURITY, 4688)}
    assert lower == {"security"}


def _parse_iso(value: str) -> Any:
    from datetime import datetime

    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_winlogbeat_names_the_forwarder_as_host_and_keeps_every_value_a_string(
        events: list[CanonicalEvent]) -> None:
    ev = of(events, SYSMON, 1)[0]
    doc = winlogbeat_raw(ev)
    assert doc["host"]["name"] == "wef01" and doc["winlog"]["computer_name"] == ev.computer
    assert doc["event"]["created"] != doc["@timestamp"]
    assert all(isinstance(value, str) for value in doc["winlog"]["event_data"].values())
    assert doc["winlog"]["event_id"] == "1" and doc["winlog"]["record_id"] == str(ev.record_id)


def test_module_processed_4688_moves_the_new_process_out_of_event_data(events: list[CanonicalEvent]) -> None:
    ev = next(ev for ev in of(events, SECURITY, 4688) if ev.event_data["NewProcessName"].endswith("whoami.exe"))
    doc = winlogbeat_module(ev)
    data = doc["winlog"]["event_data"]
    assert "NewProcessId" not in data and "NewProcessName" not in data
    assert doc["process"]["pid"] == int(ev.event_data["NewProcessId"], 16)
    assert data["ProcessId"] == ev.event_data["ProcessId"]
    assert doc["process"]["parent"]["pid"] == int(ev.event_data["ProcessId"], 16)
    assert doc["process"]["command_line"] == ev.event_data["CommandLine"]
    assert doc["winlog"]["logon"]["id"] == ev.event_data["SubjectLogonId"]


def test_module_processed_logons_move_the_source_and_name_the_logon_type(events: list[CanonicalEvent]) -> None:
    ev = next(ev for ev in of(events, SECURITY, 4624) if ev.event_data["LogonType"] == "10")
    doc = winlogbeat_module(ev)
    data = doc["winlog"]["event_data"]
    assert not {"IpAddress", "IpPort", "WorkstationName", "ProcessId", "ProcessName"} & data.keys()
    assert doc["source"] == {"ip": ATTACKER_IP, "port": int(ev.event_data["IpPort"]),
                             "domain": ev.event_data["WorkstationName"]}
    assert doc["process"]["pid"] == int(ev.event_data["ProcessId"], 16)
    assert doc["winlog"]["logon"] == {"id": ev.event_data["TargetLogonId"], "type": "RemoteInteractive"}
    privileges = winlogbeat_module(of(events, SECURITY, 4672)[0])["winlog"]["event_data"]["PrivilegeList"]
    assert isinstance(privileges, list) and all(" " not in p and "\t" not in p for p in privileges)


def test_module_processed_sysmon_events_carry_their_ids_in_ecs_fields(events: list[CanonicalEvent]) -> None:
    create = of(events, SYSMON, 1)[-1]
    doc = winlogbeat_module(create)
    assert doc["process"]["entity_id"] == create.event_data["ProcessGuid"]
    assert doc["process"]["parent"]["pid"] == int(create.event_data["ParentProcessId"])
    assert doc["@timestamp"] == create.event_data["UtcTime"].replace(" ", "T") + "Z"
    assert "sha256" in doc["process"]["hash"]
    assert not {"ProcessGuid", "ProcessId", "Image", "CommandLine", "UtcTime", "Hashes"} & doc["winlog"]["event_data"].keys()
    access = winlogbeat_module(of(events, SYSMON, 10)[0])
    assert access["process"]["executable"].endswith("rundll32.exe")
    assert access["winlog"]["event_data"]["TargetImage"].endswith("lsass.exe")
    assert access["winlog"]["event_data"]["GrantedAccess"] == "0x1410"
    assert winlogbeat_module(of(events, SYSMON, 11)[0])["file"]["path"].endswith("lsass.dmp")
    assert winlogbeat_module(of(events, SYSMON, 22)[0])["dns"]["question"]["name"] == "cdn-update.example.net"
    block = winlogbeat_module(of(events, POWERSHELL, 4104)[0])
    assert "event_data" not in block["winlog"] and block["powershell"]["total"] == 2


# -- scaling -----------------------------------------------------------------------------------


def test_scaled_chunks_are_the_scaled_events_rendered_one_by_one() -> None:
    n = len(scale_plan(5).base) * 51 + 7  # crosses into the second day
    events = list(scaled(5, n))
    assert len(events) == n
    for shape, render in (("nxlog", nxlog_json), ("evtxjson", evtx_json)):
        assert b"".join(scaled_chunks(5, n, shape)) == b"".join(json_line(render(ev)) for ev in events)


def test_scaled_events_never_repeat_a_record_or_a_process_guid() -> None:
    n = len(scale_plan(7).base) * 52
    events = list(scaled(7, n))
    records = [(ev.computer, ev.channel, ev.record_id) for ev in events]
    assert len(set(records)) == n
    guids = [(ev.event_data["ProcessGuid"]) for ev in events if ev.channel == SYSMON and ev.event_id == 1]
    assert len(set(guids)) == len(guids)
    per_log: dict[tuple[str, str], list[CanonicalEvent]] = {}
    for ev in events:
        per_log.setdefault((ev.computer, ev.channel), []).append(ev)
    for log in per_log.values():
        log.sort(key=lambda ev: ev.time)
        ids = [ev.record_id for ev in log]
        assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_generate_writes_the_demo_files_and_a_scaled_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generate_main([str(tmp_path / "demo"), "--noise", "10"]) == 0
    assert len(list((tmp_path / "demo").iterdir())) == len(FILES)
    assert generate_main([str(tmp_path / "big"), "--scale", "1000", "--shape", "evtxjson"]) == 0
    (path,) = (tmp_path / "big").iterdir()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1000 and all(json.loads(line)["Event"]["System"]["EventRecordID"] for line in lines)
    assert "events/s" in capsys.readouterr().out
