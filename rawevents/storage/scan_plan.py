"""How a store that counts rows per hour cuts an export into scans (the ClickHouse store does:
one histogram query, then scans of about SCAN_TARGET_ROWS rows each).

A ten-year range with one busy day then costs what that day costs, and each storage query reads
about SCAN_TARGET_ROWS rows, so the engine's memory per export stays flat however dense the data.
The DuckDB store needs no histogram: its time-clustered layout lists its runs' time bounds
(storage/duckdb_layout.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from rawevents.timeutil import TimeSegment

BUCKET_MS = 3_600_000  # histogram resolution
SCAN_TARGET_ROWS = 50_000  # rows per storage query, about; one hour with more stays one query


def pieces(
    segments: Sequence[TimeSegment], buckets: list[tuple[int, int]], target: int | None = SCAN_TARGET_ROWS
) -> list[TimeSegment]:
    """The segments cut to the hour buckets that hold rows, each piece holding about `target`
    rows (None: only trimmed)."""
    found: list[TimeSegment] = []
    for segment in segments:
        run_start: int | None = None
        run_end = run_rows = 0
        for bucket, count in buckets:
            low = max(segment.start_ms, bucket * BUCKET_MS)
            high = min(segment.end_ms, (bucket + 1) * BUCKET_MS)
            if low >= high:
                continue
            # A piece spans gaps (an empty stretch costs a query nothing) until it holds enough.
            if run_start is not None and target is not None and run_rows >= target:
                found.append(TimeSegment(run_start, run_end, segment.offset_ms))
                run_start = None
            if run_start is None:
                run_start, run_rows = low, 0
            run_end = high
            run_rows += count
        if run_start is not None:
            found.append(TimeSegment(run_start, run_end, segment.offset_ms))
    return found
