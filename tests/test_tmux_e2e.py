"""End to end: `ashiato CASE` in a real terminal (tmux), the 4625 hotkey, and the screen read back."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tui.testing import SHARED_CORPUS

DEEPBLUE = SHARED_CORPUS / "evtx" / "deepbluecli"
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(not DEEPBLUE.is_dir(), reason=f"{DEEPBLUE} is absent (../shared/corpus)"),
]


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def _wait_for(session: str, predicate, timeout: float = 40.0) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _tmux("capture-pane", "-p", "-t", session)
        if predicate(screen):
            return screen
        time.sleep(0.1)
    raise AssertionError(f"timed out; the screen was:\n{screen}")


@pytest.mark.corpus
@pytest.mark.slow
def test_pressing_2_in_a_real_terminal_shows_the_failed_logons_of_deepbluecli(tmp_path: Path) -> None:
    from engine import Case, views
    from engine.ingest import ingest

    case_path = tmp_path / "deepblue.duckdb"
    with Case(case_path) as case:
        ingest(case, [str(DEEPBLUE)])
        failed = views.resolve(case.cursor(), "channel:Security eid:4625").count
    assert failed > 0

    program = Path(sys.executable).parent / "ashiato"
    command = [str(program)] if program.exists() else [sys.executable, "-m", "tui.cli"]
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "TZ": "UTC", "TERM": "xterm-256color"}
    shell = " ".join(f"{k}={v}" for k, v in env.items()) + " " + " ".join([*command, str(case_path)])
    session = f"ashiato-e2e-{uuid.uuid4().hex[:8]}"
    _tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", "-c", str(ROOT), shell)
    try:
        _wait_for(session, lambda s: "time (UTC)" in s and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", s))
        _tmux("send-keys", "-t", session, "2")
        screen = _wait_for(session, lambda s: "Failed logons" in s and re.search(r"\s4625\s", s))
        row = re.compile(r"^\s*\S?\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\S+\s+(\d+)\s")
        ids = {int(m.group(1)) for line in screen.splitlines() if (m := row.match(line))}
        assert 4625 in ids and ids <= {4625, 4771, 4776}, screen
        assert re.search(r"of [\d,]+", screen)
        _quits_on_q(session, 2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _alive(session: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0


def _start(tmp_path: Path, case_path: Path, width: int, height: int) -> str:
    """`ashiato CASE` in a new tmux session (UTC, NO_COLOR, a private config); its name."""
    program = Path(sys.executable).parent / "ashiato"
    command = [str(program)] if program.exists() else [sys.executable, "-m", "tui.cli"]
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "TZ": "UTC", "TERM": "xterm-256color", "NO_COLOR": "1"}
    shell = " ".join(f"{k}={v}" for k, v in env.items()) + " " + " ".join([*command, str(case_path)])
    session = f"ashiato-e2e-{uuid.uuid4().hex[:8]}"
    _tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), "-c", str(ROOT), shell)
    return session


def _quits_on_q(session: str, presses: int) -> None:
    """`presses` q's step back to the first view and ask before quitting; one more quits."""
    for _ in range(presses):
        _tmux("send-keys", "-t", session, "q")
    # The question can be replaced at once by the status of the view stepped back to, which
    # arrives after it; the second q still quits within its few seconds.
    asked = time.monotonic() + 2
    while time.monotonic() < asked and "again quits" not in _tmux("capture-pane", "-p", "-t", session):
        time.sleep(0.1)
    _tmux("send-keys", "-t", session, "q")
    deadline = time.monotonic() + 10
    while _alive(session):
        assert time.monotonic() < deadline, f"ashiato did not quit on q x{presses}"
        time.sleep(0.1)


