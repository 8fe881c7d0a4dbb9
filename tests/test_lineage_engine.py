"""Process lineage as the engine keeps it: updated as files are added, marks users can extend,
and the `process:` / `tree:` terms of the timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import ingest_into

from engine import Case, derived, lineage, views
from engine.filters import FilterError
from fixtures import sessions as writer
from fixtures.incident import incident

SHAPE = "evtx_jsonl"
EVENTS = incident(seed=7, noise=300)


def _processes(case_path: Path) -> list[tuple[Any, ...]]:
    with Case(case_path, read_only=True) as case:
        return case.cursor().execute(
            "SELECT * EXCLUDE (node, parent), parent IS NULL FROM processes ORDER BY host, start, pid").fetchall()


@pytest.fixture(scope="module")
def case_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("lineage")
    path = tmp / "case.duckdb"
    ingest_into(path, [writer.write(tmp / "files", shapes=[SHAPE], evs=EVENTS)[SHAPE]])
    return path


@pytest.fixture
def cur(case_path: Path) -> Any:
    with Case(case_path, read_only=True) as case:
        yield case.cursor()


def _in_two_files_and_in_one(tmp_path: Path, evs: list[Any], cut: float) -> tuple[Path, Path]:
    """The events split in time at `cut`, ingested file by file into one case and together into another."""
    split = evs[0].time + (evs[-1].time - evs[0].time) * cut
    first = writer.write(tmp_path / "a", shapes=[SHAPE], evs=[e for e in evs if e.time < split])[SHAPE]
    second = writer.write(tmp_path / "b", shapes=[SHAPE], evs=[e for e in evs if e.time >= split])[SHAPE]
    steps = tmp_path / "steps.duckdb"
    ingest_into(steps, [first])
    ingest_into(steps, [second])
    once = tmp_path / "once.duckdb"
    ingest_into(once, [first, second])
    return steps, once


@pytest.mark.parametrize("cut", [0.4, 0.7])
def test_adding_a_later_file_updates_the_processes_to_what_one_ingest_of_both_gives(tmp_path: Path,
                                                                                   cut: float) -> None:
    steps, once = _in_two_files_and_in_one(tmp_path, EVENTS, cut)
    assert _processes(steps) == _processes(once)
    with Case(steps) as case:
        derived.refresh(case, full=True)
    assert _processes(steps) == _processes(once)


def test_a_file_of_another_host_leaves_the_processes_of_the_others_as_they_were(tmp_path: Path) -> None:
    fs01 = [e for e in EVENTS if e.computer.startswith("FS01")]
    others = [e for e in EVENTS if not e.computer.startswith("FS01")]
    path = tmp_path / "case.duckdb"
    ingest_into(path, [writer.write(tmp_path / "a", shapes=[SHAPE], evs=others)[SHAPE]])
    before = _processes(path)
    ingest_into(path, [writer.write(tmp_path / "b", shapes=[SHAPE], evs=fs01)[SHAPE]])
    after = _processes(path)
    assert [r for r in after if not str(r[0]).startswith("FS01")] == before
    assert any(str(r[0]).startswith("FS01") for r in after)


def test_the_process_term_selects_the_events_the_process_caused(cur: Any) -> None:
    row = lineage.query(cur, "image:rundll32.exe")[0]
    key = lineage.key_of(row)
    shown = views.query(cur, f"process:{key}", limit=None)
    # Independently: the events that name its GUID as actor or target, and the 4688/4656 of its PID
    # on its host at or after its start.
    expected = {int(r[0]) for r in cur.execute(
        """SELECT eid FROM events WHERE host = ? AND (process_guid = ? OR target_guid = ?
               OR (channel = 'Security' AND event_id IN (4688, 4656, 4663, 4689) AND process_pid = ? AND ts >= ?))""",
        [row["host"], row["process_guid"], row["process_guid"], row["pid"], row["start"]]).fetchall()}
    assert {int(r["eid"]) for r in shown} == expected
    assert len(expected) >= 4
    # `process:` with an image name stays the image, as before processes existed.
    assert views.query(cur, "process:rundll32.exe", limit=None)


def test_the_tree_term_adds_everything_below_the_process(cur: Any) -> None:
    cmd = next(r for r in lineage.query(cur, "image:cmd.exe") if r["children"] >= 3)
    below = lineage.descendants(cur, int(cmd["node"]))
    own = views.query(cur, f"process:{lineage.key_of(cmd)}", limit=None)
    whole = views.query(cur, f"tree:{lineage.key_of(cmd)}", limit=None)
    assert {r["eid"] for r in own} < {r["eid"] for r in whole}
    creators = {int(r["sysmon_eid"] or r["security_eid"]) for r in below}
    assert creators <= {int(r["eid"]) for r in whole}


def test_a_term_naming_no_process_is_refused_with_what_a_process_key_looks_like(cur: Any) -> None:
    with pytest.raises(FilterError, match="ProcessGuid"):
        views.resolve(cur, "tree:whoami.exe")


def test_descendants_come_in_tree_order_each_after_its_parent(cur: Any) -> None:
    top = next(r for r in lineage.query(cur, "image:userinit.exe"))
    rows = lineage.descendants(cur, int(top["node"]))
    seen: set[int] = set()
    for r in rows:
        assert r["depth"] == 0 or r["parent"] in seen
        seen.add(int(r["node"]))
    assert len(rows) > 5


def test_a_user_marks_file_adds_marks_and_disables_others(tmp_path: Path) -> None:
    mine = tmp_path / "marks.toml"
    mine.write_text('disable = ["first look: whoami (JPCERT/CC)"]\n'
                    '[[mark]]\nimage = "explorer.exe"\nreason = "explorer, as a test"\n', encoding="utf-8")
    marks = lineage.load_marks(lineage.DEFAULT_MARKS, mine)
    reasons = {r[2] for r in marks.rules}
    assert "explorer, as a test" in reasons and "first look: whoami (JPCERT/CC)" not in reasons
    assert "first look: ipconfig (JPCERT/CC)" in reasons


@pytest.mark.parametrize("text, message", [
    ('[[mark]]\nimage = "x.exe"\n', "needs image and reason"),
    ('[[mark]]\nimage = "x.exe"\nreason = "r"\nargs = "("\n', "bad args pattern"),
    ('[[mark]]\nimage = "x.exe"\nreason = "r"\nimgae = "y"\n', "unknown key 'imgae'"),
    ('[marks]\n', "unknown key 'marks'"),
])
def test_a_bad_marks_file_names_the_file_and_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(lineage.MarksError, match=message) as info:
        lineage.load_marks(bad)
    assert str(bad) in str(info.value)


def test_a_marked_process_is_counted_by_every_ancestor(cur: Any) -> None:
    for row in lineage.query(cur, "mark:lsass"):
        chain = lineage.ancestors(cur, int(row["node"]))[:-1]
        assert chain and all(a["subtree_marks"] >= 1 for a in chain)


def test_the_ancestry_line_names_each_image_up_to_the_root(cur: Any) -> None:
    row = lineage.query(cur, "image:rundll32.exe")[0]
    line = lineage.ancestry_line(cur, int(row["node"]))
    assert line.split(" → ")[-1].startswith("rundll32.exe C:\\Windows\\System32\\comsvcs.dll")
    assert line.split(" → ")[:3] == ["userinit.exe", "explorer.exe", "cmd.exe"]


def test_a_changed_user_marks_file_rebuilds_the_marks_when_the_case_is_next_opened(
        case_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    copy = tmp_path / "case.duckdb"
    shutil.copy(case_path, copy)
    mine = tmp_path / "process_marks.toml"
    monkeypatch.setattr(lineage, "user_marks_path", lambda: mine)
    mine.write_text('[[mark]]\nimage = "explorer.exe"\nreason = "explorer, as a test"\n', encoding="utf-8")
    with Case(copy) as case:
        assert not derived.stale(case.con)
        marks = [r[0] for r in case.con.execute(
            "SELECT marks FROM processes WHERE lower(image) LIKE '%\\explorer.exe'").fetchall()]
    assert marks and all("explorer, as a test" in m for m in marks)
    # A broken file: the case still opens, with the project's marks, and says what was wrong.
    mine.write_text('[[mark]]\nimage = "explorer.exe"\n', encoding="utf-8")
    with Case(copy) as case:
        marks = [r[0] for r in case.con.execute(
            "SELECT marks FROM processes WHERE lower(image) LIKE '%\\explorer.exe'").fetchall()]
        error = case.con.execute("SELECT value FROM meta WHERE key = ?", [derived.MARKS_ERROR_KEY]).fetchall()
    assert marks and not any("explorer, as a test" in m for m in marks)
    assert error and str(mine) in error[0][0] and "needs image and reason" in error[0][0]


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_adding_a_later_file_across_a_reboot_rebuilds_its_boots_as_one_ingest_of_both_would(
        tmp_path: Path, cut: float) -> None:
    from fixtures import lineage as story

    steps, once = _in_two_files_and_in_one(tmp_path, story.events(), cut)
    assert _processes(steps) == _processes(once)


def test_adding_the_lineage_story_one_event_per_file_gives_what_one_ingest_of_all_gives(tmp_path: Path) -> None:
    # Every cut falls somewhere: between a Sysmon 1 and its 4688, between uses of a PID, before an
    # exit or an lsass access of an older process, inside a boot and at a reboot.
    from fixtures import lineage as story

    evs = sorted(story.events(), key=lambda e: e.time)
    files = [writer.write(tmp_path / f"f{i:02d}", shapes=[SHAPE], evs=[e])[SHAPE] for i, e in enumerate(evs)]
    steps = tmp_path / "steps.duckdb"
    for f in files:
        ingest_into(steps, [f])
    once = tmp_path / "once.duckdb"
    ingest_into(once, files)
    assert _processes(steps) == _processes(once)


def test_processes_of_an_older_file_take_the_exit_and_lsass_access_a_later_file_logs(tmp_path: Path) -> None:
    # The second file holds no process creation: what it says lands on processes of the first.
    from fixtures import lineage as story

    evs = sorted(story.events(), key=lambda e: e.time)
    later = [e for e in evs if (e.channel, e.event_id) in {("Security", 4689), ("Security", 4663),
                                                            ("Microsoft-Windows-Sysmon/Operational", 10)}]
    assert later
    first = writer.write(tmp_path / "a", shapes=[SHAPE], evs=[e for e in evs if e not in later])[SHAPE]
    second = writer.write(tmp_path / "b", shapes=[SHAPE], evs=later)[SHAPE]
    steps = tmp_path / "steps.duckdb"
    ingest_into(steps, [first])
    before = _processes(steps)
    ingest_into(steps, [second])
    once = tmp_path / "once.duckdb"
    ingest_into(once, [first, second])
    assert _processes(steps) == _processes(once) != before
