"""The ClickHouse store's identity rows: one row per id whose canonical id is another, written by
the writer job that stores the events carrying the links, and joined in at read time (the same
rows and rules as the embedded store's, rawevents/storage/duckdb_identity.py).

`identity` holds (project_id, distinct_id → canonical_id) with the two export-line fragments a
reader splices (`rawevents.identity.line_fragments`), the ingestion position (`seq`, the writer's
µs tick) of the event whose link last changed the row, and that event's time (retention). It is
a ReplacingMergeTree keyed by (project_id, distinct_id): a change inserts a new version (`version`,
a tick of the writer that made it) and every read uses FINAL, so readers see one row per id, the
newest, before any merge. Only deletions (GDPR, retention, a deleted project) remove rows, with
every version.

Readers of a project that has rows read `resolved(...)` instead of `events`: the same columns,
with `distinct_id` the canonical id and `line` carrying it (and `$distinct_id_before_identity`),
from a LEFT ANY JOIN of the selected events to the project's rows; a project without rows reads
`events` as before, at no cost. Links from several hosts sharing one server are applied by each
host's writer on its own: two hosts linking the same ids in the same instant may each build on
rows the other is replacing (the newest version wins).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rawevents.identity import IdentityGraph, Link, line_fragments, needed_ids
from rawevents.storage.clickhouse_conn import Connection, Params

IDENTITY = "identity"

# {cluster} is "" or " ON CLUSTER name" (docs/scale-out.md gives the replicated variant).
SCHEMA = """
CREATE TABLE IF NOT EXISTS identity{cluster} (
    project_id Int32,
    distinct_id String,
    canonical_id String,
    stored_fragment String,
    resolved_fragment String,
    seq UInt64,
    time_ms Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, distinct_id)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1
"""

_ROWS_SCHEMA = pa.schema(
    [
        ("project_id", pa.int32()),
        ("distinct_id", pa.string()),
        ("canonical_id", pa.string()),
        ("stored_fragment", pa.string()),
        ("resolved_fragment", pa.string()),
        ("seq", pa.uint64()),
        ("time_ms", pa.int64()),
        ("version", pa.uint64()),
    ]
)

# The project's current rows, as the right side of a reader's join (`{p:Int32}`: the project).
_MAP = (
    "SELECT distinct_id AS member, canonical_id, stored_fragment, resolved_fragment, toUInt8(1) AS linked"
    f" FROM {IDENTITY} FINAL WHERE project_id = {{p:Int32}}"
)
# The line with the stored `,"distinct_id":<id>` replaced by the resolved fragment: the first
# occurrence is the top-level key (it follows `time`, and inside a JSON string every quote is
# escaped). An id stored as a JSON number is not found and its line is kept as sent. Unmatched
# rows of the LEFT JOIN carry defaults (`linked` = 0).
_AT = "position(e.sent_line, m.stored_fragment)"
_SPLICE = (
    f"if(m.linked = 0 OR {_AT} = 0, e.sent_line, concat(substring(e.sent_line, 1, {_AT} - 1),"
    f" m.resolved_fragment, substring(e.sent_line, {_AT} + length(m.stored_fragment))))"
)


def resolved(conditions: str) -> str:
    """A relation of the events matching `conditions` (over the `events` columns; the project
    is the `{p:Int32}` parameter), in which `distinct_id` and `line` are resolved. Columns:
    time_ms, seq, node, dedup, event, time_pos, insert_id, distinct_id, line."""
    return (
        "(SELECT e.time_ms AS time_ms, e.seq AS seq, e.node AS node, e.dedup AS dedup, e.event AS event,"
        " e.time_pos AS time_pos, e.insert_id AS insert_id,"
        f" if(m.linked = 1, m.canonical_id, e.sent_id) AS distinct_id, {_SPLICE} AS line"
        " FROM (SELECT time_ms, seq, node, dedup, event, time_pos, insert_id, distinct_id AS sent_id,"
        f" line AS sent_line FROM events WHERE {conditions}) AS e"
        f" LEFT ANY JOIN ({_MAP}) AS m ON e.sent_id = m.member)"
    )


def has_rows(con: Connection, project_id: int) -> bool:
    """Whether any id of the project resolves to another (else readers skip the join)."""
    found = con.table(f"SELECT 1 FROM {IDENTITY} WHERE project_id = {{p:Int32}} LIMIT 1", {"p": project_id})
    return bool(found.num_rows > 0)


# -- writes (in the writer job that stores the events) ---------------------------------------------


def apply_links(con: Connection, incoming: pa.Table, version: int) -> None:
    """Apply the links of a commit's incoming events (with `seq`), in ingestion order; the rows
    written carry `version` (a tick of the writer, above every version it wrote before)."""
    linking = incoming.filter(pc.not_equal(incoming.column("link_kind"), 0))
    if linking.num_rows == 0:
        return
    rows = zip(
        *(
            linking.column(name).to_pylist()
            for name in ("project_id", "seq", "time_ms", "link_kind", "link_source", "link_target")
        ),
        strict=True,
    )
    for project_id, group in groupby(sorted(rows, key=lambda row: (row[0], row[1])), key=lambda row: row[0]):
        links = [
            (Link(kind, source, target), seq, time_ms) for _, seq, time_ms, kind, source, target in group
        ]
        _apply_project_links(con, project_id, links, version)


def _apply_project_links(
    con: Connection, project_id: int, links: list[tuple[Link, int, int]], version: int
) -> None:
    graph = IdentityGraph(_cluster_rows(con, project_id, needed_ids(link for link, _, _ in links)))
    made: dict[str, tuple[int, int]] = {}  # id → (seq, time_ms) of the link that last moved it
    for link, seq, time_ms in links:
        for member in graph.apply(link):
            made[member] = (seq, time_ms)
    if not graph.changed:
        return
    _insert(
        con,
        [
            (
                project_id,
                member,
                graph.changed[member],
                *line_fragments(member, graph.changed[member]),
                *made[member],
                version,
            )
            for member in sorted(graph.changed)
        ],
    )


def _insert(con: Connection, rows: list[tuple[Any, ...]]) -> None:
    """New versions of these ids' rows (FINAL reads see them in place of the old ones)."""
    con.insert(
        IDENTITY,
        pa.Table.from_pylist(
            [dict(zip(_ROWS_SCHEMA.names, row, strict=True)) for row in rows], schema=_ROWS_SCHEMA
        ),
    )


