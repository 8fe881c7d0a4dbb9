"""Property tests: whatever an analyst types or an evidence file holds, the engine answers cleanly.

Filter text either compiles to SQL that runs, or raises FilterError. Any JSON lines file, whatever
its documents, is ingested without crashing and every line is accounted for: stored or skipped.
"""

from __future__ import annotations

import json
import string
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import evtx_doc, ingest_into, nxlog_doc, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Case, views
from engine.filters import ALIASES, FilterError, compile_filter
from engine.ingest.normalise import canonical_ip
from engine.schema import EVENT_COLUMN_NAMES

# Modest, repeatable runs: the suite stays fast and a failure reproduces on every machine.
PROFILE = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Each example of these builds a case file: fewer of them.
INGEST_PROFILE = settings(PROFILE, max_examples=25)


@pytest.fixture(scope="module")
def small_case(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("props")
    docs = [
        evtx_doc(1, 4624, "2020-09-20T10:00:00Z", data={"TargetUserName": "alice", "LogonType": "3",
                                                        "IpAddress": "10.0.0.5", "TargetLogonId": "0x3e7"}),
        evtx_doc(2, 4688, "2020-09-20T10:01:00Z", data={"NewProcessName": "C:\\cmd.exe", "CommandLine": "cmd /c x",
                                                        "ProcessId": "0x10", "NewProcessId": "0x20"}),
        nxlog_doc(3, 4625, "2020-09-20 06:02:00", "2020-09-20 06:02:01", "2020-09-20T10:02:01Z",
                  data={"TargetUserName": "bob", "ProcessId": "0x24c", "ProcessID": 612, "Status": "0xc000006d"}),
    ]
    ingest_into(d / "case.duckdb", [write_jsonl(d / "a.jsonl", docs)])
    case = Case(d / "case.duckdb")
    yield case
    case.close()


def run_filter(case: Case, text: str) -> None:
    """Compile and run `text`; anything but FilterError propagates and fails the test."""
    cur = case.cursor()
    try:
        compiled = compile_filter(text, views.field_names(cur))
    except FilterError as exc:
        assert 0 <= exc.position <= len(text)
        assert exc.caret(text).startswith(text)
        return
    cur.execute(f"SELECT count(*) FROM events e WHERE {compiled.sql}", compiled.params).fetchall()


# -- filter text ------------------------------------------------------------------------------------
FIELDS = sorted(set(EVENT_COLUMN_NAMES) | set(ALIASES) | {"after", "before", "ts", "TargetUserName", "ProcessId",
                                                           "ProcessID", "processid", "usr", "Nope", "@timestamp"})
SYNTAX = ':,-"*<>=\\ ' + "'"
times = st.datetimes(min_value=datetime(1700, 1, 1), max_value=datetime(2200, 1, 1))
offsets = st.sampled_from(["", "Z", "+00:00", "+02:00", "-04:30", "+14:00"])
values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64).map(str),
    st.integers(min_value=0, max_value=2**64).map(hex),
    st.builds(lambda t, o: t.isoformat() + o, times, offsets),
    st.text(alphabet=string.ascii_letters + string.digits + SYNTAX + "%_é\u00a0\t", max_size=12),
    st.sampled_from(["alice", '"net user"', '"x\' OR 1=1 --"', "*", "**", '""', "0x", "-", "1e3", "NaN"]),
)
terms = st.builds(
    lambda neg, field, op, vals: f"{'-' if neg else ''}{field}:{op}{','.join(vals)}",
    st.booleans(), st.sampled_from(FIELDS), st.sampled_from(["", ">=", "<=", ">", "<", "="]),
    st.lists(values, min_size=1, max_size=3))
filter_texts = st.one_of(
    st.lists(st.one_of(terms, values), min_size=0, max_size=4).map(" ".join),
    st.text(max_size=40),
    st.text(alphabet=string.ascii_letters[:6] + SYNTAX + "0123456789", max_size=30),
)


@PROFILE
@given(text=filter_texts)
def test_any_filter_text_compiles_to_runnable_sql_or_raises_filter_error(small_case: Case, text: str) -> None:
    run_filter(small_case, text)