RDP_TUNNEL = SHARED_CORPUS / "evtx" / "evtx-attack-samples" / "Command and Control" / "DE_RDP_Tunneling_4624.evtx"


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.skipif(not RDP_TUNNEL.is_file(), reason=f"{RDP_TUNNEL} is absent (../shared/corpus)")
def test_s_then_enter_in_a_real_terminal_follows_an_rdp_session_to_its_events(tmp_path: Path) -> None:
    from engine import Case, sessions
    from engine.ingest import ingest

    case_path = tmp_path / "rdp.duckdb"
    with Case(case_path) as case:
        ingest(case, [str(RDP_TUNNEL)])
        rdp = sessions.query(case.cursor(), "type:10")
    assert rdp
    session = _start(tmp_path, case_path, 80, 24)
    try:
        _wait_for(session, lambda s: "time (UTC)" in s)
        _tmux("send-keys", "-t", session, "s")
        _wait_for(session, lambda s: "account" in s and re.search(r"\b10 rdp\b", s) and "/" in s.splitlines()[-1])
        _tmux("send-keys", "-t", session, ":")
        _wait_for(session, lambda s: "filter sessions" in s)
        _tmux("send-keys", "-t", session, "-l", "type:10")
        _tmux("send-keys", "-t", session, "Enter")
        screen = _wait_for(session, lambda s: re.search(r"\b10 rdp\b", s) and "filters: type:10" in s)
        assert re.search(rf"\b{len(rdp)}/{len(rdp)}\b", screen.splitlines()[-1]), screen
        assert "tunnel" in screen, screen
        _tmux("send-keys", "-t", session, "Enter")
        first = rdp[0]
        screen = _wait_for(session, lambda s: "session:" in s and re.search(r"\s4624\s", s))
        assert first["user"] in screen, screen
        _quits_on_q(session, 2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


PANACHE = SHARED_CORPUS / "evtx" / "evtx-attack-samples" / "AutomatedTestingTools" / "PanacheSysmon_vs_AtomicRedTeam01.evtx"


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.skipif(not PANACHE.is_file(), reason=f"{PANACHE} is absent (../shared/corpus)")
def test_t_in_a_real_terminal_opens_the_tree_of_the_process_that_opened_lsass(tmp_path: Path) -> None:
    from engine import Case, lineage
    from engine.ingest import ingest

    case_path = tmp_path / "panache.duckdb"
    with Case(case_path) as case:
        ingest(case, [str(PANACHE)])
        opener = lineage.query(case.cursor(), "mark:lsass")[0]
        chain = lineage.ancestry_line(case.cursor(), int(opener["node"]))
    session = _start(tmp_path, case_path, 80, 24)
    try:
        _wait_for(session, lambda s: "time (UTC)" in s)
        _tmux("send-keys", "-t", session, ":")
        _wait_for(session, lambda s: "filter" in s.lower())
        _tmux("send-keys", "-t", session, "-l", "eid:10 target_image:lsass.exe")
        _tmux("send-keys", "-t", session, "Enter")
        _wait_for(session, lambda s: "filters: eid:10 target_image:lsass.exe" in s)
        _tmux("send-keys", "-t", session, "T")
        screen = _wait_for(session, lambda s: "process tree" in s and "opened lsass.exe" in s)
        assert "marked below" in screen, screen
        _tmux("send-keys", "-t", session, "a")
        last_image = chain.split(" → ")[-1].split()[0]
        screen = _wait_for(session, lambda s: " → " in s and last_image in s.splitlines()[-1] + s.splitlines()[-2])
        _tmux("send-keys", "-t", session, "Enter")
        screen = _wait_for(session, lambda s: "parent link" in s)
        assert "opened lsass.exe" in screen, screen
        # Back from the process, the tree, the filtered timeline, then quit.
        _quits_on_q(session, 4)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.corpus
@pytest.mark.slow
def test_a_case_open_in_the_tui_is_read_by_the_cli_meanwhile_and_an_ingest_names_the_tui(tmp_path: Path) -> None:
    from engine import Case
    from engine.ingest import ingest

    case_path = tmp_path / "deepblue.duckdb"
    with Case(case_path) as case:
        ingest(case, [str(DEEPBLUE)])
        total = case.event_count()
        first = case.con.execute("SELECT eid, record_id FROM events ORDER BY pos LIMIT 1").fetchall()[0]
    session = _start(tmp_path, case_path, 80, 24)
    try:
        _wait_for(session, lambda s: "time (UTC)" in s and f"{total:,}" in s)
        # Every read-only command works beside the open TUI.
        got = _cli("query", str(case_path), "", "--format", "jsonl", "--limit", "5")
        assert got.returncode == 0 and len(got.stdout.splitlines()) == 5, got.stderr
        got = _cli("stats", str(case_path), "--format", "jsonl")
        assert got.returncode == 0, got.stderr
        got = _cli("sql", str(case_path), "SELECT count(*) AS n FROM events", "--format", "csv")
        assert got.returncode == 0 and got.stdout.split() == ["n", str(total)], got.stderr
        # A mark made in the TUI is saved at once, and the CLI sees it while the TUI is open.
        _tmux("send-keys", "-t", session, "g")
        _tmux("send-keys", "-t", session, "m")
        _wait_for(session, lambda s: "(marked)" in s)
        out = tmp_path / "marked.jsonl"
        got = _cli("export", str(case_path), "", "--marked", "-o", str(out), "--format", "jsonl")
        assert got.returncode == 0, got.stderr
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["record_id"] for r in rows] == [first[1]]
        # Writing needs the case alone: the ingest says which process holds it, without a traceback.
        got = _cli("ingest", str(case_path), str(DEEPBLUE), "--quiet")
        assert got.returncode != 0 and "Traceback" not in got.stderr, got.stderr
        pid = int(subprocess.run(["tmux", "display-message", "-p", "-t", session, "#{pane_pid}"],
                                 capture_output=True, text=True, check=True).stdout)
        assert "is open in process" in got.stderr and "ashiato" in got.stderr, got.stderr
        assert str(pid) in got.stderr or any(str(c) in got.stderr for c in _children(pid)), got.stderr
        # --wait waits for the TUI to quit, then ingests (the same files: nothing new).
        waiting = subprocess.Popen([sys.executable, "-m", "tui.cli", "ingest", str(case_path), str(DEEPBLUE), "--quiet",
                                    "--wait", "60"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert waiting.poll() is None, waiting.communicate()
        _quits_on_q(session, 0)
        out_text, err_text = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err_text
        assert "waiting for" in err_text and "already in case" in out_text + err_text
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    # The mark is still there in a new TUI session (the notes outlive the process).
    with Case(case_path, read_only=True) as case:
        from engine import views

        assert views.marks(case.cursor()) == {first[0]: None}


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []
