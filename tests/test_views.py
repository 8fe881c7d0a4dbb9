"""Timeline views: the time span a status bar shows skips records that carry no real time."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from engine import Case, views
from engine.ingest import ingest


def _event(record_id: int, when: str) -> str:
    return json.dumps({"Event": {"System": {
        "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing"}},
        "EventID": 4624, "EventRecordID": record_id, "Channel": "Security", "Computer": "WS01",
        "TimeCreated": {"#attributes": {"SystemTime": when}}}, "EventData": {"LogonType": 3}}})


def test_the_time_span_of_a_view_skips_filetime_zero_and_missing_times(tmp_path: Path) -> None:
    src = tmp_path / "events.jsonl"
    src.write_text("\n".join([
        _event(1, "1601-01-01T00:00:00.000000Z"),  # FILETIME 0: no time, sorts last
        _event(2, "2024-03-12T08:00:00.000000Z"),
        _event(3, "2024-03-12T09:30:00.000000Z"),
        _event(4, "not a time"),  # no time: sorts last
    ]) + "\n")
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [src])
        cur = case.cursor()
        everything = views.resolve(cur, "")
        assert everything.count == 4
        order = [r[0] for r in cur.execute("SELECT record_id FROM events ORDER BY pos").fetchall()]
        assert order[:2] == [2, 3] and set(order[2:]) == {1, 4}  # the timeless after every dated event
        assert views.time_span(cur, everything) == (datetime(2024, 3, 12, 8, 0), datetime(2024, 3, 12, 9, 30))
        only_late = views.resolve(cur, "after:2024-03-12T09:00")
        assert views.time_span(cur, only_late) == (datetime(2024, 3, 12, 9, 30), datetime(2024, 3, 12, 9, 30))
        nothing_real = views.resolve(cur, "record_id:1,4")
        assert views.time_span(cur, nothing_real) == (None, None)


def test_the_failed_logon_and_log_cleared_presets_hold_only_what_their_titles_say(tmp_path: Path) -> None:
    from conftest import evtx_doc, write_jsonl

    from tui.keymap import load_keymap

    t = "2024-03-12T08:00:00Z"
    docs = [
        evtx_doc(1, 4625, t, data={"TargetUserName": "a", "Status": "0xc000006d"}),
        evtx_doc(2, 4776, t, data={"TargetUserName": "b", "Status": "0xc000006a"}),
        evtx_doc(3, 4776, t, data={"TargetUserName": "c", "Status": "0x0"}),  # a successful validation
        evtx_doc(8, 4768, t, data={"TargetUserName": "d", "Status": "0x6"}),  # principal unknown: enumeration
        evtx_doc(9, 4768, t, data={"TargetUserName": "e", "Status": "0x0"}),
        evtx_doc(4, 1102, t, provider="Microsoft-Windows-Eventlog"),
        evtx_doc(5, 104, t, channel="System", provider="Microsoft-Windows-Eventlog"),
        evtx_doc(6, 1100, t, provider="Microsoft-Windows-Eventlog"),  # the service shut down
        evtx_doc(7, 104, t, channel="System", provider="Microsoft-Windows-Something"),
        evtx_doc(10, 1102, t, provider=None),  # type: ignore[arg-type]  # an export that lost the provider
    ]
    presets = load_keymap(user_config=False).presets
    with Case(tmp_path / "case.duckdb") as case:
        ingest(case, [write_jsonl(tmp_path / "e.jsonl", docs)])
        cur = case.cursor()

        def records(text: str) -> set[int]:
            view = views.resolve(cur, text)
            return {int(r["record_id"]) for r in views.window(cur, view, 0, view.count)}

        assert records(presets["failed_logons"].filter) == {1, 2, 8}
        # Every Security 1102 and System 104, whatever provider the export kept (the summary still
        # calls only the Eventlog's 104 a clear); never the service's own shutdown (1100).
        assert records(presets["log_cleared"].filter) == {4, 5, 7, 10}
        assert sum(c for _, _, c in views.histogram(cur, views.resolve(cur, "")).buckets) == 3
