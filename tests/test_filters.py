"""The filter language: each filter, compiled to SQL and run against a small case, selects exactly
the events an analyst would expect; mistakes are reported with a position and a suggestion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import SYSMON, evtx_doc, ingest_into, nxlog_doc, write_jsonl

from engine import Case, views
from engine.filters import FilterError, compile_filter

# Events of the small case, by record id (unique across the case, so it names the event).
DOCS: list[dict[str, Any]] = [
    evtx_doc(1, 4624, "2020-09-20T09:59:00.000000Z", host="DC01.corp.local", data={
        "TargetUserName": "alice", "TargetDomainName": "CORP", "LogonType": "3", "IpAddress": "10.0.0.5",
        "IpPort": "49152", "TargetLogonId": "0x3E7", "LogonProcessName": "NtLmSsp ",
        "AuthenticationPackageName": "NTLM", "WorkstationName": "KALI"}),
    evtx_doc(2, 4624, "2020-09-20T10:00:00.000000Z", host="WS01", data={
        "TargetUserName": "Bob", "LogonType": "5", "IpAddress": "-", "TargetLogonId": "0x3e4"}),
    evtx_doc(3, 4625, "2020-09-20T10:05:00.000000Z", host="WS01", data={
        "TargetUserName": "alice", "LogonType": "3", "IpAddress": "::ffff:10.0.0.9",
        "Status": "0xC000006D", "SubStatus": "0xc000006a"}),
    evtx_doc(4, 4688, "2020-09-20T10:10:00.000000Z", host="WS01", data={
        "SubjectUserName": "bob", "SubjectLogonId": "0x1f2e3", "NewProcessName": "C:\\Windows\\System32\\whoami.exe",
        "CommandLine": "whoami /all", "ProcessId": "0x1a4", "NewProcessId": "0x2b0",
        "ParentProcessName": "C:\\Windows\\System32\\cmd.exe", "TokenElevationType": "%%1936"}),
    evtx_doc(5, 1, "2020-09-20T10:11:00.000000Z", host="WS01", channel=SYSMON, provider="Microsoft-Windows-Sysmon",
             data={"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": 'cmd.exe /c "net user"',
                   "ParentImage": "C:\\Windows\\explorer.exe", "ProcessId": "1234", "ParentProcessId": "1000",
                   "User": "CORP\\carol", "LogonId": "0x1f2e3", "SourceIp": "fe80::77%10",
                   "ProcessGuid": "{11111111-2222-3333-4444-555555555555}"}),
    evtx_doc(6, 10, "2020-09-20T10:12:00.000000Z", host="WS01", channel=SYSMON, provider="Microsoft-Windows-Sysmon",
             data={"SourceImage": "C:\\Users\\carol\\mimikatz.exe", "TargetImage": "C:\\Windows\\system32\\lsass.exe",
                   "GrantedAccess": "0x1010", "SourceProcessId": "4321", "TargetProcessId": "640"}),
    # NXLog: ProcessId (event data, hex) and ProcessID (NXLog's own metadata) side by side.
    # EventTime is local (UTC-4 here): 06:20 local is 10:20 UTC.
    nxlog_doc(7, 4624, "2020-09-20 06:20:00", "2020-09-20 06:20:02", "2020-09-20T10:20:02.000Z", data={
        "TargetUserName": "svc_sql", "LogonType": "2", "ProcessId": "0x24c", "ProcessID": 612}),
    evtx_doc(8, 4624, "2020-09-20T10:30:00.000000Z", host="WS01", data={
        "TargetUserName": "o'brien", "LogonType": "10", "IpAddress": "FE80:0:0:0:3816:B2EE:1B9B:324B"}),
    evtx_doc(9, 4688, "2020-09-20T10:40:00.000000Z", host="WS01", data={
        "SubjectUserName": "bob", "NewProcessName": "C:\\Windows\\System32\\cmd.exe",
        "CommandLine": "copy 100%_done.txt x", "ProcessId": "0x2b0", "NewProcessId": "0x300"}),
]
ALL = {1, 2, 3, 4, 5, 6, 7, 8, 9}


@pytest.fixture(scope="module")
def filter_case(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("filters")
    evtx_lines = write_jsonl(d / "events.jsonl", [doc for doc in DOCS if "Event" in doc])
    nxlog_lines = write_jsonl(d / "nxlog.json", [doc for doc in DOCS if "Event" not in doc])
    case_path = d / "case.duckdb"
    # Two ingests: the case grows, and the second one's fields join the first one's.
    first = ingest_into(case_path, [evtx_lines])
    second = ingest_into(case_path, [nxlog_lines])
    assert first.records + second.records == len(DOCS)
    case = Case(case_path)
    yield case
    case.close()


def matches(case: Case, text: str) -> set[int]:
    """Record ids of the events the filter selects, running the compiled SQL as the views do."""
    cur = case.cursor()
    compiled = compile_filter(text, views.field_names(cur))
    rows = cur.execute(f"SELECT record_id FROM events e WHERE {compiled.sql}", compiled.params).fetchall()
    return {int(r[0]) for r in rows}


CASES: list[tuple[str, set[int]]] = [
    # typed columns, lists, negation
    ("event_id:4624", {1, 2, 7, 8}),
    ("event_id:4624,4625", {1, 2, 3, 7, 8}),
    ("eid:4624 -logon_type:5", {1, 7, 8}),
    ("-eid:4624,4625", {4, 5, 6, 9}),
    ("channel:security", {1, 2, 3, 4, 7, 8, 9}),
    ("channel:microsoft-windows-sysmon/operational", {5, 6}),
    # aliases
    ("user:alice", {1, 3}),
    ("user:BOB", {2, 4, 9}),
    ("user:carol", {5}),
    ("host:ws01", {2, 3, 4, 5, 6, 8, 9}),
    ("host:dc01*", {1}),
    # as the timeline shows them: a host without its domain, a channel by its short name
    ("host:srv02", {7}),
    ("host:SRV02.corp.local", {7}),
    ("host:srv0", set()),
    ("host:WS01.corp.local", {2, 3, 4, 5, 6, 8, 9}),  # the same host logged by its bare name
    ("host:SRV02.other.domain", set()),  # not the same name in another domain
    ("host:10", set()),  # an address-like value stays whole
    ("channel:Sysmon", {5, 6}),
    ("channel:sysmon/operational", {5, 6}),
    ("ip:10.0.0.5", {1}),
    ("ip:10.0.0.9", {3}),
    # an address in any spelling finds it in every other
    ("ip:::ffff:10.0.0.9", {3}),
    ("ip:fe80::3816:b2ee:1b9b:324b", {8}),
    ("ip:FE80:0000:0000:0000:3816:B2EE:1B9B:324B", {8}),
    ("ip:fe80::77", {5}),
    ("ip:fe80::77%10", {5}),
    ("ip:fe80::77%11", set()),
    ("image:*lsass.exe", {6}),
    ("image:*explorer.exe", {5}),
    ("image:*\\cmd.exe", {4, 5, 9}),
    # a bare file name matches the end of an image path, as the timeline shows it; not a part of one
    ("image:cmd.exe", {4, 5, 9}),
    ("image:CMD.EXE", {4, 5, 9}),
    ("process:whoami.exe", {4}),
    ("target:lsass.exe", {6}),
    ("image:md.exe", set()),
    ("-image:cmd.exe", {1, 2, 3, 6, 7, 8}),
    # DOMAIN\user, as the user column shows it, matches the pair
    ("user:CORP\\carol", {5}),
    ("user:corp\\ALICE", {1}),
    ("user:OTHER\\carol", set()),
    ('cmd:"whoami /all"', {4}),
    ("cmd:whoami*", {4}),
    # numbers: comparisons, hex, decimal
    ("logon_type:>=5", {2, 8}),
    ("logon_type:<3", {7}),
    ("logon_type:>3", {2, 8}),
    ("logon_type:<=3", {1, 3, 7}),
    ("status:0xc000006d", {3}),
    ("status:3221225581", {3}),
    ("substatus:0xC000006A", {3}),
    ("granted_access:0x1010", {6}),
    ("access:>=0x1000", {6}),
    ("access:1f1010,0x1010", {6}),
    ("access:1fffff", set()),

    ("target_logon_id:999", {1}),
    ("logon_id:0x3e7", {1}),
    ("logon_id:0x1f2e3", {4, 5}),
    # GUIDs as the documents spell them: braces, any case
    ("guid:{11111111-2222-3333-4444-555555555555}", {5}),
    ("guid:11111111-2222-3333-4444-555555555555", {5}),
    ("process_guid:{11111111-2222-3333-4444-555555555555}", {5}),
    ("process_pid:0x2b0", {4}),
    ("pid:688", {4}),
    ("parent_pid:420", {4}),
    ("process_pid:>=1000", {5, 6}),
    # time bounds: UTC unless an offset is given
    ("after:2020-09-20T10:00", ALL - {1}),
    ("before:2020-09-20T10:00", {1}),
    ("after:2020-09-20T10:00:00Z before:2020-09-20T10:10", {2, 3}),
    ("after:2020-09-20T12:00+02:00", ALL - {1}),
    ("before:2020-09-20T06:05-04:00", {1, 2}),
    ("after:2020-09-20T10:20 before:2020-09-20T10:21", {7}),
    ("ts:>=2020-09-20T10:30", {8, 9}),
    # free text: bare words and quoted text, anywhere in the event
    ('"net user"', {5}),
    ("mimikatz", {6}),
    ("MIMIKATZ.exe", {6}),
    ("svc_sql", {7}),
    ("4625", {3}),
    # wildcards: only * is one; % and _ are literal characters
    ("cmd:*100%_*", {9}),
    ("cmd:*0%d*", set()),
    ("cmd:copy_100*", set()),
    ("user:o*", {8}),
    ("user:o'brien", {8}),
    # original field names, case-folded; NXLog's ProcessId and ProcessID both kept
    ("TargetUserName:alice", {1, 3}),
    ("targetusername:ALICE", {1, 3}),
    ("TokenElevationType:%%1936", {4}),
    ("ProcessId:0x24c", {7}),
    ("ProcessID:612", {7}),
    ("ProcessId:612", set()),
    ("processid:612", {7}),
    ("processid:0x24C", {7}),
    ("ProcessId:1234", {5}),
    # the same number in the other base: 4688's ProcessId is hex, a Sysmon one decimal
    ("ProcessId:420", {4}),
    ("ProcessId:0x4d2", {5}),
    ("ProcessID:>600", {7}),
    ("processid:>1000", {5}),
    ("GrantedAccess:0x1010", {6}),
    ("ParentImage:*explorer*", {5}),
    # injection attempts are values, nothing more
    ("user:\"x' OR 1=1 --\"", set()),
    ("\"'; DROP TABLE events; --\"", set()),
    ("host:\"WS01' OR '1'='1\"", set()),
    ("TargetUserName:\"') OR 1=1 --\"", set()),
    ("cmd:\"%\"", set()),
    # an empty filter matches everything
    ("", ALL),
    ("   ", ALL),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] or "<empty>" for c in CASES])
def test_filter_selects_exactly_the_expected_events(filter_case: Case, text: str, expected: set[int]) -> None:
    assert matches(filter_case, text) == expected


def test_injection_attempts_leave_the_case_intact(filter_case: Case) -> None:
    matches(filter_case, "\"'; DROP TABLE events; --\" user:\"x'); DELETE FROM events; --\"")
    assert filter_case.event_count() == len(DOCS)


def test_no_user_text_reaches_the_sql(filter_case: Case) -> None:
    names = views.field_names(filter_case.cursor())
    for text in ["user:\"x' OR 1=1 --\"", "TargetUserName:\"zz_marker_zz\"", "zz_marker_zz", "cmd:*zz_marker_zz*"]:
        compiled = compile_filter(text, names)
        assert "zz_marker_zz" not in compiled.sql and "OR 1=1" not in compiled.sql


def test_resolve_returns_matching_positions_in_timeline_order(filter_case: Case) -> None:
    cur = filter_case.cursor()
    view = views.resolve(cur, "eid:4624")
    assert view.count == 4
    ids = [r["record_id"] for r in views.window(cur, view, 0, 10)]
    assert ids == [1, 2, 7, 8]
    assert list(view.positions) == sorted(view.positions)


def test_query_returns_rows_in_timeline_order_with_nxlog_time_in_utc(filter_case: Case) -> None:
    rows = views.query(filter_case.cursor(), "after:2020-09-20T10:15")
    assert [r["record_id"] for r in rows] == [7, 8, 9]
    assert rows[0]["ts"].isoformat() == "2020-09-20T10:20:00"


# -- mistakes ---------------------------------------------------------------------------------------
def test_unknown_field_names_the_field_suggests_the_closest_and_points_at_it(filter_case: Case) -> None:
    names = views.field_names(filter_case.cursor())
    text = "eid:4624 usr:bob"
    with pytest.raises(FilterError) as info:
        compile_filter(text, names)
    err = info.value
    assert 'unknown field "usr"' in str(err)
    assert err.suggestion == "user"
    assert 'did you mean "user"?' in str(err)
    assert err.position == text.index("usr")
    caret_line = err.caret(text).splitlines()[1]
    assert caret_line.index("^") == text.index("usr")


def test_unknown_original_field_suggests_the_original_name(filter_case: Case) -> None:
    names = views.field_names(filter_case.cursor())
    with pytest.raises(FilterError) as info:
        compile_filter("TargetUsrName:alice", names)
    assert info.value.suggestion == "TargetUserName"


def test_unclosed_quote_is_reported_where_the_quote_opens() -> None:
    text = 'eid:4624 user:"bob'
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    assert "unclosed quote" in str(info.value)
    assert info.value.position == text.index('"')


def test_text_where_a_number_is_expected_is_reported() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter("event_id:abc")
    assert '"abc" is not an event ID (a number from 0 to 65535)' in str(info.value)
    assert info.value.position == 0
    with pytest.raises(FilterError) as info:
        compile_filter("eid:4624 logon_type:abc")
    assert '"abc" is not a number' in str(info.value)
    assert info.value.position == 9


@pytest.mark.parametrize("text", [
    "after:yesterday", "before:2020-13-45", "ts:>=soon", "eid:", "user:", "logon_type:>=x",
    "ProcessId:>abc", "after:2020-01-01,2020-02-01",
])
def test_malformed_terms_raise_filter_errors_with_a_position(filter_case: Case, text: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text, views.field_names(filter_case.cursor()))
    assert 0 <= info.value.position <= len(text)


@pytest.mark.parametrize("text", ["eid:47244640256", "event_id:-1", "id:70000", "eid:4624,99999"])
def test_a_number_no_event_id_can_be_is_an_error_not_an_empty_result(text: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    assert "is not an event ID (0 to 65535)" in str(info.value) and info.value.position == 0


@pytest.mark.parametrize("text", ["after:2020-09-20 10:00", "before:2020-09-20 10:00:05Z user:bob"])
def test_a_time_split_from_its_date_by_a_space_is_an_error_that_shows_the_fix(text: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    key = text.split(":", 1)[0]
    assert f"write {key}:2020-09-20T10:00" in str(info.value)
    assert info.value.position == text.index("10:00")


def test_a_bare_access_mask_of_digits_is_refused_as_ambiguous() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter("access:1410")
    assert 'could be decimal or hex; access masks are written in hex: 0x1410' in str(info.value)


@pytest.mark.parametrize("text", ["eid:4624 OR eid:4625", "eid:4624 AND user:bob", "(eid:4624)", "user:bob NOT"])
def test_boolean_words_and_parentheses_are_errors_not_searches(text: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    assert "ANDed" in str(info.value)


@pytest.mark.parametrize("text", ['"OR"', '-"(x)"', "or", "mimikatz.exe"])
def test_quoted_or_lower_case_words_are_still_searches(text: str) -> None:
    assert compile_filter(text).reads_documents


def test_a_quoted_time_with_a_space_is_fine(filter_case: Case) -> None:
    assert matches(filter_case, 'after:"2020-09-20 10:30"') == {8, 9}


def test_views_query_raises_filter_error_for_a_bad_filter(filter_case: Case) -> None:
    with pytest.raises(FilterError):
        views.query(filter_case.cursor(), "usr:bob")


def test_a_quoted_value_may_contain_escaped_quotes() -> None:
    compiled = compile_filter(r'cmd:"say \"hi\""')
    assert compiled.params == ['say "hi"']


def test_every_original_field_of_one_ingest_is_a_filter_field(tmp_path: Path) -> None:
    evtx_lines = write_jsonl(tmp_path / "events.jsonl", [
        evtx_doc(1, 4624, "2020-09-20T09:00:00Z", data={"TargetUserName": "alice", "LogonType": "3"}),
        evtx_doc(2, 4624, "2020-09-20T09:01:00Z", data={"TargetUserName": "bob", "ElevatedToken": "%%1842"}),
    ])
    nxlog_lines = write_jsonl(tmp_path / "nxlog.json", [nxlog_doc(
        7, 4624, "2020-09-20 06:20:00", "2020-09-20 06:20:02", "2020-09-20T10:20:02.000Z",
        data={"TargetUserName": "svc_sql", "ProcessId": "0x24c", "ProcessID": 612})])
    case_path = tmp_path / "case.duckdb"
    ingest_into(case_path, [evtx_lines, nxlog_lines])
    with Case(case_path) as case:
        names = set(views.field_names(case.cursor()))
        assert {"TargetUserName", "LogonType", "ElevatedToken", "ProcessId", "ProcessID"} <= names
        assert matches(case, "ProcessID:612") == {7}
        assert matches(case, "ElevatedToken:%%1842") == {2}


def test_field_names_of_the_case_include_original_fields(filter_case: Case) -> None:
    names = set(views.field_names(filter_case.cursor()))
    assert {"TargetUserName", "ProcessId", "ProcessID", "GrantedAccess"} <= names



def test_a_privilege_matches_any_name_of_the_list(tmp_path: Path) -> None:
    doc = evtx_doc(1, 4672, "2020-09-20T10:00:00Z", data={
        "SubjectUserName": "adm", "PrivilegeList": "SeSecurityPrivilege\r\n\t\t\tSeDebugPrivilege\r\n\t\t\tSeTcbPrivilege"})
    case_path = tmp_path / "case.duckdb"
    ingest_into(case_path, [write_jsonl(tmp_path / "a.jsonl", [doc])])
    with Case(case_path) as case:
        assert matches(case, "privileges:sedebugprivilege") == {1}
        assert matches(case, "privileges:SeTcbPrivilege,SeBackupPrivilege") == {1}
        assert matches(case, "privileges:SeBackupPrivilege") == set()
        assert matches(case, "privileges:SeDebug") == set()


def test_user_matches_the_account_the_user_column_shows_and_subject_user_the_caller(tmp_path: Path) -> None:
    from engine.summary import user_of

    docs = [evtx_doc(1, 4625, "2020-09-20T10:00:00Z", host="WS01", data={  # Administrator tried Guest
                "SubjectUserName": "Administrator", "TargetUserName": "Guest", "LogonType": "2"}),
            evtx_doc(2, 4625, "2020-09-20T10:01:00Z", host="WS01", data={
                "SubjectUserName": "-", "TargetUserName": "Administrator", "LogonType": "3"}),
            evtx_doc(3, 4688, "2020-09-20T10:02:00Z", host="WS01", data={  # no target: the caller is shown
                "SubjectUserName": "Administrator", "NewProcessName": "C:\\x.exe"}),
            evtx_doc(4, 4732, "2020-09-20T10:03:00Z", host="WS01", data={  # a group change: its member
                "SubjectUserName": "Administrator", "MemberName": "CN=mallory", "TargetUserName": "Administrators"})]
    path = tmp_path / "case.duckdb"
    ingest_into(path, [write_jsonl(tmp_path / "e.jsonl", docs)])
    with Case(path) as case:
        cur = case.cursor().execute("SELECT * FROM events")
        names = [d[0] for d in cur.description]
        shown = {int(r["record_id"]): user_of(r) for r in (dict(zip(names, row, strict=True)) for row in cur.fetchall())}
        expected = {rid for rid, user in shown.items() if user.rpartition("\\")[2].lower() == "administrator"}
        assert matches(case, "user:Administrator") == expected == {2, 3}
        assert matches(case, "subject_user:Administrator") == {1, 3, 4}
        assert matches(case, "target_user:Guest") == {1}
