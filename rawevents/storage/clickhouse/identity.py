"""The ClickHouse store's identity rows: one row per id whose canonical id is another, written by
the writer job that stores the events carrying the links, and looked up at read time (the same
rows and rules as the embedded store's, rawevents/storage/duckdb/identity.py).

`identity` holds (project_id, distinct_id → canonical_id) with the two export-line fragments a
reader splices (`rawevents.identity.line_fragments`), the ingestion position (`seq`, the writer's
µs tick) of the event whose link last changed the row, and that event's time (retention). It is
a ReplacingMergeTree keyed by (project_id, distinct_id): a change inserts a new version (`version`,
a tick of the writer that made it) and every read uses FINAL, so readers see one row per id, the
newest, before any merge. Only deletions (GDPR, retention, a deleted project) remove rows, with
every version.

Readers of a project that has rows read `resolved(...)` instead of `events`: the same columns,
with `distinct_id` the canonical id and `line` carrying it (and `$distinct_id_before_identity`),
each event looked up in the rows in read order (no join, no sort); a project without rows reads
`events` as before, at no cost. The writer skips the links that cannot change anything (from an
id it knows has a row: `LinkedIds`) and reads rows by key. Links from several hosts sharing one
server are applied by each host's writer on its own: two hosts linking the same ids in the same
instant may each build on rows the other is replacing (the newest version wins).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rawevents.identity import DEVICE, MERGE, IdentityGraph, Link, line_fragments, needed_ids
from rawevents.storage.clickhouse.conn import Connection, Params

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

# Readers resolve through the project's current rows without a join: a join's output is not
# known to keep the events' order, so each ordered window had to be sorted again in full (and the
# project's rows were hashed again for every window). Instead ONE scalar subquery (one snapshot of
# the rows, so the arrays below stay aligned) reads the rows as entries, from which `transform`
# gets each event's id's fragments in the events' read order (`optimize_read_in_order` still
# applies). An entry is `<stored fragment>\n<resolved fragment>\0<length of the canonical id>:
# <canonical id><distinct_id>`: a fragment is JSON text, so it holds no raw newline or NUL, and
# the two ids, which may hold anything, are told apart by the length. `{only}` restricts the rows
# to the ids of the events read (a project with more rows than the read has events).
_ENTRIES = (
    "(SELECT groupArray(concat(stored_fragment, '\\n', resolved_fragment, '\\0',"
    " toString(length(canonical_id)), ':', canonical_id, distinct_id))"
    f" FROM {IDENTITY} FINAL WHERE project_id = {{{{p:Int32}}}}{{only}})"
)
# Over an entry `x`: `t` is what follows the NUL, its ':' ends the canonical id's length.
_TAIL = "substring(x, position(x, '\\0') + 1) AS t"
_START = "position(t, ':') + 1"  # of the canonical id, in `t`
_LENGTH = "toUInt64(substring(t, 1, position(t, ':') - 1))"
_KEYS = f"arrayMap(x -> substring({_TAIL}, {_START} + {_LENGTH}), m)"
_CANONICAL = f"arrayMap(x -> substring({_TAIL}, {_START}, {_LENGTH}), m)"
_FRAGMENTS = "arrayMap(x -> substring(x, 1, position(x, '\\0') - 1), m)"
# The line with the stored fragment (before the newline of `v`) replaced by the resolved one
# (after it); `v` is '' for an id without a row, and replaceOne with an empty needle keeps the line.
_LINE = "replaceOne(sent_line, substring(v, 1, (position(v, '\\n') AS nl) - 1), substring(v, nl + 1))"


def resolved(conditions: str, *, only_read_ids: bool = True) -> str:
    """A relation of the events matching `conditions` (over the `events` columns; the project
    is the `{p:Int32}` parameter), in which `distinct_id` and `line` are resolved. Columns:
    time_ms, seq, node, dedup, event, time_pos, insert_id, distinct_id, line.

    The line is the stored one with its first `,"distinct_id":<id>` (the top-level key: it
    follows `time`, and inside a JSON string every quote is escaped) replaced by the resolved
    fragment; an id stored as a JSON number is not found and its line is kept as sent. With
    `only_read_ids` the rows read are those of the ids the events carry (bounded by the read);
    without, every row of the project (cheaper when the project has few rows)."""
    only = f" AND distinct_id IN (SELECT distinct_id FROM events WHERE {conditions})" if only_read_ids else ""
    looked_up = (
        f"transform(distinct_id, {_KEYS}, {_FRAGMENTS}, '') AS v,"
        f" transform(distinct_id, {_KEYS}, {_CANONICAL}, '') AS canonical"
    )
    return (
        "(SELECT time_ms, seq, node, dedup, event, time_pos, insert_id,"
        f" if(v = '', sent_id, canonical) AS distinct_id, {_LINE} AS line"
        f" FROM (WITH {_ENTRIES.format(only=only)} AS m"
        " SELECT time_ms, seq, node, dedup, event, time_pos, insert_id,"
        f" distinct_id AS sent_id, line AS sent_line, {looked_up}"
        f" FROM events WHERE {conditions}))"
    )


def row_count(con: Connection, project_id: int) -> int:
    """How many identity rows the project has, about (versions not yet merged count too; 0 only
    when no id of the project resolves to another)."""
    found = con.table(f"SELECT count() FROM {IDENTITY} WHERE project_id = {{p:Int32}}", {"p": project_id})
    return int(found.column(0)[0].as_py())


def has_rows(con: Connection, project_id: int) -> bool:
    """Whether any id of the project resolves to another (else readers read `events` as stored)."""
    found = con.table(f"SELECT 1 FROM {IDENTITY} WHERE project_id = {{p:Int32}} LIMIT 1", {"p": project_id})
    return bool(found.num_rows > 0)


# -- writes (in the writer job that stores the events) ---------------------------------------------


class LinkedIds:
    """What a writer knows of its projects' identity rows, so that most commits make no query.

    - Ids known to have a row. A link from such an id (any kind but a merge) changes nothing: a
      device, anonymous id or alias already in a cluster stays where it is (`IdentityGraph.apply`),
      so such links are skipped.
    - A project whose rows this writer alone writes (not `shared`) is read in full once, if it has
      few enough: then every id with a row is known, and every canonical id some row points to (a
      superset: an id a merge moved away may stay), and device links between ids without rows,
      none of them a canonical id, need no query (`rows_needed`).

    Rows only go by deletion (GDPR, retention, a deleted project) or get replaced wholesale (a
    migration), which the writer runs too and which calls `clear`. With other hosts' writers on
    the same server (`shared`), knowledge is dropped every `ttl_s` too, so a row they deleted is
    noticed after that long at most. At most `max_ids` ids are kept (all forgotten when full)."""

    def __init__(self, *, shared: bool = False, max_ids: int = 100_000, ttl_s: float = 30.0) -> None:
        self._ids: dict[int, dict[str, None]] = {}
        self._canonicals: dict[int, set[str]] = {}  # of the projects read in full
        self._tried: set[int] = set()  # projects read in full, or too large to
        self._count = 0
        self._max = max_ids
        self._shared = shared
        self._ttl = ttl_s
        self._since = time.monotonic()

    def unknown(self, project_id: int, links: list[tuple[Link, int, int]]) -> list[tuple[Link, int, int]]:
        """The links that may change something: merges, and links from ids not known linked."""
        if self._shared and time.monotonic() - self._since > self._ttl:
            self.clear()
        known = self._ids.get(project_id)
        if not known:
            return links
        return [item for item in links if item[0].kind == MERGE or item[0].source not in known]

    def read_in_full(self, con: Connection, project_id: int) -> None:
        """Learn every row of the project, once, if this writer alone writes them and they fit."""
        if self._shared or project_id in self._tried:
            return
        self._tried.add(project_id)
        if row_count(con, project_id) > self._max // 2 - self._count:
            return
        rows = _pairs(
            con,
            f"SELECT distinct_id, canonical_id FROM {IDENTITY} FINAL WHERE project_id = {{p:Int32}}",
            {"p": project_id},
        )
        self._canonicals[project_id] = set()
        self.add(project_id, dict(rows))

    def rows_needed(self, project_id: int, links: list[tuple[Link, int, int]]) -> bool:
        """Whether applying the links needs rows read (False: they need none, there are none)."""
        canonicals = self._canonicals.get(project_id)
        if canonicals is None:
            return True
        known = self._ids.get(project_id, {})
        return any(
            link.kind != DEVICE or link.source in known or link.target in known or link.source in canonicals
            for link, _, _ in links
        )

    def add(self, project_id: int, rows: dict[str, str]) -> None:
        """Rows the project has now (id → canonical id)."""
        known = self._ids.setdefault(project_id, {})
        before = len(known)
        known.update(dict.fromkeys(rows))
        self._count += len(known) - before
        canonicals = self._canonicals.get(project_id)
        if canonicals is not None:
            canonicals.update(rows.values())
        if self._count > self._max:  # forget all; projects read in full are not read again
            self._ids.clear()
            self._canonicals.clear()
            self._count = 0

    def clear(self) -> None:
        """Forget everything (rows were deleted or replaced; or a write failed halfway)."""
        self._ids.clear()
        self._canonicals.clear()
        self._tried.clear()
        self._count = 0
        self._since = time.monotonic()


def apply_links(con: Connection, incoming: pa.Table, version: int, linked: LinkedIds | None = None) -> None:
    """Apply the links of a commit's incoming events (with `seq`), in ingestion order; the rows
    written carry `version` (a tick of the writer, above every version it wrote before). `linked`:
    the writer's knowledge of the rows, kept up to date here."""
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
        if linked is None:
            _apply_project_links(con, project_id, links, version, None)
            continue
        links = linked.unknown(project_id, links)
        if not links:
            continue
        try:
            linked.read_in_full(con, project_id)
            _apply_project_links(con, project_id, links, version, linked)
        except BaseException:
            linked.clear()  # rows may have been written that it does not know of
            raise