@pytest.mark.parametrize("text", ["eid:,", "user:,,", "ProcessId:,", "-host:,"])
def test_a_value_of_only_commas_is_a_filter_error(small_case: Case, text: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(text, views.field_names(small_case.cursor()))


@PROFILE
@given(text=st.text(max_size=60))
def test_any_unicode_text_compiles_or_raises_filter_error(text: str) -> None:
    try:
        compiled = compile_filter(text, ["TargetUserName", "ProcessId", "ProcessID"])
    except FilterError:
        return
    assert compiled.sql.count("?") == len(compiled.params)


@pytest.mark.parametrize("text", ["after:0001-01-01T00:00+01:00", "before:9999-12-31T23:59-01:00",
                                  "ts:>=0001-01-01T00:00:00+05:00"])
def test_a_time_at_the_edge_of_the_calendar_is_a_filter_error_or_a_bound(small_case: Case, text: str) -> None:
    run_filter(small_case, text)


@pytest.mark.parametrize("text", ["eid:0x" + "f" * 40, "TargetUserName:>" + "9" * 45, "logon_id:" + "1" * 40])
def test_a_number_too_wide_for_any_column_is_a_filter_error_or_matches_nothing(small_case: Case, text: str) -> None:
    run_filter(small_case, text)


# -- documents through ingest ---------------------------------------------------------------------------
json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["0x3e7", "-", "", "2020-09-20T10:00:00Z", "2020-09-20 10:00:00", "1601-01-01T00:00:00Z",
                     "0001-01-01 00:00:00", "9999-12-31T23:59:59.9999999Z", "Security", "security",
                     "Microsoft-Windows-Sysmon/Operational", "::ffff:10.0.0.1", "{ABC}", "%%1833"]),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=10), children, max_size=5)),
    max_leaves=20)
HOT_KEYS = ["TargetUserName", "SubjectLogonId", "TargetLogonId", "LogonType", "IpAddress", "IpPort", "Status",
            "ProcessId", "NewProcessId", "GrantedAccess", "UtcTime", "PrivilegeList", "User", "LogonId",
            "ScriptBlockId", "MessageNumber", "ProcessGuid", "CommandLine"]
event_data = st.dictionaries(st.one_of(st.sampled_from(HOT_KEYS), st.text(max_size=8)), json_values, max_size=6)


def _evtx_like(rid: Any, eid: Any, when: Any, channel: Any, data: Any) -> dict[str, Any]:
    return {"Event": {"System": {"EventID": eid, "EventRecordID": rid, "Channel": channel, "Computer": "H",
                                 "TimeCreated": {"#attributes": {"SystemTime": when}}}, "EventData": data}}


def _ecs_like(rid: Any, eid: Any, when: Any, channel: Any, data: Any) -> dict[str, Any]:
    return {"@timestamp": when, "event": {"code": eid}, "winlog": {"record_id": rid, "event_id": eid,
            "channel": channel, "computer_name": "H", "event_data": data, "logon": {"id": rid, "type": when}},
            "process": {"pid": rid, "executable": when}, "user": {"name": data}}


def _nxlog_like(rid: Any, eid: Any, when: Any, channel: Any, data: Any) -> dict[str, Any]:
    doc = {"EventID": eid, "RecordNumber": rid, "Channel": channel, "Hostname": "H", "EventTime": when,
           "EventReceivedTime": when, "@timestamp": when}
    if isinstance(data, dict):
        doc.update(data)
    return doc


def _wlb6_like(rid: Any, eid: Any, when: Any, channel: Any, data: Any) -> dict[str, Any]:
    return {"@timestamp": when, "event_id": eid, "log_name": channel, "record_number": rid, "event_data": data}


shaped = st.builds(
    lambda make, *args: make(*args),
    st.sampled_from([_evtx_like, _ecs_like, _nxlog_like, _wlb6_like]),
    json_values, st.one_of(json_values, st.integers(0, 70000)), json_values,
    st.one_of(json_values, st.sampled_from(["Security", "Microsoft-Windows-Sysmon/Operational"])),
    st.one_of(event_data, json_values))
