"""The explorer's reads on the ClickHouse store: segmentation, top values, raw-event pages.

Same semantics as the DuckDB store (rawevents/storage/duckdb/queries.py): buckets are project-local
wall-clock intervals (UTC instant + the offset of its segment), keys are the event name or
`string(on)`, the top `limit` keys by events over the range. Rows are deduplicated at read time
(`LIMIT 1 BY time_ms, dedup`) as the export does. One printer compiles both `where` and `on`, so
their named parameters never collide. A project with identity rows is read resolved (its events
looked up in them, identity.resolved): `distinct_id` and the line carry canonical ids.
"""

from __future__ import annotations

from typing import Any

from rawevents.storage.base import (
    DISTINCT_ID_KEYS,
    EventSelection,
    EventsPageQuery,
    PageRow,
    SegmentationQuery,
    SegmentCount,
)
from rawevents.storage.clickhouse import identity
from rawevents.storage.clickhouse.conn import Connection
from rawevents.where.ast import Node
from rawevents.where.printer import compile_predicate, compile_segment_key
from rawevents.where.printer.clickhouse import ClickHousePrinter

_DAY = 86_400_000
_FEW_IDENTITY_ROWS = 50_000  # a read resolves through all of a project's rows up to this many
_BUCKETS = {
    "minute": "intDiv({0}, 60000) * 60000",
    "hour": "intDiv({0}, 3600000) * 3600000",
    "day": f"intDiv({{0}}, {_DAY}) * {_DAY}",
    "week": f"(intDiv({{0}}, {_DAY}) - ((intDiv({{0}}, {_DAY}) + 3) % 7 + 7) % 7) * {_DAY}",
    "month": (
        "toUnixTimestamp64Milli(toDateTime64(toStartOfMonth(fromUnixTimestamp64Milli({0}, 'UTC')), 3, 'UTC'))"
    ),
}


def _rows(
    con: Connection,
    selection: EventSelection,
    columns: str,
    printer: ClickHousePrinter,
    params: dict[str, Any],
) -> str:
    """Deduplicated selected rows with `columns`, as a subquery (resolved when the project has
    identity rows: `where` and `columns` then read canonical ids)."""
    params.update({"p": selection.project_id, "low": selection.segments[0].start_ms})
    params["high"] = selection.segments[-1].end_ms
    conditions = ["project_id = {p:Int32}", "time_ms >= {low:Int64}", "time_ms < {high:Int64}"]
    if selection.events is not None:
        conditions.append("has({events:Array(String)}, event)")
        params["events"] = list(selection.events)
    source, filters = "events", conditions
    identity_rows = identity.row_count(con, selection.project_id)
    if identity_rows:  # a project with few rows reads them all, else only those of the ids read
        only = identity_rows > _FEW_IDENTITY_ROWS
        source, filters = identity.resolved(" AND ".join(conditions), only_read_ids=only), []
    if selection.where is not None:
        where = compile_predicate(printer, selection.where)
        filters.append(f"({where.text})")
        params.update(where.params)
    sql = f"SELECT {columns} FROM {source}"
    if filters:
        sql += f" WHERE {' AND '.join(filters)}"
    return sql + " LIMIT 1 BY time_ms, dedup"


def _local_ms(selection: EventSelection, params: dict[str, Any]) -> str:
    # The offset of the segment holding time_ms, looked up in arrays: a flat expression whatever
    # the number of segments (nested ifs passed ClickHouse's AST depth limit of 1000 past ~250
    # years of DST changes: a 500 on a long range, issue 26).
    segments = selection.segments
    params["seg_ends"] = [segment.end_ms for segment in segments[:-1]]
    params["seg_offsets"] = [segment.offset_ms for segment in segments]
    found = (
        "{seg_offsets:Array(Int64)}[arrayCount(seg_end -> seg_end <= time_ms, {seg_ends:Array(Int64)}) + 1]"
    )
    return f"(time_ms + {found})"


def _key(on: Node | None, printer: ClickHousePrinter, params: dict[str, Any]) -> str:
    if on is None:
        return "event"
    if on in DISTINCT_ID_KEYS:
        return "distinct_id"
    key = compile_segment_key(printer, on)
    params.update(key.params)
    return f"({key.text})"


def segmentation(con: Connection, query: SegmentationQuery) -> list[SegmentCount]:
    selection = query.selection
    printer = ClickHousePrinter(selection.timezone)
    params: dict[str, Any] = {"limit": query.limit}
    bucket = _BUCKETS[query.unit].format(_local_ms(selection, params))
    key = _key(query.on, printer, params)
    users = "uniqExact(distinct_id)" if query.unique else "toUInt64(0)"
    rows = _rows(con, selection, f"{bucket} AS bucket, {key} AS k, distinct_id", printer, params)
    sql = (
        f"WITH g AS (SELECT bucket, k, count() AS n, {users} AS u FROM ({rows})"
        " WHERE k IS NOT NULL GROUP BY bucket, k),"
        " t AS (SELECT k, sum(n) AS total FROM g GROUP BY k ORDER BY total DESC, k LIMIT {limit:UInt64})"
        " SELECT g.bucket, g.k, g.n, g.u FROM g INNER JOIN t USING (k) ORDER BY g.bucket, g.k"
    )
    found = con.table(sql, params)
    columns = [found.column(i).to_pylist() for i in range(4)]
    return [SegmentCount(int(b), k, int(n), int(u)) for b, k, n, u in zip(*columns, strict=True)]


def top_values(con: Connection, selection: EventSelection, on: Node, limit: int) -> list[tuple[str, int]]:
    printer = ClickHousePrinter(selection.timezone)
    params: dict[str, Any] = {"limit": limit}
    key = _key(on, printer, params)
    rows = _rows(con, selection, f"{key} AS k", printer, params)
    found = con.table(
        f"SELECT k, count() AS n FROM ({rows}) WHERE k IS NOT NULL GROUP BY k ORDER BY n DESC, k"
        " LIMIT {limit:UInt64}",
        params,
    )
    return [
        (k, int(n)) for k, n in zip(found.column(0).to_pylist(), found.column(1).to_pylist(), strict=True)
    ]


def events_page(con: Connection, query: EventsPageQuery) -> list[PageRow]:
    """Keyset pages on (time_ms, seq); rows of several nodes sharing both are kept together by
    ordering on node too (single-node stores never have such ties)."""
    printer = ClickHousePrinter(query.selection.timezone)
    params: dict[str, Any] = {"limit": query.limit}
    rows = _rows(con, query.selection, "time_ms, seq, node, line", printer, params)
    direction = "DESC" if query.newest_first else "ASC"
    sql = f"SELECT time_ms, seq, line FROM ({rows})"
    if query.cursor is not None:
        after = "<" if query.newest_first else ">"
        sql += f" WHERE (time_ms, seq) {after} ({{ct:Int64}}, {{cs:UInt64}})"
        params["ct"], params["cs"] = query.cursor
    sql += f" ORDER BY time_ms {direction}, seq {direction}, node {direction} LIMIT {{limit:UInt64}}"
    found = con.table(sql, params)
    columns = [found.column(i).to_pylist() for i in range(3)]
    return [PageRow(int(t), int(s), line) for t, s, line in zip(*columns, strict=True)]