def _cluster_rows(con: Connection, project_id: int, ids: Iterable[str]) -> dict[str, str]:
    """The rows of every cluster that one of `ids` belongs to (as member or canonical id)."""
    named = sorted(ids)
    sql = f"SELECT distinct_id, canonical_id FROM {IDENTITY} FINAL WHERE project_id = {{p:Int32}}"
    found = _pairs(
        con,
        sql + " AND (has({ids:Array(String)}, distinct_id) OR has({ids:Array(String)}, canonical_id))",
        {"p": project_id, "ids": named},
    )
    canonicals = sorted({canonical for _, canonical in found} - set(named))
    if canonicals:
        found += _pairs(
            con, sql + " AND has({ids:Array(String)}, canonical_id)", {"p": project_id, "ids": canonicals}
        )
    return dict(found)


def _pairs(con: Connection, sql: str, params: Params) -> list[tuple[str, str]]:
    found = con.table(sql, params)
    return list(zip(found.column(0).to_pylist(), found.column(1).to_pylist(), strict=True))


# -- reads ---------------------------------------------------------------------------------------


def cluster_members(con: Connection, project_id: int, ids: Sequence[str]) -> list[str]:
    """`ids` and every other id of their clusters (what a GDPR request naming one id covers)."""
    rows = _cluster_rows(con, project_id, ids)
    return sorted({*ids, *rows, *rows.values()})


def mappings(
    con: Connection, project_id: int, after: int | None = None, upto: int | None = None
) -> list[tuple[str, str]]:
    """(distinct_id, resolved_distinct_id) of every id that resolves to another, by id; with
    `after`/`upto`, only rows last changed by an event in that range of ingestion positions."""
    sql = f"SELECT distinct_id, canonical_id FROM {IDENTITY} FINAL WHERE project_id = {{p:Int32}}"
    params: dict[str, Any] = {"p": project_id}
    if after is not None:
        sql += " AND seq > {after:UInt64}"
        params["after"] = after
    if upto is not None:
        sql += " AND seq <= {upto:UInt64}"
        params["upto"] = upto
    return _pairs(con, sql + " ORDER BY distinct_id", params)


def mappings_of(con: Connection, project_id: int, ids: Iterable[str]) -> list[tuple[str, str]]:
    """(distinct_id, canonical_id) of those of `ids` that resolve to another id."""
    return _pairs(
        con,
        f"SELECT distinct_id, canonical_id FROM {IDENTITY} FINAL"
        " WHERE project_id = {p:Int32} AND has({ids:Array(String)}, distinct_id)",
        {"p": project_id, "ids": sorted(ids)},
    )


def put_rows(
    con: Connection, project_id: int, rows: Sequence[tuple[str, str]], seq: int, version: int
) -> None:
    """Store mappings as they are (a migration from another store); replaces those ids' rows."""
    if rows:
        _insert(con, [(project_id, d, c, *line_fragments(d, c), max(seq, 0), 0, version) for d, c in rows])


def drop_expired(con: Connection, project_id: int, cutoff_ms: int) -> None:
    """Retention: drop the rows made by events before the cutoff whose id no kept event carries
    (every version of them: an older version must not come back)."""
    delete_rows(
        con,
        "(project_id, distinct_id) IN (SELECT project_id, distinct_id FROM identity FINAL"
        " WHERE project_id = {p:Int32} AND time_ms < {cutoff:Int64} AND distinct_id NOT IN"
        " (SELECT distinct_id FROM events WHERE project_id = {p:Int32} AND distinct_id IS NOT NULL))",
        {"p": project_id, "cutoff": cutoff_ms},
    )


def delete_rows(con: Connection, where: str, params: Params) -> None:
    """Delete the rows `where` selects, every version (lightweight DELETE, synchronous)."""
    found = con.table(f"SELECT 1 FROM {IDENTITY} WHERE {where} LIMIT 1", params)
    if found.num_rows:
        con.command(f"DELETE FROM {IDENTITY} WHERE {where}", params)
