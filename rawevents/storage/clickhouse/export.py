"""How the ClickHouse store reads an export: one histogram query cuts the range into scans of about
SCAN_TARGET_ROWS rows, and each scan is one ordered window (`export_query`, the same text on chdb
and on a server).

A ten-year range with one busy day then costs what that day costs, and each storage query reads
about SCAN_TARGET_ROWS rows, so the engine's memory per export stays flat however dense the data.
The DuckDB store needs no histogram: its time-clustered layout lists its runs' time bounds
(storage/duckdb/schema.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rawevents.storage.base import ExportPlan
from rawevents.storage.clickhouse import identity
from rawevents.timeutil import TimeSegment
from rawevents.where.printer import Sql

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


def export_query(
    plan: ExportPlan,
    where: Sql | None,
    start: int,
    end: int,
    offset_ms: int,
    limit: int | None,
    resolve: bool = False,
    *,
    only_read_ids: bool = True,
) -> tuple[str, dict[str, Any]]:
    """One ordered window of an export (the same text on chdb and on a server). With `resolve`,
    ids are resolved through the project's identity rows (identity.resolved, reading
    only the rows of the window's ids with `only_read_ids`): the window's rows are resolved in
    read order, then filtered by `where` and ordered as without."""
    params: dict[str, Any] = {"p": plan.project_id, "low": start, "high": end}
    if plan.time_in_ms or plan.time_utc:
        # Splice the rendered time (local or UTC; ms or s) over the stored local seconds, whose
        # digits start at the character `time_pos` and are as long as the local seconds are; the
        # part before them is measured once to get its length in bytes.
        shown = (
            "time_ms + {shift:Int64}"
            if plan.time_in_ms
            else "toInt64(floor((time_ms + {shift:Int64}) / 1000))"
        )
        column = (
            f"concat(substringUTF8(line, 1, time_pos) AS head, toString({shown}),"
            " substring(line, length(head) + 1"
            " + length(toString(toInt64(floor((time_ms + {offset:Int64}) / 1000))))))"
        )
        params["offset"] = offset_ms
        params["shift"] = 0 if plan.time_utc else offset_ms
    else:
        column = "line"
    conditions = ["project_id = {p:Int32}", "time_ms >= {low:Int64}", "time_ms < {high:Int64}"]
    if plan.events is not None:
        conditions.append("has({events:Array(String)}, event)")
        params["events"] = list(plan.events)
    conditions += position_conditions(plan, params)
    source, filters = "events", conditions
    if resolve:  # the stored columns select the rows; `where` reads the resolved ones
        source = identity.resolved(" AND ".join(conditions), only_read_ids=only_read_ids)
        filters = []
    if where is not None:
        filters.append(f"({where.text})")
        params.update(where.params)
    sql = f"SELECT {column} AS out FROM {source}"
    if filters:
        sql += f" WHERE {' AND '.join(filters)}"
    sql += " ORDER BY time_ms, seq, node LIMIT 1 BY time_ms, dedup"
    if limit is not None:
        sql += " LIMIT {limit:UInt64}"
        params["limit"] = limit
    return sql, params


def position_conditions(plan: ExportPlan, params: dict[str, Any]) -> list[str]:
    """The incremental-export bounds on `seq` as conditions, their values added to params."""
    conditions = []
    if plan.after_position is not None:
        conditions.append("seq > {after:UInt64}")
        params["after"] = plan.after_position
    if plan.upto_position is not None:
        conditions.append("seq <= {upto:UInt64}")
        params["upto"] = plan.upto_position
    return conditions
