"""The embedded store's identity rows: one row per id whose canonical id is another, written in
the commit that stores the events carrying the links, and joined in at read time.

`identity_map` holds (project_id, distinct_id → canonical_id) with the two export-line fragments a
reader splices (`rawevents.identity.line_fragments`), the ingestion position (`seq`) of the event
whose link last changed the row (so a client can ask for the mappings changed since its previous
run) and that event's time (retention). Readers of a project that has rows read `resolved(...)`
instead of the table itself: the same columns, with `distinct_id` the canonical id and `line`
carrying it (and `$distinct_id_before_identity`); a project without rows reads the table as
before, at no cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rawevents.identity import IdentityGraph, Link, line_fragments, needed_ids
from rawevents.storage.duckdb_layout import affected_rows, first_row, registered

IDENTITY = "identity_map"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {IDENTITY} (
    project_id INTEGER NOT NULL,
    distinct_id VARCHAR NOT NULL,
    canonical_id VARCHAR NOT NULL,
    stored_fragment VARCHAR NOT NULL,
    resolved_fragment VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    time_ms BIGINT NOT NULL
)
"""

_ROWS_SCHEMA = pa.schema(
    [
        ("project_id", pa.int32()),
        ("distinct_id", pa.string()),
        ("canonical_id", pa.string()),
        ("stored_fragment", pa.string()),
        ("resolved_fragment", pa.string()),
        ("seq", pa.int64()),
        ("time_ms", pa.int64()),
    ]
)

# The line with the stored `,"distinct_id":<id>` replaced by the resolved fragment: the first
# occurrence is the top-level key (it follows `time`, and inside a JSON string every quote is
# escaped). An id stored as a JSON number is not found and its line is kept as sent.
_SPLICE = (
    "CASE WHEN m.canonical_id IS NULL OR strpos(e.line, m.stored_fragment) = 0 THEN e.line"
    " ELSE e.line[:strpos(e.line, m.stored_fragment) - 1] || m.resolved_fragment"
    " || e.line[strpos(e.line, m.stored_fragment) + length(m.stored_fragment):] END"
)


def resolved(table: str, *, run_batch: bool = False) -> str:
    """A relation with `table`'s event columns in which `distinct_id` and `line` are resolved."""
    extra = ", e.run_batch" if run_batch else ""
    return (
        f"(SELECT e.project_id, e.time_ms, e.seq, e.event, coalesce(m.canonical_id, e.distinct_id)"
        f" AS distinct_id, e.insert_id, e.time_pos, {_SPLICE} AS line{extra}"
        f" FROM {table} AS e LEFT JOIN {IDENTITY} AS m"
        " ON m.project_id = e.project_id AND m.distinct_id = e.distinct_id)"
    )


def has_rows(con: duckdb.DuckDBPyConnection, project_id: int) -> bool:
    """Whether any id of the project resolves to another (else readers skip the join)."""
    return first_row(con, f"SELECT 1 FROM {IDENTITY} WHERE project_id = ? LIMIT 1", [project_id]) is not None


# -- writes (in the writer's transaction) ----------------------------------------------------------


def apply_links(con: duckdb.DuckDBPyConnection, incoming: pa.Table) -> None:
    """Apply the links of a commit's incoming events (with `seq`), in ingestion order."""
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
        _apply_project_links(con, project_id, links)


def _apply_project_links(
    con: duckdb.DuckDBPyConnection, project_id: int, links: list[tuple[Link, int, int]]
) -> None:
    graph = IdentityGraph(_cluster_rows(con, project_id, needed_ids(link for link, _, _ in links)))
    made: dict[str, tuple[int, int]] = {}  # id → (seq, time_ms) of the link that last moved it
    for link, seq, time_ms in links:
        for member in graph.apply(link):
            made[member] = (seq, time_ms)
    if not graph.changed:
        return
    changed = sorted(graph.changed)
    affected_rows(
        con,
        f"DELETE FROM {IDENTITY} WHERE project_id = ? AND list_contains(?, distinct_id)",
        [project_id, changed],
    )
    _insert(
        con,
        [
            (
                project_id,
                member,
                graph.changed[member],
                *line_fragments(member, graph.changed[member]),
                *made[member],
            )
            for member in changed
        ],
    )


