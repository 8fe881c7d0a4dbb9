"""Full-text filters resolve in steps (one range of documents at a time) so the timeline can show
the first matches at once: whatever the steps, the last view is exactly the one-query answer."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from engine import Case, views
from engine.filters import compile_filter
from engine.ingest import ingest
from fixtures import shapes
from fixtures.incident import incident

# Bare words (plain, wildcard, JSON-escaped path, negated), original fields, and mixes with
# typed columns: every kind of term that reads the documents.
FULL_TEXT_FILTERS = [
    "mimikatz",
    "comsvcs",
    "-svchost eid:4688",
    "lsass eid:10",
    "net*user",
    r'"C:\Windows\System32"',
    "TokenElevationType:%%1936",
    "-mimikatz -lsass",
    '"whoami /all"',
    "LogonType:3 -alice",
]


@pytest.fixture(scope="module")
def every_shape_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    """The incident written in every supported shape, one file each: many sources, many eids."""
    d = tmp_path_factory.mktemp("steps")
    paths = list(shapes.write_all(incident(7, 300), d / "exports").values())
    case = Case(d / "case.duckdb")
    ingest(case, paths, dedupe=False)
    try:
        yield case
    finally:
        case.close()


def _steps(case: Case, text: str, first: int, largest: int) -> list[views.View]:
    cur = case.cursor()
    return list(views.resolve_steps(cur, compile_filter(text, views.field_names(cur)), first=first,
                                    largest=largest))


@pytest.mark.parametrize("text", FULL_TEXT_FILTERS)
def test_the_last_step_of_a_full_text_filter_is_exactly_the_one_query_view(every_shape_case: Case, text: str) -> None:
    whole = views.resolve(every_shape_case.cursor(), text)
    steps = _steps(every_shape_case, text, first=40, largest=400)
    assert len(steps) > 5, "the small step sizes should split this case into many steps"
    assert steps[-1].complete
    assert steps[-1].positions is not None and whole.positions is not None
    assert np.array_equal(steps[-1].positions, whole.positions)


@pytest.mark.parametrize("text", ["mimikatz", "-svchost eid:4688"])
def test_each_step_keeps_what_earlier_steps_found_and_says_how_far_it_got(every_shape_case: Case, text: str) -> None:
    steps = _steps(every_shape_case, text, first=40, largest=400)
    done = [s.done for s in steps]
    assert done == sorted(done) and done[-1] == 1.0
    assert all(not s.complete for s in steps[:-1])
    for earlier, later in itertools.pairwise(steps):
        assert earlier.positions is not None and later.positions is not None
        assert np.all(np.diff(later.positions) > 0), "positions stay sorted and unique"
        assert set(earlier.positions.tolist()) <= set(later.positions.tolist())


def test_a_filter_on_typed_columns_only_is_one_complete_step(every_shape_case: Case) -> None:
    steps = _steps(every_shape_case, "eid:4624,4625 -logon_type:5", first=40, largest=400)
    assert len(steps) == 1 and steps[0].complete
    whole = views.resolve(every_shape_case.cursor(), "eid:4624,4625 -logon_type:5")
    assert steps[0].positions is not None and whole.positions is not None
    assert np.array_equal(steps[0].positions, whole.positions)


def test_document_ranges_cover_every_event_once(every_shape_case: Case) -> None:
    cur = every_shape_case.cursor()
    ranges = views.document_ranges(cur, first=40, largest=400)
    assert ranges[0][0] < 0 and ranges[-1][1] == 2**63 - 1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges)), "ranges are contiguous"
    per_range = [cur.execute("SELECT count(*) FROM events WHERE eid >= ? AND eid < ?", [lo, hi]).fetchall()[0][0]
                 for lo, hi, _n in ranges]
    assert sum(per_range) == views.total_events(cur)
    assert sum(n for _lo, _hi, n in ranges) == views.total_events(cur)


def test_full_text_steps_on_the_real_corpus_end_with_the_one_query_view(corpus_case: Any) -> None:
    case = corpus_case.case
    for text in ("mimikatz", "lsass -eid:10", "powershell eid:4104"):
        whole = views.resolve(case.cursor(), text)
        steps = _steps(case, text, first=2000, largest=20_000)
        assert len(steps) > 3 and steps[-1].complete
        assert steps[-1].positions is not None and whole.positions is not None
        assert np.array_equal(steps[-1].positions, whole.positions), text


@pytest.mark.parametrize("text", ["cmd.exe", "-svchost eid:4688", "LogonType:3"])
def test_histogram_frequency_and_search_of_a_full_text_view_match_its_filter(every_shape_case: Case, text: str) -> None:
    # They read the view's known positions instead of the documents again; the answer is the same.
    cur = every_shape_case.cursor()
    view = views.resolve(cur, text)
    f = view.filter
    assert f.reads_documents and view.count > 0
    expected_freq = cur.execute(
        f"SELECT e.host AS v, count(*) AS n FROM events e WHERE {f.sql} GROUP BY v "
        "ORDER BY n DESC, v NULLS LAST LIMIT 200", f.params).fetchall()
    assert views.frequency(cur, view, "host") == [(v, int(n)) for v, n in expected_freq]
    hist = views.histogram(cur, view)
    assert sum(n for _b, n, _c in hist.buckets) == cur.execute(
        f"SELECT count(*) FROM events e WHERE ts > TIMESTAMP '1601-01-02' AND {f.sql}", f.params).fetchall()[0][0]
    search = compile_filter("eid:4688", views.field_names(cur))
    found = views.find(cur, view, search, 0)
    expected = cur.execute(f"SELECT min(pos) FROM events e WHERE pos > ? AND ({search.sql}) AND ({f.sql})",
                           [view.pos_at(0), *search.params, *f.params]).fetchall()[0][0]
    assert found == (None if expected is None else view.index_of_pos(int(expected)))


@pytest.mark.parametrize(("view_text", "search_text"), [("", "cmd.exe"), ("eid:4688", "whoami"),
                                                        ("lsass", "mimikatz"), ("", "-svchost eid:4624")])
def test_a_full_text_search_resolved_once_jumps_to_the_same_rows_as_the_query(
        every_shape_case: Case, view_text: str, search_text: str) -> None:
    cur = every_shape_case.cursor()
    view = views.resolve(cur, view_text)
    search = compile_filter(search_text, views.field_names(cur))
    matches = views.resolve(cur, search)
    for backwards in (False, True):
        for index in [-1, 0, 1, view.count // 3, view.count // 2, view.count - 1, view.count]:
            expected = views.find(cur, view, search, index, backwards=backwards)
            assert views.find_in(view, matches, index, backwards=backwards) == expected, (index, backwards)


@pytest.mark.parametrize("text", ["cmd.exe", "-svchost eid:4688", "LogonType:3 -alice"])
def test_a_query_with_progress_reports_each_step_and_prints_the_same_rows(every_shape_case: Case, text: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "FIRST_STEP_DOCUMENTS", 40)
    monkeypatch.setattr(views, "MAX_STEP_DOCUMENTS", 400)
    cur = every_shape_case.cursor()
    heard: list[float] = []
    stepped = views.query(cur, text, limit=None, on_progress=heard.append)
    plain = views.query(every_shape_case.cursor(), text, limit=None)
    assert [r["eid"] for r in stepped] == [r["eid"] for r in plain] and plain
    assert len(heard) > 5 and heard == sorted(heard) and heard[-1] == 1.0
    page = views.query(cur, text, limit=3, offset=2, on_progress=heard.append)
    assert [r["eid"] for r in page] == [r["eid"] for r in plain[2:5]]
