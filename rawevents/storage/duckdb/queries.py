"""The explorer's reads on the DuckDB store: segmentation, top values, raw-event pages.

Buckets are project-local wall-clock intervals (UTC instant + the offset of its segment), keys are
the event name or `string(on)`, the top `limit` keys by events over the range (the same semantics
as rawevents/storage/clickhouse/queries.py). A project with identity links is read resolved
(identity.resolved): `distinct_id` and the line carry canonical ids.
"""

from __future__ import annotations

from typing import Any

import duckdb

from rawevents.storage.base import (
    DISTINCT_ID_KEYS,
    EventSelection,
    EventsPageQuery,
    PageRow,
    SegmentationQuery,
    SegmentCount,
)
from rawevents.storage.duckdb import identity
from rawevents.where.ast import Node
from rawevents.where.printer import compile_predicate, compile_segment_key
from rawevents.where.printer.duckdb import DuckDBPrinter


def segmentation(con: duckdb.DuckDBPyConnection, query: SegmentationQuery) -> list[SegmentCount]:
    # One scan grouped by (bucket, key); the window sums pick the top keys afterwards, so the
    # events are read once whatever the limit.
    bucket, bucket_params = _bucket_sql(query.selection, query.unit)
    key, key_params = _key_sql(query.on, query.selection.timezone)
    users = "count(DISTINCT distinct_id)" if query.unique else "0"
    conditions, params = _selection_sql(query.selection)
    source = _events_of(con, query.selection.project_id)
    sql = (
        f"WITH r AS (SELECT {bucket} AS bucket, {key} AS k, distinct_id"
        f" FROM {source} WHERE {conditions}),"
        f" g AS (SELECT bucket, k, count(*) AS n, {users} AS u FROM r"
        " WHERE k IS NOT NULL GROUP BY bucket, k),"
        " t AS (SELECT k, sum(n) AS total FROM g GROUP BY k ORDER BY total DESC, k LIMIT ?)"
        " SELECT g.bucket, g.k, g.n, g.u FROM g JOIN t USING (k) ORDER BY g.bucket, g.k"
    )
    rows = con.execute(sql, [*bucket_params, *key_params, *params, query.limit]).fetchall()
    return [SegmentCount(int(b), k, int(n), int(u)) for b, k, n, u in rows]


def top_values(
    con: duckdb.DuckDBPyConnection, selection: EventSelection, on: Node, limit: int
) -> list[tuple[str, int]]:
    key, key_params = _key_sql(on, selection.timezone)
    conditions, params = _selection_sql(selection)
    source = _events_of(con, selection.project_id)
    sql = (
        f"SELECT k, count(*) AS n FROM (SELECT {key} AS k FROM {source} WHERE {conditions})"
        " WHERE k IS NOT NULL GROUP BY k ORDER BY n DESC, k LIMIT ?"
    )
    return [(k, int(n)) for k, n in con.execute(sql, [*key_params, *params, limit]).fetchall()]


def events_page(con: duckdb.DuckDBPyConnection, query: EventsPageQuery) -> list[PageRow]:
    conditions, params = _selection_sql(query.selection)
    direction = "DESC" if query.newest_first else "ASC"
    if query.cursor is not None:
        after = "<" if query.newest_first else ">"
        conditions += f" AND (time_ms {after} ? OR (time_ms = ? AND seq {after} ?))"
        time_ms, seq = query.cursor
        params += [time_ms, time_ms, seq]
    source = _events_of(con, query.selection.project_id)
    sql = (
        f"SELECT time_ms, seq, line FROM {source} WHERE {conditions}"
        f" ORDER BY time_ms {direction}, seq {direction} LIMIT ?"
    )
    return [
        PageRow(int(t), int(s), line) for t, s, line in con.execute(sql, [*params, query.limit]).fetchall()
    ]


def _events_of(con: duckdb.DuckDBPyConnection, project_id: int) -> str:
    """The relation a query of the project reads: its events with ids resolved, when any id of
    the project resolves to another."""
    linked = identity.has_rows(con, project_id)
    return identity.resolved("events") if linked else "events"


def _selection_sql(selection: EventSelection) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of a selection: project, range, events, `where`."""
    segments = selection.segments
    conditions = ["project_id = ?", "time_ms >= ?", "time_ms < ?"]
    params: list[Any] = [selection.project_id, segments[0].start_ms, segments[-1].end_ms]
    if selection.events is not None:
        conditions.append("list_contains(?, event)")
        params.append(list(selection.events))
    if selection.where is not None:
        where = compile_predicate(DuckDBPrinter(selection.timezone), selection.where)
        conditions.append(f"({where.text})")
        params.extend(where.params)
    return " AND ".join(conditions), params


def _local_ms_sql(selection: EventSelection) -> tuple[str, list[Any]]:
    """Project-local wall-clock milliseconds: time_ms plus the offset of its segment."""
    segments = selection.segments
    if len(segments) == 1:
        return "(time_ms + ?)", [segments[0].offset_ms]
    branches = " ".join("WHEN time_ms < ? THEN ?" for _ in segments[:-1])
    params: list[Any] = []
    for segment in segments[:-1]:
        params += [segment.end_ms, segment.offset_ms]
    return f"(time_ms + CASE {branches} ELSE ? END)", [*params, segments[-1].offset_ms]


_DAY = 86_400_000
# Bucket starts from local milliseconds `{0}`. Weeks start on Monday (1970-01-01 was a Thursday).
_BUCKETS = {
    "minute": "({0} // 60000 * 60000)",
    "hour": "({0} // 3600000 * 3600000)",
    "day": f"({{0}} // {_DAY} * {_DAY})",
    "week": f"(({{0}} // {_DAY} - ((({{0}} // {_DAY}) + 3) % 7 + 7) % 7) * {_DAY})",
    "month": "epoch_ms(date_trunc('month', epoch_ms({0})))",
}


def _bucket_sql(selection: EventSelection, unit: str) -> tuple[str, list[Any]]:
    local, params = _local_ms_sql(selection)
    template = _BUCKETS[unit]
    uses = template.count("{0}")
    return template.format(local), params * uses


def _key_sql(on: Node | None, timezone: str) -> tuple[str, list[Any]]:
    """The segment key: the event name, or `string(on)` (NULL when undefined or null)."""
    if on is None:
        return "event", []
    if on in DISTINCT_ID_KEYS:
        return "distinct_id", []
    key = compile_segment_key(DuckDBPrinter(timezone), on)
    return f"({key.text})", list(key.params)
