"""The headless `ashiato` commands: what they print, in every format, and how they fail."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SYSMON, evtx_doc, write_jsonl

from tui.cli import QUERY_COLUMNS, main


def _events() -> list[dict[str, Any]]:
    return [
        evtx_doc(1, 4624, "2020-09-20T10:00:01Z", data={"TargetUserName": "alice", "LogonType": "3",
                                                        "IpAddress": "10.0.0.5"}),
        evtx_doc(2, 4625, "2020-09-20T10:00:02Z", data={"TargetUserName": "bob", "LogonType": "3",
                                                        "Status": "0xc000006d", "SubStatus": "0xc000006a"}),
        evtx_doc(3, 4624, "2020-09-20T10:00:03Z", data={"TargetUserName": "bob", "LogonType": "5"}),
        evtx_doc(4, 1, "2020-09-20T10:00:04Z", channel=SYSMON, provider="Microsoft-Windows-Sysmon", data={
            "Image": "C:\\Windows\\System32\\whoami.exe", "CommandLine": "whoami /all",
            "ParentImage": "C:\\Windows\\System32\\cmd.exe", "ProcessId": "4242", "User": "CORP\\bob",
            "Comment": "line one\nline two, with \"quotes\""}),
    ]


@pytest.fixture()
def case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    evidence = write_jsonl(tmp_path / "events.jsonl", _events())
    path = tmp_path / "case.duckdb"
    assert main(["ingest", str(path), str(evidence), "--quiet"]) == 0
    capsys.readouterr()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- ingest -----------------------------------------------------------------------------------------
def test_ingest_reports_what_it_stored_and_what_it_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_jsonl(tmp_path / "a.jsonl", [*_events()[:2], "{broken"])
    junk = tmp_path / "b.txt"
    junk.write_text("not a log\n")
    code, out, err = run(capsys, "ingest", str(tmp_path / "case.duckdb"), str(good), str(junk), "--quiet")
    assert code == 0
    assert f"{junk}: not a recognised event log (first bytes: " in err
    assert f"{good}: 1 damaged record(s) or line(s) skipped, 2 stored" in err
    assert f"{good}:3: malformed JSON" in err
    assert "1 file(s) ingested, 0 already in case, 1 skipped; 2 events stored" in out + err


def test_ingest_takes_a_memory_limit_and_refuses_one_too_small_to_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import Case

    seen: list[str] = []
    real = Case.__init__

    def spy(self: Case, *a: Any, **k: Any) -> None:
        real(self, *a, **k)
        seen.append(self.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])

    monkeypatch.setattr(Case, "__init__", spy)
    good = write_jsonl(tmp_path / "a.jsonl", _events()[:2])
    code, _, err = run(capsys, "ingest", str(tmp_path / "case.duckdb"), str(good), "--quiet", "--memory-limit", "200MB")
    assert code == 0, err
    assert seen == ["190.7 MiB"]  # 200 MB as DuckDB shows it
    for bad, why in (("64MB", "at least 128MB"), ("lots", "a size like")):
        code, _, err = run(capsys, "ingest", str(tmp_path / "other.duckdb"), str(good), "--memory-limit", bad)
        assert code == 2 and why in err and "Traceback" not in err
    assert not (tmp_path / "other.duckdb").exists()


def test_ingesting_again_says_already_in_case(case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ingest", str(case), str(tmp_path / "events.jsonl"), "--quiet")
    assert code == 0
    assert "0 file(s) ingested, 1 already in case, 0 skipped; 0 events stored" in out + err


def test_ingest_of_only_missing_paths_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "ingest", str(tmp_path / "case.duckdb"), str(tmp_path / "nope"), "--quiet")
    assert code == 2
    assert f"{tmp_path / 'nope'}: no such file or directory" in err


def test_an_empty_path_is_missing_not_the_working_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # `ashiato ingest case.duckdb "$UNSET"` must not ingest everything below the current directory.
    write_jsonl(tmp_path / "a.jsonl", _events())
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "ingest", str(tmp_path / "case.duckdb"), "", "--quiet")
    assert code == 2
    assert "'': no such file or directory" in err


def test_ingest_without_dedupe_stores_every_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", _events())
    b = write_jsonl(tmp_path / "b.jsonl", _events())
    case = tmp_path / "case.duckdb"
    assert run(capsys, "ingest", str(case), str(a), str(b), "--no-dedupe", "--quiet")[0] == 0
    code, out, _ = run(capsys, "sql", str(case), "SELECT count(*) AS n FROM events", "--format", "jsonl")
    assert code == 0 and json.loads(out) == {"n": 8}


# -- stats ------------------------------------------------------------------------------------------
def test_stats_table_says_what_is_in_the_case(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "stats", str(case))
    assert code == 0
    assert "4 events, 1 host(s), 2 channel(s)" in " ".join(out.split())
    for word in ("Hosts", "Channels", "Top event IDs", "Sources", "WS01.corp.local", SYSMON):
        assert word in out


def test_stats_names_events_without_a_channel_instead_of_leaving_a_blank(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = evtx_doc(1, 5, "2020-09-20T10:00:00Z", channel=None, provider="Microsoft-Windows-RPC")  # type: ignore[arg-type]
    path = tmp_path / "case.duckdb"
    run(capsys, "ingest", str(path), str(write_jsonl(tmp_path / "e.jsonl", [trace])), "--quiet")
    code, out, _ = run(capsys, "stats", str(path))
    assert code == 0 and "(none)" in out


def test_stats_jsonl_lists_every_source(case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "stats", str(case), "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1
    assert rows[0]["path"] == str(tmp_path / "events.jsonl")
    assert (rows[0]["records"], rows[0]["skipped"], rows[0]["shape"]) == (4, 0, "evtx-json")


# -- query --------------------------------------------------------------------------------------------
def test_query_jsonl_prints_one_object_per_row_keyed_by_column(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "query", str(case), "eid:4624,4625 user:bob", "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["record_id"] for r in rows] == [2, 3]
    assert all(list(r) == QUERY_COLUMNS for r in rows)
    assert rows[0]["ts"] == "2020-09-20T10:00:02"
    assert rows[0]["channel"] == "Security" and rows[0]["event_id"] == 4625


def test_query_jsonl_with_chosen_columns(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "query", str(case), "cmd:*whoami*", "--format", "jsonl",
                       "--columns", "record_id,process_image,command_line,process_pid")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [{
        "record_id": 4, "process_image": "C:\\Windows\\System32\\whoami.exe", "command_line": "whoami /all",
        "process_pid": 4242}]


def test_query_csv_has_a_header_and_one_row_per_event(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "query", str(case), "", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["record_id"]) for r in rows] == [1, 2, 3, 4]
    assert list(rows[0]) == QUERY_COLUMNS


def test_query_table_shows_the_columns_and_the_rows(case: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # not a terminal: the table is laid out this wide
    code, out, err = run(capsys, "query", str(case), "eid:4624", "--format", "table")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split() == ["time", "host", "channel", "id", "summary", "user", "process"]
    assert len(lines) == 2 and all("2020-09-20 10:00:0" in line and " 4624 " in line for line in lines)
    assert "alice" in out and "2 row(s)" in err
    # At 80 columns: one line an event, time, host, id and summary kept, the internal eid never.
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "query", str(case), "eid:4624", "--format", "table")
    header, *lines = out.splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in out.splitlines())
    assert {"time", "host", "id", "summary"} <= set(header.split()) and "eid" not in header.split()
    assert all("2020-09-20 10:00:0" in line for line in lines)
    # Asked for, the columns are the ones named.
    code, out, _ = run(capsys, "query", str(case), "eid:4624", "--format", "table", "--columns", "ts,eid")
    assert "eid" in out


def test_a_query_cut_by_its_limit_says_more_events_match(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "query", str(case), "--format", "csv", "--limit", "3")
    assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) == 3
    assert "the first 3 matching events; more match (--limit 0 prints all, --offset 3 the next page)" in err
    _, out, err = run(capsys, "query", str(case), "--format", "csv", "--limit", "4")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 4 and "more match" not in err


def test_an_unknown_column_is_an_error_even_when_nothing_matches(case: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "query", str(case), "eid:9999", "--columns", "ts,bogus")
    assert code == 2 and "unknown column(s): bogus" in err


def test_query_limit_and_offset_page_through_the_timeline(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "query", str(case), "--format", "jsonl", "--limit", "2", "--offset", "1")
    assert [json.loads(line)["record_id"] for line in out.splitlines()] == [2, 3]
    _, out, _ = run(capsys, "query", str(case), "--format", "jsonl", "--limit", "0")
    assert len(out.splitlines()) == 4


def test_a_full_text_query_at_a_terminal_shows_progress_on_stderr_and_the_same_rows_on_stdout(
        case: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, piped, _ = run(capsys, "query", str(case), "whoami", "--format", "jsonl")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run(capsys, "query", str(case), "whoami", "--format", "jsonl")
    assert code == 0
    assert out == piped and [json.loads(line)["record_id"] for line in out.splitlines()] == [4]
    assert "searching every field" in err


def test_an_interrupted_query_says_so_without_the_ingest_advice(case: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import views

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(views, "query", interrupted)
    code, out, err = run(capsys, "query", str(case), "whoami")
    assert code == 130 and out == ""
    assert err.strip() == "interrupted"


def test_a_filter_typo_prints_the_suggestion_and_a_caret(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "query", str(case), "eid:4624 usr:bob")
    assert code == 2
    assert out == ""
    assert 'unknown field "usr"' in err and 'did you mean "user"?' in err
    lines = err.splitlines()
    caret = next(line for line in lines if "^" in line)
    assert lines[lines.index(caret) - 1] == "eid:4624 usr:bob"
    assert caret.index("^") == len("eid:4624 ")


def test_a_filter_duckdb_refuses_is_a_clean_error(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "query", str(case), "eid:0x" + "f" * 40)
    assert code in (0, 2)


def test_an_unknown_column_is_an_error(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "query", str(case), "", "--columns", "ts,nonsense")
    assert code == 2 and "nonsense" in err


def test_querying_a_missing_case_is_an_error_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "query", str(tmp_path / "nope.duckdb"), "")
    assert code == 2 and "no such case file" in err
    assert not (tmp_path / "nope.duckdb").exists()


def test_event_text_with_control_characters_is_escaped_in_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = evtx_doc(1, 4688, "2020-09-20T10:00:00Z", data={
        "NewProcessName": "C:\\x.exe", "CommandLine": "evil \x1b]52;c;aGk=\x07 \x1b[2J done"})
    path = tmp_path / "case.duckdb"
    run(capsys, "ingest", str(path), str(write_jsonl(tmp_path / "e.jsonl", [hostile])), "--quiet")
    code, out, _ = run(capsys, "query", str(path), "", "--format", "table", "--columns", "record_id,command_line")
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "␛]52;c;aGk=\\x07" in out  # the same visible escapes as the TUI (tui.safe_text)


def test_the_table_shows_status_codes_in_hex_as_windows_writes_them_and_csv_keeps_the_integers(
        case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "query", str(case), "eid:4625", "--columns", "record_id,status,substatus")
    assert code == 0 and "0xc000006d" in out and "0xc000006a" in out and "3221225581" not in out
    _, out, _ = run(capsys, "query", str(case), "eid:4625", "--columns", "status,substatus", "--format", "csv")
    assert out.splitlines() == ["status,substatus", "3221225581,3221225578"]


# -- sql ----------------------------------------------------------------------------------------------
def test_sql_prints_rows_in_every_format(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = "SELECT event_id, count(*) AS n FROM events GROUP BY ALL ORDER BY event_id"
    _, out, _ = run(capsys, "sql", str(case), q, "--format", "jsonl")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"event_id": 1, "n": 1}, {"event_id": 4624, "n": 2}, {"event_id": 4625, "n": 1}]
    _, out, _ = run(capsys, "sql", str(case), q, "--format", "csv")
    assert out.splitlines() == ["event_id,n", "1,1", "4624,2", "4625,1"]
    code, out, _ = run(capsys, "sql", str(case), q)
    assert code == 0 and "4624" in out


@pytest.mark.parametrize("statement", [
    "INSERT INTO meta VALUES ('x', 'y')",
    "DELETE FROM events",
    "DROP TABLE events",
    "CREATE TABLE evil (x INTEGER)",
    "UPDATE events SET host = 'x'",
])
def test_sql_is_read_only(case: Path, capsys: pytest.CaptureFixture[str], statement: str) -> None:
    code, out, err = run(capsys, "sql", str(case), statement)
    assert code == 2
    assert out == ""
    assert err.startswith("ashiato: ") and "read-only" in err
    _, out, _ = run(capsys, "sql", str(case), "SELECT count(*) AS n FROM events", "--format", "jsonl")
    assert json.loads(out) == {"n": 4}


def test_a_sql_error_is_reported_cleanly(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "sql", str(case), "SELECT nope FROM events")
    assert code == 2 and err.startswith("ashiato: ") and "Traceback" not in err


# -- export -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_writes_a_file_that_reads_back(case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              fmt: str) -> None:
    out_path = tmp_path / f"out.{fmt}"
    code, _, err = run(capsys, "export", str(case), "user:bob", "--format", fmt, "-o", str(out_path))
    assert code == 0
    assert f"3 events written to {out_path}" in err
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(out_path).to_pylist()
    elif fmt == "csv":
        with open(out_path, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [int(r["record_id"]) for r in rows] == [2, 3, 4]
    assert {"ts", "host", "event_id", "target_user", "event_data", "raw"} <= set(rows[0])
    event_data = rows[0]["event_data"]
    assert json.loads(event_data)["SubStatus"] == "0xc000006a"


def test_export_keeps_every_original_field(case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "out.jsonl"
    assert run(capsys, "export", str(case), "eid:1", "--format", "jsonl", "-o", str(out_path))[0] == 0
    (row,) = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert json.loads(row["event_data"])["Comment"] == 'line one\nline two, with "quotes"'
    assert json.loads(row["raw"]) == _events()[3]


def test_export_with_a_bad_filter_fails_and_writes_nothing(case: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "out.csv"
    code, _, err = run(capsys, "export", str(case), "usr:bob", "--format", "csv", "-o", str(out_path))
    assert code == 2 and 'did you mean "user"?' in err
    assert not out_path.exists()


# -- the installed command ------------------------------------------------------------------------------
def test_the_console_script_runs_headless_commands(tmp_path: Path) -> None:
    evidence = write_jsonl(tmp_path / "events.jsonl", _events())
    case = tmp_path / "case.duckdb"
    exe = Path(sys.executable).with_name("ashiato")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tui.cli"]
    ingest = subprocess.run([*cmd, "ingest", str(case), str(evidence)], capture_output=True, text=True, timeout=120)
    assert ingest.returncode == 0, ingest.stderr
    query = subprocess.run([*cmd, "query", str(case), "user:alice", "--format", "jsonl"],
                           capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    assert [json.loads(line)["record_id"] for line in query.stdout.splitlines()] == [1]


def test_ctrl_c_inside_a_duckdb_statement_exits_130_with_the_rerun_hint(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import tui.cli

    def interrupted(_args: Any) -> int:
        # What DuckDB raises when SIGINT lands while it runs a statement on the main thread.
        raise RuntimeError("Query interrupted")

    monkeypatch.setattr(tui.cli, "cmd_ingest", interrupted)
    assert main(["ingest", str(tmp_path / "case.duckdb"), str(tmp_path)]) == 130
    assert "interrupted: files already committed are kept" in capsys.readouterr().err


def test_other_runtime_errors_are_not_taken_for_an_interrupt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tui.cli

    def broken(_args: Any) -> int:
        raise RuntimeError("something else")

    monkeypatch.setattr(tui.cli, "cmd_stats", broken)
    with pytest.raises(RuntimeError, match="something else"):
        main(["stats", str(tmp_path / "case.duckdb")])


def test_a_filter_that_starts_with_an_exclusion_is_taken_as_the_filter(case: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "query", str(case), "-eid:4624", "--format", "jsonl")
    assert code == 0, err
    assert [json.loads(line)["record_id"] for line in out.splitlines()] == [2, 4]
    code, out, _ = run(capsys, "query", str(case), "--format", "jsonl", "-eid:4624 -eid:4625")
    assert code == 0 and [json.loads(line)["record_id"] for line in out.splitlines()] == [4]
    # -h… would be --help, -o… export's output: the filter words are set aside before options are read.
    code, out, err = run(capsys, "query", str(case), "-host:nowhere", "--format", "jsonl")
    assert code == 0 and len(out.splitlines()) == 4, err
    # Negated bare words and quoted text too, wherever they stand among the options.
    code, out, err = run(capsys, "query", str(case), "--limit", "10", "-whoami", "--format=jsonl", '-"user name"')
    assert code == 0, err
    assert [json.loads(line)["record_id"] for line in out.splitlines()] == [1, 2, 3]
    with pytest.raises(SystemExit) as exited:
        main(["query", str(case), "--no-such-option"])
    assert exited.value.code == 2 and "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_an_export_filter_that_starts_with_an_exclusion_is_not_taken_for_an_output_file(
        case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "export", str(case), "-o", str(out), "--format", "jsonl", "-object_name:x",
                       "-eid:4624")
    assert code == 0, err
    assert sorted(json.loads(line)["record_id"] for line in out.read_text().splitlines()) == [2, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.jsonl", "events.jsonl", "case.duckdb"])


def test_csv_printed_to_a_terminal_shows_control_characters_escaped_but_piped_csv_keeps_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = evtx_doc(1, 4688, "2020-09-20T10:00:00Z", data={
        "NewProcessName": "C:\\x.exe", "CommandLine": "a \x1b]0;PWNED\x07 \x1b[2J \u202e b"})
    path = tmp_path / "case.duckdb"
    run(capsys, "ingest", str(path), str(write_jsonl(tmp_path / "e.jsonl", [hostile])), "--quiet")
    _, piped, _ = run(capsys, "query", str(path), "", "--format", "csv", "--columns", "command_line")
    assert "\x1b]0;PWNED\x07" in piped
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _, shown, _ = run(capsys, "query", str(path), "", "--format", "csv", "--columns", "command_line")
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "␛]0;PWNED\\x07" in shown


def test_jsonl_escapes_what_a_terminal_would_act_on_and_stays_the_same_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "x \x9b2J \u202e y \x1b[1m"
    path = tmp_path / "case.duckdb"
    run(capsys, "ingest", str(path), str(write_jsonl(tmp_path / "e.jsonl", [
        evtx_doc(1, 4688, "2020-09-20T10:00:00Z", data={"CommandLine": text})])), "--quiet")
    _, out, _ = run(capsys, "query", str(path), "", "--format", "jsonl", "--columns", "command_line")
    assert "\x9b" not in out and "\u202e" not in out and "\x1b" not in out
    assert json.loads(out) == {"command_line": text}


def test_the_ingest_report_shows_file_names_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil\x1b]0;PWNED\x07.txt"
    evil.write_text("not a log\n")
    _, out, err = run(capsys, "ingest", str(tmp_path / "case.duckdb"), str(evil), "--quiet")
    assert "\x1b" not in err + out and "␛]0;PWNED\\x07.txt" in err


def test_an_evidence_file_given_as_the_case_says_what_it_is_and_what_was_meant(
        case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evidence = tmp_path / "events.jsonl"
    before = evidence.read_bytes()
    code, _, err = run(capsys, "query", str(evidence), "eid:4625")
    assert code == 2 and "is JSON, not a case" in err and f"ashiato ingest CASE.duckdb {evidence}" in err
    # Swapped ingest arguments: the evidence is neither opened as a case nor changed.
    code, _, err = run(capsys, "ingest", str(evidence), str(tmp_path / "new.duckdb"))
    assert code == 2 and "the case comes first" in err
    assert evidence.read_bytes() == before and not (tmp_path / "new.duckdb").exists()


def test_export_never_replaces_a_file_unless_forced(case: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "old.csv"
    out.write_text("a 37 MB export\n")
    code, _, err = run(capsys, "export", str(case), "", "--format", "csv", "-o", str(out))
    assert code == 2 and "--force" in err and out.read_text() == "a 37 MB export\n"
    code, _, _ = run(capsys, "export", str(case), "", "--format", "csv", "-o", str(out), "--force")
    assert code == 0 and out.read_text() != "a 37 MB export\n"


def test_sources_keep_the_absolute_path_of_a_file_given_relative(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    write_jsonl(tmp_path / "rel.jsonl", _events())
    monkeypatch.chdir(tmp_path)
    assert main(["ingest", "case.duckdb", "rel.jsonl", "--quiet"]) == 0
    con = duckdb.connect(str(tmp_path / "case.duckdb"), read_only=True)
    assert con.execute("SELECT path FROM sources").fetchall() == [(str(tmp_path / "rel.jsonl"),)]


def test_csv_lines_end_with_a_newline_alone_as_unix_pipes_expect(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "query", str(case), "--format", "csv", "--limit", "3")
    assert code == 0 and "\r" not in out and out.count("\n") == 4


def test_a_directory_that_cannot_be_listed_stays_in_stats_after_the_ingest(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from engine.ingest import sources

    logs = tmp_path / "Logs"
    (logs / "private").mkdir(parents=True)
    write_jsonl(logs / "events.jsonl", _events())
    walk = os.walk

    def walk_refused(top: str, onerror: Any = None, **kw: Any) -> Any:
        # Root can list a chmod 000 directory: the refusal os.walk reports is made here.
        for root, dirs, files in walk(top, **kw):
            if "private" in dirs:
                dirs.remove("private")
                onerror(PermissionError(13, "Permission denied", os.path.join(root, "private")))
            yield root, dirs, files

    monkeypatch.setattr(sources.os, "walk", walk_refused)
    monkeypatch.setenv("COLUMNS", "200")  # the stats tables on one line each
    case = tmp_path / "case.duckdb"
    code, _, err = run(capsys, "ingest", str(case), str(logs), "--quiet")
    assert code == 0 and "private: cannot list this directory (Permission denied)" in err
    _, out, _ = run(capsys, "stats", str(case))
    assert "Not read" in out and "private" in out and "cannot list this directory" in out
    monkeypatch.setattr(sources.os, "walk", walk)  # readable again: the next ingest forgets the refusal
    run(capsys, "ingest", str(case), str(logs), "--quiet")
    _, out, _ = run(capsys, "stats", str(case))
    assert "Not read" not in out
