"""The export scan's adaptive time windows and pages: contiguous, complete, ordered, whatever
their sizes, over recent rows and over sorted runs."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from rawevents.eventline import assemble_line
from rawevents.storage.base import ExportPlan, StoredEvent
from rawevents.storage.duckdb import export as duckdb_export
from rawevents.storage.duckdb.export import _Pace, _windows
from rawevents.storage.duckdb.store import DuckDBStore
from rawevents.timeutil import TimeSegment

HOUR = 3_600_000


pytestmark = pytest.mark.usefixtures("export_reading")


def _event(time_ms: int, n: int) -> StoredEvent:
    pos, line = assemble_line("e", {"distinct_id": f"u{n}", "$insert_id": f"i{n}", "n": n}, time_ms // 1000)
    return StoredEvent(1, time_ms, "e", f"u{n}", f"i{n}", pos, line)


def test_windows_tile_every_segment_in_order() -> None:
    segments = [TimeSegment(0, 5 * HOUR + 7, 0), TimeSegment(5 * HOUR + 7, 400 * HOUR, 3600_000)]
    pace = _Pace()
    windows = []
    rng = random.Random(1)
    for segment in segments:
        for start, end, offset in _windows(segment, pace):
            windows.append((start, end, offset))
            pace.observe(end - start, rng.choice([0, 1, 50, 12_000, 1_000_000]))
    for segment in segments:
        mine = [(s, e) for s, e, o in windows if o == segment.offset_ms]
        assert mine[0][0] == segment.start_ms
        assert mine[-1][1] == segment.end_ms
        assert all(a[1] == b[0] for a, b in itertools.pairwise(mine))
        assert all(s < e for s, e in mine)


def test_pace_aims_at_the_target_and_stays_bounded() -> None:
    pace = _Pace()
    pace.observe(HOUR, duckdb_export.TARGET_ROWS * 2)  # twice too dense: halve
    assert pace.width == HOUR // 2
    pace.observe(HOUR, 0)  # empty: grow, at most 16x
    assert pace.width == 16 * HOUR
    pace.observe(HOUR, duckdb_export.TARGET_ROWS // 2)  # half the target: twice as wide
    assert pace.width == 2 * HOUR
    pace.observe(HOUR, 10**9)  # very dense: shrink, at most 4x
    assert pace.width == HOUR // 4
    for _ in range(50):
        pace.observe(pace.width, 0)
    assert pace.width == duckdb_export.MAX_CHUNK_MS
    for _ in range(50):
        pace.observe(pace.width, 10**9)
    assert pace.width == duckdb_export.MIN_CHUNK_MS


@pytest.mark.parametrize("compacted", [False, True], ids=["recent", "runs"])
@pytest.mark.parametrize("limit", [None, 1, 333])
def test_export_is_complete_and_ordered_across_many_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int | None, compacted: bool
) -> None:
    monkeypatch.setattr(duckdb_export, "TARGET_ROWS", 7)  # many tiny windows and pages
    monkeypatch.setattr(duckdb_export, "MIN_PAGE_ROWS", 3)  # pages that end inside a run of ties
    rng = random.Random(7)
    # A dense burst, a long gap, sparse rows, and ties on time_ms (ordered by ingestion).
    times = [10 * HOUR + rng.randrange(60_000) for _ in range(400)]
    times += [200 * HOUR + rng.randrange(100 * HOUR) for _ in range(100)]
    times += [150 * HOUR] * 40
    events = [_event(t, n) for n, t in enumerate(times)]
    store = DuckDBStore(tmp_path, background_compaction=False)
    try:
        for i in range(0, len(events), 97):
            store.submit_events(events[i : i + 97]).result()
        if compacted:
            store.compact()
        plan = ExportPlan(1, [TimeSegment(0, 400 * HOUR, 0)], limit=limit)
        body = b"".join(bytes(chunk) for chunk in store.export_chunks(plan))
    finally:
        store.close()
    expected = [e.line for _, e in sorted(enumerate(events), key=lambda p: (p[1].time_ms, p[0]))]
    if limit is not None:
        expected = expected[:limit]
    assert body.decode() == "".join(expected)