def _apply_project_links(
    con: Connection,
    project_id: int,
    links: list[tuple[Link, int, int]],
    version: int,
    linked: LinkedIds | None,
) -> None:
    current: dict[str, str] = {}
    if linked is None or linked.rows_needed(project_id, links):
        ids = needed_ids(link for link, _, _ in links)
        # A device link needs no cluster's size (`IdentityGraph.apply`): of the other members of
        # clusters, only whether a source is some row's canonical id matters.
        devices_only = all(link.kind == DEVICE for link, _, _ in links)
        members_of = {link.source for link, _, _ in links} if devices_only else None
        current = _cluster_rows(con, project_id, ids, members_of)
    graph = IdentityGraph(current)
    made: dict[str, tuple[int, int]] = {}  # id → (seq, time_ms) of the link that last moved it
    for link, seq, time_ms in links:
        for member in graph.apply(link):
            made[member] = (seq, time_ms)
    if graph.changed:
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
    if linked is not None:  # every id the graph holds has a row now
        linked.add(project_id, graph.rows)


def _insert(con: Connection, rows: list[tuple[Any, ...]]) -> None:
    """New versions of these ids' rows (FINAL reads see them in place of the old ones)."""
    con.insert(
        IDENTITY,
        pa.Table.from_pylist(
            [dict(zip(_ROWS_SCHEMA.names, row, strict=True)) for row in rows], schema=_ROWS_SCHEMA
        ),
    )


