"""The histogram: every calendar-aligned bucket from the first event to the last, the empty ones too.

Expected buckets are worked out here from the event times as written, with plain date arithmetic,
never from the engine's SQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import evtx_doc, write_jsonl

from engine import Case, views
from engine.ingest import ingest
from tui.app import AshiatoApp
from tui.keymap import load_keymap
from tui.testing import settle, use_utc

use_utc()

Floor = Callable[[datetime], datetime]
Step = Callable[[datetime], datetime]


def parse(when: str) -> datetime:
    return datetime.fromisoformat(when.replace("Z", "+00:00")).replace(tzinfo=None)


def build(tmp_path: Path, times: list[str], *, clears: tuple[str, ...] = (), timeless: bool = True) -> Path:
    """A case of one 4624 per time (plus 1102 log clears), and, unless told not to, a FILETIME-0
    record and one with no readable time, which no bucket may count."""
    docs = [evtx_doc(i, 4624, when, data={"LogonType": 3}) for i, when in enumerate(times, 1)]
    docs += [evtx_doc(1000 + i, 1102, when, provider="Microsoft-Windows-Eventlog") for i, when in enumerate(clears)]
    if timeless:
        docs += [evtx_doc(2000, 4624, "1601-01-01T00:00:00.000000Z"), evtx_doc(2001, 4624, "not a time")]
    path = tmp_path / "case.duckdb"
    with Case(path) as case:
        ingest(case, [write_jsonl(tmp_path / "events.jsonl", docs)])
    return path


def expected(times: list[str], clears: tuple[str, ...], floor: Floor, step: Step) -> list[tuple[datetime, int, int]]:
    """Every bucket from the first event's to the last's, with what falls in it."""
    events = Counter(floor(parse(t)) for t in [*times, *clears])
    cleared = Counter(floor(parse(t)) for t in clears)
    start, last = min(events), max(events)
    out = []
    while start <= last:
        out.append((start, events[start], cleared[start]))
        start = step(start)
    return out


def histogram_of(path: Path, max_buckets: int) -> views.Histogram:
    with Case(path, read_only=True) as case:
        cur = case.cursor()
        return views.histogram(cur, views.resolve(cur, ""), max_buckets=max_buckets)


def year_floor(t: datetime) -> datetime:
    return datetime(t.year, 1, 1)


def next_year(t: datetime) -> datetime:
    return datetime(t.year + 1, 1, 1)


def month_floor(t: datetime) -> datetime:
    return datetime(t.year, t.month, 1)


def next_month(t: datetime) -> datetime:
    return datetime(t.year + t.month // 12, t.month % 12 + 1, 1)


def monday_floor(t: datetime) -> datetime:
    day = datetime(t.year, t.month, t.day)
    return day - timedelta(days=day.weekday())


def six_hour_floor(t: datetime) -> datetime:
    return datetime(t.year, t.month, t.day, t.hour - t.hour % 6)


def day_floor(t: datetime) -> datetime:
    return datetime(t.year, t.month, t.day)


YEARS_WITHOUT_2017 = ["2014-12-21T10:00:00Z", "2015-03-01T00:00:00Z", "2015-07-04T12:30:00Z",
                      "2016-02-29T23:59:59Z", "2018-01-01T00:00:00Z", "2018-06-30T08:00:00Z",
                      "2019-12-31T23:59:59.999Z", "2020-05-05T05:05:05Z"]
YEARS_CLEARS = ("2016-11-08T03:00:00Z",)


def test_a_year_without_events_is_a_bucket_of_its_own_and_every_year_starts_on_1_january(tmp_path: Path) -> None:
    hist = histogram_of(build(tmp_path, YEARS_WITHOUT_2017, clears=YEARS_CLEARS), max_buckets=10)
    assert hist.buckets == expected(YEARS_WITHOUT_2017, YEARS_CLEARS, year_floor, next_year)
    assert [b.year for b, _n, _c in hist.buckets] == [2014, 2015, 2016, 2017, 2018, 2019, 2020]
    assert hist.buckets[3] == (datetime(2017, 1, 1), 0, 0)
    assert hist.width == views.BucketWidth("year")
    # The FILETIME-0 record and the one with no time are in no bucket.
    assert sum(n for _b, n, _c in hist.buckets) == len(YEARS_WITHOUT_2017) + len(YEARS_CLEARS)


# (times, max_buckets, width, floor, step): each fills the screen as finely as it can.
ALIGNED: dict[str, tuple[list[str], int, views.BucketWidth, Floor, Step]] = {
    "days with an empty day": (
        ["2024-03-01T05:00:00Z", "2024-03-01T23:00:00Z", "2024-03-03T00:00:00Z", "2024-03-04T20:00:00Z"],
        5, views.BucketWidth("day"), day_floor, lambda t: t + timedelta(days=1)),
    "6 hours from midnight with an empty quarter day": (
        ["2024-03-12T01:00:00Z", "2024-03-12T07:59:00Z", "2024-03-12T19:00:00Z", "2024-03-13T20:00:00Z"],
        8, views.BucketWidth("hour", 6), six_hour_floor, lambda t: t + timedelta(hours=6)),
    "weeks from Monday with empty weeks": (
        ["2024-03-06T09:00:00Z", "2024-03-10T23:59:59Z", "2024-03-11T00:00:00Z", "2024-05-20T12:00:00Z"],
        12, views.BucketWidth("week"), monday_floor, lambda t: t + timedelta(days=7)),
    "months from the 1st with an empty January": (
        ["2023-11-15T10:00:00Z", "2023-12-31T23:00:00Z", "2024-02-29T12:00:00Z", "2024-04-02T00:00:00Z"],
        6, views.BucketWidth("month"), month_floor, next_month),
}


@pytest.mark.parametrize("name", ALIGNED)
def test_every_bucket_between_first_and_last_event_is_shown_on_its_calendar_boundary(tmp_path: Path,
                                                                                    name: str) -> None:
    times, max_buckets, width, floor, step = ALIGNED[name]
    hist = histogram_of(build(tmp_path, times), max_buckets=max_buckets)
    assert hist.width == width
    assert hist.buckets == expected(times, (), floor, step)
    assert any(n == 0 for _b, n, _c in hist.buckets)
    assert len(hist.buckets) <= max_buckets


def test_the_range_picked_from_a_bucket_is_that_calendar_bucket_and_holds_its_events(tmp_path: Path) -> None:
    path = build(tmp_path, YEARS_WITHOUT_2017, clears=YEARS_CLEARS)
    hist = histogram_of(path, max_buckets=10)
    assert hist.bounds(3) == (datetime(2017, 1, 1), datetime(2018, 1, 1))
    with Case(path, read_only=True) as case:
        cur = case.cursor()
        for i, (start, n, _c) in enumerate(hist.buckets):
            lo, hi = hist.bounds(i)
            assert lo == start and (i + 1 == len(hist.buckets) or hi == hist.buckets[i + 1][0])
            picked = views.resolve(cur, f"after:{lo.isoformat()} before:{hi.isoformat()}")
            assert picked.count == sum(1 for t in [*YEARS_WITHOUT_2017, *YEARS_CLEARS] if lo <= parse(t) < hi) == n


def test_a_bucket_ends_where_the_next_calendar_bucket_starts_and_multiples_start_on_their_multiple() -> None:
    months = views.BucketWidth("month")
    assert months.end(datetime(2024, 2, 1)) == datetime(2024, 3, 1)
    assert months.end(datetime(2024, 12, 1)) == datetime(2025, 1, 1)
    quarters = views.BucketWidth("month", 3)
    assert quarters.start(quarters.index(datetime(2024, 5, 17, 8))) == datetime(2024, 4, 1)
    assert views.BucketWidth("year", 5).start(views.BucketWidth("year", 5).index(datetime(2017, 6, 1))) \
        == datetime(2015, 1, 1)
    assert views.BucketWidth("hour", 12).end(datetime(2024, 3, 12, 12)) == datetime(2024, 3, 13)


@pytest.mark.parametrize("max_buckets", [1, 3, 7, 22, 46, 60])
def test_the_width_is_the_finest_whose_buckets_fit_the_rows_given(tmp_path: Path, max_buckets: int) -> None:
    hist = histogram_of(build(tmp_path, YEARS_WITHOUT_2017, timeless=False), max_buckets=max_buckets)
    assert len(hist.buckets) <= max(max_buckets, 1)
    finer = views.BUCKET_WIDTHS[:views.BUCKET_WIDTHS.index(hist.width)]
    lo, hi = parse(YEARS_WITHOUT_2017[0]), parse(YEARS_WITHOUT_2017[-1])
    assert all(w.index(hi) - w.index(lo) + 1 > max_buckets for w in finer)
    assert sum(n for _b, n, _c in hist.buckets) == len(YEARS_WITHOUT_2017)


def test_a_view_with_no_dated_events_has_no_buckets(tmp_path: Path) -> None:
    assert histogram_of(build(tmp_path, [], timeless=True), max_buckets=22).buckets == []


# -- the screen ---------------------------------------------------------------------------------------
KEYMAP = load_keymap(user_config=False)


# Thirteen years, too many for half years in 22 rows: one bar a year, 2017 without events.
WIDE_YEARS = [f"{year}-0{year % 9 + 1}-1{year % 10}T0{year % 10}:00:00Z" for year in range(2012, 2025) if year != 2017]


def test_the_histogram_screen_at_80x24_shows_the_empty_year_and_enter_on_it_narrows_to_that_year(
        tmp_path: Path) -> None:
    from tui.screens.histogram import HistogramScreen

    path = build(tmp_path, WIDE_YEARS, clears=YEARS_CLEARS)
    app = AshiatoApp(path, user_keymap=False)
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            timeline = app.screen
            await pilot.press(KEYMAP.keys("timeline", "histogram")[0])
            await settle(pilot)
            hist = app.screen
            assert isinstance(hist, HistogramScreen)
            seen["title"] = str(hist.query_one("#hist-title").render())
            listing = hist.query_one("#hist-list")
            seen["lines"] = [str(listing.get_option_at_index(i).prompt) for i in range(listing.option_count)]
            seen["fits"] = listing.option_count <= listing.size.height
            for _ in range(5):
                await pilot.press(KEYMAP.keys("histogram", "cursor_down")[0])
            await settle(pilot)
            seen["picked"] = hist.selected()
            await pilot.press(KEYMAP.keys("histogram", "select")[0])
            await settle(pilot)
            seen["filters"] = list(timeline.state.filters)  # type: ignore[attr-defined]
            seen["count"] = timeline.view.count  # type: ignore[attr-defined]

    asyncio.run(main())
    assert "13 events in 13 buckets of 1 year, 1 empty" in seen["title"]
    assert seen["fits"]  # every bucket on screen at once
    per_year = Counter(parse(t).year for t in [*WIDE_YEARS, *YEARS_CLEARS])
    assert [line.split()[:2] for line in seen["lines"]] == [[str(y), str(per_year[y])] for y in range(2012, 2025)]
    assert "no events" in seen["lines"][5] and "clear ×1" in seen["lines"][4]
    assert seen["picked"] == (datetime(2017, 1, 1), datetime(2018, 1, 1))
    assert seen["filters"] == ["after:2017-01-01T00:00:00 before:2018-01-01T00:00:00"]
    assert seen["count"] == 0


def test_a_resized_histogram_refits_its_buckets_to_the_rows_and_keeps_the_highlighted_time(tmp_path: Path) -> None:
    path = build(tmp_path, WIDE_YEARS)
    app = AshiatoApp(path, user_keymap=False)
    seen: list[tuple[views.BucketWidth, int, Any]] = []

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press(KEYMAP.keys("timeline", "histogram")[0])
            await settle(pilot)
            hist = app.screen
            for _ in range(5):
                await pilot.press(KEYMAP.keys("histogram", "cursor_down")[0])
            for size in ((80, 24), (160, 48)):
                await pilot.resize_terminal(*size)
                await settle(pilot)
                seen.append((hist.histogram.width, len(hist.histogram.buckets),  # type: ignore[attr-defined]
                             hist.selected()))  # type: ignore[attr-defined]

    asyncio.run(main())
    assert seen == [(views.BucketWidth("year"), 13, (datetime(2017, 1, 1), datetime(2018, 1, 1))),
                    (views.BucketWidth("month", 6), 26, (datetime(2017, 1, 1), datetime(2017, 7, 1)))]
