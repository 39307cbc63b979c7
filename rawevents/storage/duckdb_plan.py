"""How the DuckDB store cuts an export into scans: one histogram query trims the range to the
hours that hold rows and cuts it into pieces of about SCAN_TARGET_ROWS rows.

A ten-year range with one busy day then costs what that day costs, and each storage query sorts
about SCAN_TARGET_ROWS rows, so the engine's memory per export stays flat however dense the
data. Read-your-writes holds: an event acknowledged before the export started is counted in its
hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import duckdb

from rawevents.storage.base import ExportPlan
from rawevents.timeutil import TimeSegment

BUCKET_MS = 3_600_000  # histogram resolution
SCAN_TARGET_ROWS = 50_000  # rows per storage query, about; one hour with more stays one query


def narrow_to_data(plan: ExportPlan, con: duckdb.DuckDBPyConnection) -> ExportPlan:
    """The plan cut to where the project has rows, in pieces of about SCAN_TARGET_ROWS rows."""
    if not plan.segments:
        return plan
    sql = (
        "SELECT time_ms // ? AS bucket, count(*) FROM events"
        " WHERE project_id = ? AND time_ms >= ? AND time_ms < ?"
    )
    params: list[Any] = [BUCKET_MS, plan.project_id, plan.segments[0].start_ms, plan.segments[-1].end_ms]
    if plan.events is not None:
        sql += " AND list_contains(?, event)"
        params.append(list(plan.events))
    for condition in position_conditions(plan, params):  # incremental: count only the new rows
        sql += f" AND {condition}"
    buckets = sorted((int(b), int(n)) for b, n in con.execute(sql + " GROUP BY bucket", params).fetchall())
    # The histogram counts rows before `where`: cutting a filtered export at SCAN_TARGET_ROWS would
    # turn one selective scan into many near-empty queries, so with `where` the range is only
    # trimmed to the hours that hold rows and the store's own windows pace the scan.
    target = SCAN_TARGET_ROWS if plan.where is None else None
    return replace(plan, segments=tuple(pieces(plan.segments, buckets, target)))


def position_conditions(plan: ExportPlan, params: list[Any]) -> list[str]:
    """The incremental-export bounds on `seq` as SQL conditions, their values appended to params."""
    conditions = []
    if plan.after_position is not None:
        conditions.append("seq > ?")
        params.append(plan.after_position)
    if plan.upto_position is not None:
        conditions.append("seq <= ?")
        params.append(plan.upto_position)
    return conditions


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