def _cluster_rows(
    con: Connection, project_id: int, ids: Iterable[str], members_of: Iterable[str] | None = None
) -> dict[str, str]:
    """The rows of every cluster that one of `ids` belongs to (as member or canonical id): the
    ids' rows, and the rows pointing to one of the ids or to their canonical ids (`members_of`:
    only to these ids instead). The ids' rows are read by key; the canonical id is no key, so
    the ids of the rows pointing to some are found in (distinct_id, canonical_id) of every
    version of the project's rows, without merging them, and their current rows read by key."""
    named = sorted(set(ids))
    if not named:
        return {}
    wanted = set(named) if members_of is None else set(members_of)
    found = con.table(
        f"SELECT distinct_id, canonical_id, 1 FROM {IDENTITY} FINAL"
        " WHERE project_id = {p:Int32} AND distinct_id IN {ids:Array(String)}"
        f" UNION ALL SELECT DISTINCT distinct_id, '', 0 FROM {IDENTITY}"
        " WHERE project_id = {p:Int32} AND canonical_id IN {to:Array(String)}",
        {"p": project_id, "ids": named, "to": sorted(wanted)},
    )
    rows: dict[str, str] = {}
    pointing: set[str] = set()
    for member, canonical, own in zip(*(column.to_pylist() for column in found.columns), strict=True):
        if own:
            rows[member] = canonical
        else:
            pointing.add(member)
    if members_of is None:  # the members of the ids' canonical ids too
        further = sorted(set(rows.values()) - wanted)
        if further:
            pointing.update(_pointing(con, project_id, further))
            wanted.update(further)
    pointing -= rows.keys()
    if pointing:
        for member, canonical in _pairs(con, _ROWS_BY_ID, {"p": project_id, "ids": sorted(pointing)}):
            if canonical in wanted:
                rows[member] = canonical
    return rows


def _pointing(con: Connection, project_id: int, canonicals: list[str]) -> list[str]:
    """The ids of the rows pointing to one of `canonicals` in some version (a superset)."""
    found = con.table(
        f"SELECT DISTINCT distinct_id FROM {IDENTITY}"
        " WHERE project_id = {p:Int32} AND canonical_id IN {to:Array(String)}",
        {"p": project_id, "to": canonicals},
    )
    return list(found.column(0).to_pylist())


# The current rows of some ids, read by key.
_ROWS_BY_ID = (
    f"SELECT distinct_id, canonical_id FROM {IDENTITY} FINAL"
    " WHERE project_id = {p:Int32} AND distinct_id IN {ids:Array(String)}"
)


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
        _ROWS_BY_ID,
        {"p": project_id, "ids": sorted(ids)},
    )


def put_rows(
    con: Connection, project_id: int, rows: Sequence[tuple[str, str, int]], seq: int, version: int
) -> None:
    """Store mappings as they are (a migration from another store); replaces those ids' rows."""
    if rows:
        _insert(
            con,
            [
                (project_id, d, c, *line_fragments(d, c), max(seq, 0), time_ms, version)
                for d, c, time_ms in rows
            ],
        )


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