def _insert(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    table = pa.Table.from_pylist(
        [dict(zip(_ROWS_SCHEMA.names, row, strict=True)) for row in rows], schema=_ROWS_SCHEMA
    )
    with registered(con, "identity_rows", table):
        con.execute(f"INSERT INTO {IDENTITY} SELECT * FROM identity_rows")


def _cluster_rows(con: duckdb.DuckDBPyConnection, project_id: int, ids: Iterable[str]) -> dict[str, str]:
    """The rows of every cluster that one of `ids` belongs to (as member or canonical id)."""
    named = sorted(ids)
    found = con.execute(
        f"SELECT distinct_id, canonical_id FROM {IDENTITY} WHERE project_id = ?"
        " AND (list_contains(?, distinct_id) OR list_contains(?, canonical_id))",
        [project_id, named, named],
    ).fetchall()
    canonicals = sorted({canonical for _, canonical in found} - set(named))
    if canonicals:
        found += con.execute(
            f"SELECT distinct_id, canonical_id FROM {IDENTITY} WHERE project_id = ?"
            " AND list_contains(?, canonical_id)",
            [project_id, canonicals],
        ).fetchall()
    return dict(found)


# -- reads ---------------------------------------------------------------------------------------


def cluster_members(con: duckdb.DuckDBPyConnection, project_id: int, ids: Sequence[str]) -> list[str]:
    """`ids` and every other id of their clusters (what a GDPR request naming one id covers)."""
    rows = _cluster_rows(con, project_id, ids)
    return sorted({*ids, *rows, *rows.values()})


def mappings(
    con: duckdb.DuckDBPyConnection, project_id: int, after: int | None = None, upto: int | None = None
) -> list[tuple[str, str]]:
    """(distinct_id, resolved_distinct_id) of every id that resolves to another, by id; with
    `after`/`upto`, only rows last changed by an event in that range of ingestion positions."""
    sql = f"SELECT distinct_id, canonical_id FROM {IDENTITY} WHERE project_id = ?"
    params: list[Any] = [project_id]
    if after is not None:
        sql += " AND seq > ?"
        params.append(after)
    if upto is not None:
        sql += " AND seq <= ?"
        params.append(upto)
    return [(d, c) for d, c in con.execute(sql + " ORDER BY distinct_id", params).fetchall()]


def mappings_of(con: duckdb.DuckDBPyConnection, project_id: int, ids: Iterable[str]) -> list[tuple[str, str]]:
    """(distinct_id, canonical_id) of those of `ids` that resolve to another id."""
    return [
        (d, c)
        for d, c in con.execute(
            f"SELECT distinct_id, canonical_id FROM {IDENTITY}"
            " WHERE project_id = ? AND list_contains(?, distinct_id)",
            [project_id, sorted(ids)],
        ).fetchall()
    ]


def put_rows(
    con: duckdb.DuckDBPyConnection, project_id: int, rows: Sequence[tuple[str, str]], seq: int
) -> None:
    """Store mappings as they are (a migration from another store); replaces those ids' rows."""
    if not rows:
        return
    ids = [distinct_id for distinct_id, _ in rows]
    delete_rows(con, "project_id = ? AND list_contains(?, distinct_id)", [project_id, ids])
    _insert(con, [(project_id, d, c, *line_fragments(d, c), seq, 0) for d, c in rows])


def drop_expired(con: duckdb.DuckDBPyConnection, project_id: int, cutoff_ms: int) -> int:
    """Retention: drop the rows made by events before the cutoff whose id no kept event carries."""
    return delete_rows(
        con,
        "project_id = ? AND time_ms < ? AND distinct_id NOT IN"
        " (SELECT distinct_id FROM events WHERE project_id = ? AND distinct_id IS NOT NULL)",
        [project_id, cutoff_ms, project_id],
    )


def delete_rows(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> int:
    return affected_rows(con, f"DELETE FROM {IDENTITY} WHERE {where}", params)