wrapped = shaped.map(lambda d: {"_index": "x", "_id": "1", "_source": d})
garbage = st.binary(max_size=60).map(lambda b: b"{" + b.replace(b"\n", b" ").replace(b"\r", b" "))
blank = st.sampled_from([b"", b"   ", b"\t", b" \r"])
lines = st.lists(st.one_of(
    shaped.map(lambda d: json.dumps(d).encode()),
    wrapped.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    garbage,
    blank,
), min_size=0, max_size=12)
FIRST = json.dumps(evtx_doc(1, 4624, "2020-09-20T10:00:00Z", data={"TargetUserName": "alice"})).encode()


@INGEST_PROFILE
@given(body=lines)
def test_any_json_lines_file_is_ingested_and_every_line_is_stored_or_skipped(body: list[bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="ashiato-prop-") as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"\n".join([FIRST, *body]) + b"\n")
        nonblank = 1 + sum(1 for line in body if line.strip())
        # A line of only blanks may be passed over silently or reported as not JSON; an empty one is passed over.
        nonempty = 1 + sum(1 for line in body if line.removesuffix(b"\r"))
        report = ingest_into(Path(tmp) / "case.duckdb", [path], dedupe=False)
        (res,) = report.files
        assert nonblank <= res.records + res.skipped <= nonempty, (res.records, res.skipped, res.problems)
        assert res.records <= nonblank
        with Case(Path(tmp) / "case.duckdb", read_only=True) as case:
            cur = case.cursor()
            assert cur.execute("SELECT count(*) FROM events").fetchall()[0][0] == res.records
            assert cur.execute("SELECT count(*) FROM event_data").fetchall()[0][0] == res.records


@INGEST_PROFILE
@given(docs=st.lists(shaped, min_size=1, max_size=8))
def test_any_json_array_is_ingested_and_every_element_is_stored_or_skipped(docs: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory(prefix="ashiato-prop-") as tmp:
        path = Path(tmp) / "events.json"
        path.write_text(json.dumps(docs, indent=2))
        (res,) = ingest_into(Path(tmp) / "case.duckdb", [path], dedupe=False).files
        assert res.records + res.skipped == len(docs)


@INGEST_PROFILE
@given(when=st.datetimes(min_value=datetime(1601, 1, 1), max_value=datetime(9999, 12, 30)),
       offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_an_evtx_time_with_any_offset_is_stored_as_that_instant_in_utc(when: datetime, offset_minutes: int) -> None:
    tz = timezone(timedelta(minutes=offset_minutes))
    aware = when.replace(tzinfo=tz)
    try:
        expected = aware.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return
    with tempfile.TemporaryDirectory(prefix="ashiato-prop-") as tmp:
        path = write_jsonl(Path(tmp) / "e.jsonl", [evtx_doc(1, 4624, aware.isoformat())])
        ingest_into(Path(tmp) / "case.duckdb", [path])
        with Case(Path(tmp) / "case.duckdb", read_only=True) as case:
            assert case.cursor().execute("SELECT ts FROM events").fetchall() == [(expected,)]


@pytest.mark.parametrize(("written", "stored"), [
    ("0:0:0:0:0:0:0:1", "::1"),
    ("FE80:0000:0000:0000:3816:B2EE:1B9B:324B", "fe80::3816:b2ee:1b9b:324b"),
    ("::ffff:10.0.0.5", "10.0.0.5"),
    ("0:0:0:0:0:ffff:a00:5", "10.0.0.5"),
    ("fe80::1%12", "fe80::1%12"),
    # a dotted IPv4 part stays readable
    ("::10.0.0.5", "::10.0.0.5"),
    ("FE80::5EFE:10.0.0.5", "fe80::5efe:10.0.0.5"),
    ("10.0.0.5", "10.0.0.5"),
    ("not an address", "not an address"),
])
def test_an_address_is_stored_in_one_spelling(written: str, stored: str) -> None:
    assert canonical_ip(written) == stored


@PROFILE
@given(st.text(alphabet="0123456789abcdefABCDEF:.%", max_size=45) | st.ip_addresses().map(str))
def test_canonical_addresses_never_fail_and_are_stable(text: str) -> None:
    once = canonical_ip(text)
    assert canonical_ip(once) == once
