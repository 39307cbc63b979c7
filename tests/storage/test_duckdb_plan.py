"""The DuckDB store's scan planning: trimmed to the hours that hold rows, cut into bounded pieces."""

from __future__ import annotations

import itertools

import duckdb
import pytest

from rawevents.storage import duckdb_plan
from rawevents.storage.base import ExportPlan
from rawevents.storage.duckdb_plan import BUCKET_MS, SCAN_TARGET_ROWS, narrow_to_data, pieces
from rawevents.timeutil import TimeSegment
from rawevents.where import parse

HOUR = BUCKET_MS
DAY_MS = 1_714_521_600_000  # 2024-05-01T00:00Z


def test_unfiltered_exports_are_cut_and_filtered_ones_only_trimmed() -> None:
    day = TimeSegment(0, 24 * HOUR, 0)
    buckets = [(hour, SCAN_TARGET_ROWS) for hour in range(3, 9)]
    assert [(s.start_ms, s.end_ms) for s in pieces([day], buckets)] == [
        (hour * HOUR, (hour + 1) * HOUR) for hour in range(3, 9)
    ]
    assert [(s.start_ms, s.end_ms) for s in pieces([day], buckets, None)] == [(3 * HOUR, 9 * HOUR)]


def _events(rows: list[tuple[int, int, str]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE events (project_id INTEGER, time_ms BIGINT, event VARCHAR)")
    con.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
    return con


def test_dense_data_is_cut_into_bounded_scans_and_empty_stretches_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(duckdb_plan, "SCAN_TARGET_ROWS", 100)
    # 1000 rows over 10 hours, then nothing for a week, then 5 rows; another project in between.
    rows = [(1, DAY_MS + i * 36_000, "e") for i in range(1000)]
    rows += [(1, DAY_MS + 7 * 86_400_000 + i, "e") for i in range(5)]
    rows += [(2, DAY_MS + 3 * 86_400_000, "e")]
    plan = ExportPlan(1, (TimeSegment(DAY_MS - 30 * 86_400_000, DAY_MS + 20 * 86_400_000, 0),))
    narrowed = narrow_to_data(plan, _events(rows))
    assert narrowed.segments[0].start_ms == DAY_MS
    assert narrowed.segments[-1].end_ms == DAY_MS + 7 * 86_400_000 + HOUR
    # One piece per full 100-row hour, then the late rows alone: the empty week is never scanned.
    assert len(narrowed.segments) == 11
    assert narrowed.segments[-1].start_ms == DAY_MS + 7 * 86_400_000
    assert all(a.end_ms <= b.start_ms for a, b in itertools.pairwise(narrowed.segments))


def test_event_filter_and_where_shape_the_pieces() -> None:
    rows = [(1, DAY_MS + i * HOUR, ("signup", "other")[i % 2]) for i in range(6)]
    plan = ExportPlan(1, (TimeSegment(DAY_MS, DAY_MS + 86_400_000, 0),), events=("nothing",))
    assert narrow_to_data(plan, _events(rows)).segments == ()
    filtered = ExportPlan(1, (TimeSegment(DAY_MS, DAY_MS + 86_400_000, 0),), where=parse("true"))
    assert [(s.start_ms, s.end_ms) for s in narrow_to_data(filtered, _events(rows)).segments] == [
        (DAY_MS, DAY_MS + 6 * HOUR)
    ]
