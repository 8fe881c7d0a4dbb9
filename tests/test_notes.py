"""The notes of a case (marks, tags, marked sessions, saved filters) beside it, and a case used by
two processes at once: readers together, a writer alone, and a refusal that names the holder."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine import Case, CaseBusy, open_for_reading, sessions, views

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def case_path(tmp_path: Path) -> Path:
    path = tmp_path / "case.duckdb"
    with Case(path) as case:
        case.con.execute("INSERT INTO events (eid, pos, host) VALUES (1, 1, 'A'), (2, 2, 'A'), (3, 3, 'B')")
    return path


def test_marks_tags_and_saved_filters_are_saved_beside_a_case_opened_read_only(case_path: Path) -> None:
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        assert views.toggle_mark(cur, 2) is True
        views.set_tag(cur, 3, "lateral movement")
        views.save_filter(cur, "b only", "host:B")
        assert sessions.toggle_mark(cur, 1) is True
        assert views.marks(cur) == {2: None, 3: "lateral movement"}
    # An independent reading of the notes file: SQLite, without ashiato.
    with sqlite3.connect(f"{case_path}.notes") as db:
        assert db.execute("SELECT eid, tag FROM marks ORDER BY eid").fetchall() == [(2, None), (3, "lateral movement")]
        assert db.execute("SELECT name, filter FROM saved_filters").fetchall() == [("b only", "host:B")]
        assert db.execute("SELECT first_eid FROM session_marks").fetchall() == [(1,)]
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        assert views.toggle_mark(cur, 2) is False
        assert views.marks(cur) == {3: "lateral movement"}
        assert views.saved_filters(cur) == [("b only", "host:B")]
        assert sessions.marked(cur) == {1}


def test_sql_over_marks_reads_the_notes(case_path: Path) -> None:
    from engine import notes

    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        views.set_tag(cur, 1, "x")
        notes.expose(cur)
        assert cur.execute("SELECT e.host, m.tag FROM marks m JOIN events e USING (eid)").fetchall() == [("A", "x")]


def test_a_case_made_again_under_the_same_name_does_not_inherit_the_old_marks(case_path: Path) -> None:
    with Case(case_path) as case:
        views.toggle_mark(case.cursor(), 1)
    case_path.unlink()
    with Case(case_path) as case:
        case.con.execute("INSERT INTO events (eid, pos, host) VALUES (1, 1, 'C')")
        assert views.marks(case.cursor()) == {}
        views.toggle_mark(case.cursor(), 1)  # the old notes are replaced, not merged
        views.set_tag(case.cursor(), 1, "new")
        assert views.marks(case.cursor()) == {1: "new"}


def test_marks_kept_inside_an_older_case_are_read_and_carried_into_the_notes(case_path: Path) -> None:
    with Case(case_path) as case:
        case.con.execute("INSERT INTO marks VALUES (1, 'old tag', now()::TIMESTAMP), (2, NULL, now()::TIMESTAMP)")
        case.con.execute("INSERT INTO saved_filters VALUES ('a', 'host:A')")
        cur = case.cursor()
        assert views.marks(cur) == {1: "old tag", 2: None}
        views.toggle_mark(cur, 3)
        assert views.marks(cur) == {1: "old tag", 2: None, 3: None}
        assert views.saved_filters(cur) == [("a", "host:A")]


def _hold(case_path: Path, read_only: bool) -> subprocess.Popen[str]:
    """Another process holding the case open until killed; returns once it has it."""
    code = textwrap.dedent(f"""
        import sys, time
        from engine import Case
        case = Case({str(case_path)!r}, read_only={read_only})
        print("open", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def test_two_processes_read_a_case_together_and_a_writer_is_told_which_process_holds_it(case_path: Path) -> None:
    other = _hold(case_path, read_only=True)
    try:
        with open_for_reading(case_path) as case:  # the TUI's way in: reads beside the other reader
            assert case.read_only and case.event_count() == 3
        with pytest.raises(CaseBusy) as refused:
            Case(case_path)
        assert refused.value.pid == other.pid
        assert f"process {other.pid}" in str(refused.value) and "reads it" in str(refused.value)
        started = time.monotonic()
        with pytest.raises(CaseBusy):
            Case(case_path, wait=0.6)
        assert time.monotonic() - started >= 0.5
    finally:
        other.kill()
        other.wait()
    with Case(case_path, wait=5) as case:  # free again
        assert not case.read_only


def test_a_reader_is_told_when_another_process_is_writing_the_case(case_path: Path) -> None:
    writer = _hold(case_path, read_only=False)
    try:
        with pytest.raises(CaseBusy) as refused:
            Case(case_path, read_only=True)
        assert "being written by" in str(refused.value) and str(writer.pid) in str(refused.value)
    finally:
        writer.kill()
        writer.wait()


def test_the_cli_says_which_process_holds_the_case_instead_of_a_traceback(case_path: Path, tmp_path: Path) -> None:
    writer = _hold(case_path, read_only=False)
    try:
        got = subprocess.run([sys.executable, "-m", "tui.cli", "query", str(case_path), ""], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert got.returncode == 2 and "Traceback" not in got.stderr
        assert f"being written by process {writer.pid}" in got.stderr, got.stderr
        got = subprocess.run([sys.executable, "-m", "tui.cli", "ingest", str(case_path), str(tmp_path / "none.evtx")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert got.returncode == 2 and "Traceback" not in got.stderr and "--wait" in got.stderr, got.stderr
    finally:
        writer.kill()
        writer.wait()
