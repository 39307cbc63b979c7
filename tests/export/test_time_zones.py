"""Time semantics: local calendar days as half-open UTC instants, exported `time` = UTC epoch +
the offset in force at that instant, across DST transitions in west, east and 30/45-minute zones."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from rawevents import timeutil
from rawevents.projects import Project
from rawevents.service import Services
from tests.export.helpers import basic, rows, stored_event

# (zone, local day containing a transition): both transitions of each DST zone, plus Kathmandu
# (+05:45, no DST) and Kolkata (+05:30).
TRANSITION_DAYS = [
    ("America/New_York", dt.date(2024, 3, 10)),  # 02:00 EST -> 03:00 EDT, 23-hour day
    ("America/New_York", dt.date(2024, 11, 3)),  # 02:00 EDT -> 01:00 EST, 25-hour day
    ("Europe/Berlin", dt.date(2024, 3, 31)),  # 02:00 CET -> 03:00 CEST
    ("Europe/Berlin", dt.date(2024, 10, 27)),  # 03:00 CEST -> 02:00 CET
    ("Australia/Adelaide", dt.date(2024, 4, 7)),  # 03:00 ACDT (+10:30) -> 02:00 ACST (+09:30)
    ("Australia/Adelaide", dt.date(2024, 10, 6)),  # 02:00 ACST -> 03:00 ACDT
    ("Asia/Kathmandu", dt.date(2024, 6, 1)),
    ("Asia/Kolkata", dt.date(2024, 6, 1)),
]
STEP_MS = 7 * 60_000 + 13_457  # an odd step so samples land on every minute phase


def _local_day(tz: ZoneInfo, utc_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(utc_ms / 1000, dt.UTC).astimezone(tz).date()


def _expected_local_seconds(tz: ZoneInfo, utc_ms: int) -> int:
    offset = dt.datetime.fromtimestamp(utc_ms / 1000, dt.UTC).astimezone(tz).utcoffset()
    assert offset is not None
    return (utc_ms + int(offset.total_seconds() * 1000)) // 1000


@pytest.mark.parametrize(("zone", "day"), TRANSITION_DAYS)
def test_export_of_a_transition_day(client: TestClient, services: Services, zone: str, day: dt.date) -> None:
    project = services.registry.create_project(f"tz-{zone}", zone)
    tz = project.zone
    noon = int(dt.datetime.combine(day, dt.time(12), tz).timestamp() * 1000)
    instants = list(range(noon - 40 * 3600_000, noon + 40 * 3600_000, STEP_MS))
    services.store.submit_events(
        [stored_event(project, "tick", t, distinct_id=str(t)) for t in instants]
    ).result()
    inside = [t for t in instants if _local_day(tz, t) == day]
    assert inside and len(inside) < len(instants)
    query = f"from_date={day}&to_date={day}"
    got = rows(client.get(f"/api/2.0/export?{query}", headers=basic(project.api_secret)).content)
    assert [int(r["properties"]["distinct_id"]) for r in got] == inside
    assert [r["properties"]["time"] for r in got] == [_expected_local_seconds(tz, t) for t in inside]
    got_ms = rows(
        client.get(f"/api/2.0/export?{query}&time_in_ms=1", headers=basic(project.api_secret)).content
    )
    assert [r["properties"]["time"] for r in got_ms] == [
        t + int(dt.datetime.fromtimestamp(t / 1000, dt.UTC).astimezone(tz).utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]
        for t in inside
    ]


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("America/New_York", dt.date(2024, 3, 10), 23),
        ("America/New_York", dt.date(2024, 11, 3), 25),
        ("Europe/Berlin", dt.date(2024, 3, 31), 23),
        ("Europe/Berlin", dt.date(2024, 10, 27), 25),
        ("Australia/Adelaide", dt.date(2024, 4, 7), 25),
        ("Australia/Adelaide", dt.date(2024, 10, 6), 23),
        ("Asia/Kathmandu", dt.date(2024, 6, 1), 24),
        ("UTC", dt.date(2024, 6, 1), 24),
    ],
)
def test_day_lengths(zone: str, day: dt.date, hours: int) -> None:
    start, end = timeutil.day_range_ms(ZoneInfo(zone), day, day)
    assert end - start == hours * 3600_000


def test_utc_projects_export_true_epochs(client: TestClient, services: Services) -> None:
    project = services.registry.create_project("utc", "UTC")
    t = int(dt.datetime(2024, 3, 10, 23, 59, 59, 999000, tzinfo=dt.UTC).timestamp() * 1000)
    services.store.submit_events([stored_event(project, "e", t, distinct_id="d")]).result()
    got = rows(
        client.get(
            "/api/2.0/export?from_date=2024-03-10&to_date=2024-03-10", headers=basic(project.api_secret)
        ).content
    )
    assert got[0]["properties"]["time"] == t // 1000


ZONES = [
    "UTC", "America/New_York", "Europe/Berlin", "Australia/Adelaide", "Asia/Kathmandu", "Asia/Kolkata",
    "America/Santiago", "America/Havana", "Asia/Beirut", "Pacific/Apia", "Australia/Lord_Howe",
    "America/St_Johns", "Pacific/Chatham", "Africa/Casablanca", "America/Sao_Paulo",
]  # fmt: skip
dates = st.dates(min_value=dt.date(1971, 1, 1), max_value=dt.date(2099, 12, 30))


@given(zone=st.sampled_from(ZONES), first=dates, a=st.integers(0, 40), b=st.integers(0, 40))
def test_adjacent_ranges_neither_overlap_nor_leave_gaps(zone: str, first: dt.date, a: int, b: int) -> None:
    tz = ZoneInfo(zone)
    middle = first + dt.timedelta(days=a)
    last = middle + dt.timedelta(days=1 + b)
    left = timeutil.day_range_ms(tz, first, middle)
    right = timeutil.day_range_ms(tz, middle + dt.timedelta(days=1), last)
    whole = timeutil.day_range_ms(tz, first, last)
    assert left[1] == right[0]  # the next range starts exactly where this one ends
    assert (left[0], right[1]) == whole
    assert left[0] < left[1] < right[1]
    # The first and last instants of each range belong to its first and last local days.
    assert _local_day(tz, left[0]) == first and _local_day(tz, left[1] - 1) == middle
    assert _local_day(tz, right[0]) == middle + dt.timedelta(days=1) and _local_day(tz, right[1] - 1) == last


@given(zone=st.sampled_from(ZONES), first=dates, span=st.integers(0, 400))
def test_offset_segments_tile_the_range_with_the_offset_in_force(
    zone: str, first: dt.date, span: int
) -> None:
    tz = ZoneInfo(zone)
    start, end = timeutil.day_range_ms(tz, first, first + dt.timedelta(days=span))
    segments = timeutil.offset_segments(tz, start, end)
    assert segments[0].start_ms == start and segments[-1].end_ms == end
    for before, after in itertools.pairwise(segments):
        assert before.end_ms == after.start_ms and before.offset_ms != after.offset_ms
    for segment in segments:
        assert segment.start_ms < segment.end_ms
        for instant in (segment.start_ms, segment.end_ms - 1):
            assert timeutil.offset_ms_at(tz, instant) == segment.offset_ms
            assert timeutil.local_seconds(tz, instant) == _expected_local_seconds(tz, instant)


def test_project_helpers_agree(services: Services) -> None:
    project: Project = services.registry.create_project("k", "Asia/Kathmandu")
    t = int(dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert timeutil.local_seconds(project.zone, t) == t // 1000 + 5 * 3600 + 45 * 60
