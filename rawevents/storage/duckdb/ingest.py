"""The embedded store's dedup insert: a batch goes into the recent area minus the rows whose
dedup key (event, distinct_id, time, $insert_id) is already stored or earlier in the batch."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from functools import cache
from itertools import chain, groupby, pairwise
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rawevents.storage.duckdb.schema import KEY_HASH, RECENT, SORTED, STORED, affected_rows, registered

log = logging.getLogger(__name__)


# Step 1 reads only (project_id, time_ms, key_hash) of the stored rows near the batch's times (zone
# maps prune other times; sorted runs keep time_ms compact): the milliseconds where a stored row
# has the same key hash as an incoming one, which outside retries is none. The sorted runs are
# read in one time range per cluster of the batch's times (hit_ranges): real-time traffic with a
# few events days late spans days, and one range over that span read every stored row of those
# days on each commit (at 1M events a day, 2 % late doubled the CPU per event,
# docs/performance.md). The recent area is small: one range over the batch's span.
HIT_RANGES = 4  # at most this many ranges: each is a scan of its own (~0.5 ms)
MIN_SPLIT_GAP_MS = 60_000  # a batch's times are split only where this far apart


def hit_ranges(times: pa.ChunkedArray) -> list[tuple[int, int]]:
    """Inclusive time ranges, in order, that cover every value of `times`: split at its widest
    gaps of at least MIN_SPLIT_GAP_MS, at most HIT_RANGES of them."""
    distinct = pc.unique(times)
    distinct = distinct.take(pc.array_sort_indices(distinct))
    if len(distinct) == 0:
        return []
    gaps = pc.subtract(distinct[1:], distinct[:-1])
    wide = pc.indices_nonzero(pc.greater_equal(gaps, MIN_SPLIT_GAP_MS))
    widest = heapq.nlargest(HIT_RANGES - 1, zip(gaps.take(wide).to_pylist(), wide.to_pylist(), strict=True))
    edges = [-1, *sorted(at for _, at in widest), len(distinct) - 1]
    return [(distinct[start + 1].as_py(), distinct[end].as_py()) for start, end in pairwise(edges)]


@cache
def _hash_hits_sql(ranges: int) -> str:
    sorted_scans = "".join(
        f"    SELECT project_id, time_ms, key_hash FROM {SORTED} WHERE time_ms BETWEEN ? AND ? UNION ALL\n"
        for _ in range(ranges)
    )
    return f"""
SELECT DISTINCT e.project_id, e.time_ms FROM (
{sorted_scans}    SELECT project_id, time_ms, key_hash FROM {RECENT} WHERE time_ms BETWEEN ? AND ?
) AS e
SEMI JOIN incoming AS b ON e.project_id = b.project_id AND e.time_ms = b.time_ms AND e.key_hash = b.key_hash
"""


# Step 2, only for those milliseconds: the full dedup keys stored there. A constant IN list is
# pushed into the scan (zone maps, then the other columns only where time_ms matched); a
# list_contains(?) would read every column of every row.
_STORED_KEYS = (
    "SELECT project_id, time_ms, event, distinct_id, insert_id FROM events"
    " WHERE project_id = ? AND time_ms IN ({})"
)
_IN_LIST = 256  # values per IN list

# Keeps the first copy of each dedup key (event, distinct_id, time, $insert_id) per project, both
# against what is stored and inside the incoming rows: SDK retries are idempotent.
_INSERT_DEDUPED = f"""
INSERT INTO {RECENT}
SELECT {STORED} FROM incoming AS b
WHERE NOT EXISTS (
    SELECT 1 FROM stored_keys AS e
    WHERE e.project_id = b.project_id AND e.time_ms = b.time_ms AND e.insert_id = b.insert_id
      AND e.event = b.event AND e.distinct_id IS NOT DISTINCT FROM b.distinct_id
)
"""
# Inside the incoming rows, only when two of them share a key hash (a retry within one group
# commit, or a collision): the window over every row cost a third of the insert when it ran on
# every commit (9.5 -> 6.3 µs of CPU per event, bench/ingest_stages.py).
_FIRST_COPIES = (
    "QUALIFY row_number() OVER"
    " (PARTITION BY project_id, time_ms, insert_id, event, distinct_id ORDER BY seq) = 1"
)

_KEYS_SCHEMA = pa.schema(
    [
        ("project_id", pa.int32()),
        ("time_ms", pa.int64()),
        ("event", pa.string()),
        ("distinct_id", pa.string()),
        ("insert_id", pa.string()),
    ]
)


def insert_deduped(con: duckdb.DuckDBPyConnection, incoming: pa.Table) -> int:
    """Insert `incoming` (with `seq`) into the recent area minus duplicates; rows inserted."""
    if incoming.num_rows == 0:
        return 0
    with registered(con, "incoming", incoming):
        hashes = con.sql(f"SELECT {KEY_HASH} FROM incoming").to_arrow_table().column(0)
    ranges = hit_ranges(incoming.column("time_ms"))
    params = [*chain.from_iterable(ranges), ranges[0][0], ranges[-1][1]]
    with registered(con, "incoming", incoming.append_column("key_hash", hashes)):
        hits = con.execute(_hash_hits_sql(len(ranges)), params).fetchall()
        keys = [_stored_keys(con, project, [t for _, t in times]) for project, times in _by_project(hits)]
        with registered(con, "stored_keys", pa.concat_tables(keys) if keys else _KEYS_SCHEMA.empty_table()):
            repeats = pc.count_distinct(hashes).as_py() < len(hashes)
            return affected_rows(con, _INSERT_DEDUPED + _FIRST_COPIES if repeats else _INSERT_DEDUPED)


def _by_project(hits: list[tuple[Any, ...]]) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    for project, group in groupby(sorted(hits), key=lambda hit: int(hit[0])):
        yield project, list(group)


def _stored_keys(con: duckdb.DuckDBPyConnection, project_id: int, times: list[int]) -> pa.Table:
    tables = []
    for i in range(0, len(times), _IN_LIST):
        part = times[i : i + _IN_LIST]
        sql = _STORED_KEYS.format(", ".join("?" * len(part)))
        tables.append(con.sql(sql, params=[project_id, *part]).to_arrow_table().cast(_KEYS_SCHEMA))
    return pa.concat_tables(tables)
