"""The embedded store's time-clustered layout: a small recent area plus sorted runs.

Why: with one table in arrival order, an export of a time range scanned every row group whose
time range overlapped it and re-sorted each window, and the dedup check scanned every stored row
of the batch's time span. Events that arrive shuffled (backfills, late mobile queues, several
importers at once) made a 1M-row export 10x slower and ingest 3x slower (docs/performance.md).

The layout (tables below):
- `events_recent`: what commits write, in arrival order. It stays small: a background compactor
  moves its rows out every `compact_rows` rows or FLUSH_AGE_S seconds.
- `events_sorted`: immutable sorted runs. A flush writes the moved rows with one
  `INSERT … SELECT … ORDER BY project_id, time_ms, seq`, tagged with a new `run_batch` number;
  each (run_batch, project, day) is a *run*, listed with its time bounds in `event_runs`. Rows of
  one run are contiguous and in (time, seq) order, and `run_batch` grows with the physical
  position, so the zone maps of `run_batch`, `project_id` and `time_ms` prune a run's scan to its
  own row groups: a small project costs its own rows, not its neighbours'.
- `events` (a view): both areas, for queries that only filter (where, property counts).

An export reads the runs that cover its range one after the other with a plain filtered scan,
which DuckDB returns in storage order (`preserve_insertion_order`): no sort. Only where runs
overlap in time (late events flushed after their day was compacted) or recent rows fall, the
stretch is read with `ORDER BY time_ms, seq` in small windows. So the compactor removes overlap:
- A merge rewrites overlapping runs of a day as one (when the day is quiet, below, or once
  MERGE_FANIN of them pile up), at most one sort's worth of rows, the smallest runs first: the
  engine holds a transaction's new rows until it commits, and merging a 333k-row day at once ran
  out of the 192MB engine memory, as did a merge of two sorts' worth (94k rows of 10M). While
  the day is busy, a merge takes runs of similar size only (TIER_GROWTH), as size-tiered LSM
  compaction does: a day's big run is not rewritten for each handful of late events.
- When even the smallest runs of an overlap group do not fit one merge (a big day after a
  shuffled backfill), a quiet day is consolidated a window at a time: each step, one
  transaction, moves the group's first sort's worth of rows in time into a new run and
  re-records what remains of the sources. The new run ends before the rest begins, so the day
  ends as consecutive runs that do not overlap, each read as a plain scan. Only quiet days: a day
  is quiet when no flush wrote into it for SETTLE_S (every day, once ingest pauses). During a
  backfill every flush lands in every day, and consolidating days on each flush would rewrite
  every row over and over; steady traffic lands in today only, and waiting for a pause in it
  left a backfilled store unconsolidated for good (its exports 2-3x slower, docs/performance.md).
- A day with more than MAX_RUNS runs merges two adjacent ones (never runs with others between
  them: their merge would overlap those, which a window step would split again).

Every compaction step is one transaction (insert the sorted copy, record the runs, delete the
originals), so a crash leaves the store as before or after it; `seq` (ingestion order) travels
with every row. The compactor runs on its own connection and thread: it only appends to
`events_sorted` and deletes rows the writer never touches again, so it never conflicts with
commits (DuckDB appends do not conflict), and readers keep their MVCC snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

log = logging.getLogger(__name__)

RECENT = "events_recent"
SORTED = "events_sorted"
RUNS = "event_runs"
COLUMNS = "project_id, time_ms, seq, event, distinct_id, insert_id, time_pos, line"
STORED = f"{COLUMNS}, key_hash"
# A stable 63-bit hash of the rest of the dedup key (MD5: the same in every DuckDB version).
# Equal hashes are only candidates: the exact key is compared before anything is dropped.
KEY_HASH = (
    "CAST(md5_number_lower(concat(event, chr(0), coalesce(distinct_id, ''), chr(0), insert_id)) >> 1"
    " AS BIGINT)"
)

PARTITION_MS = 86_400_000  # a run never spans two UTC days: the unit a merge rewrites


# How the line column is kept on disk, per `line_compression` setting. A full export reads every
# line: 1M lines (744 MB) read in 1.1-1.3 s uncompressed, 1.3-1.8 s with DuckDB's own choice
# (FSST) and 1.6-2.1 s as zstd; the file takes 812, 403 and 190 MB (docs/performance.md).
LINE_COMPRESSION = {"uncompressed": "uncompressed", "zstd": "zstd"}

_COLUMN_TYPES = """
    project_id INTEGER NOT NULL,
    time_ms BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    event VARCHAR NOT NULL,
    distinct_id VARCHAR,
    insert_id VARCHAR NOT NULL,
    time_pos INTEGER NOT NULL,
    line VARCHAR NOT NULL USING COMPRESSION {line_compression},
    key_hash BIGINT NOT NULL"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {RECENT} ({columns}
);
CREATE TABLE IF NOT EXISTS {SORTED} ({columns},
    run_batch BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {RUNS} (
    run_batch BIGINT NOT NULL,
    project_id INTEGER NOT NULL,
    part BIGINT NOT NULL,
    min_time BIGINT NOT NULL,
    max_time BIGINT NOT NULL,
    rows BIGINT NOT NULL
);
CREATE OR REPLACE VIEW events AS
    SELECT {COLUMNS} FROM {SORTED} UNION ALL SELECT {COLUMNS} FROM {RECENT};
"""


def first_row(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    """The first row `sql` answers, its result read to the end. A result read with `fetchone`
    stays open, and its transaction with it, until the connection's next statement: on the
    store's long-lived connections that kept every checkpoint from reclaiming deleted rows. A
    shuffled 1M-event backfill then held 5.3M row slots and 24 MiB of pinned deletion records,
    and its compactor ran out of a 48MB limit; reclaimed, 2.1M slots and none pinned."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def affected_rows(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> int:
    """The row count DuckDB answers to an INSERT or DELETE `sql`."""
    found = first_row(con, sql, params)
    return int(found[0]) if found else 0


def ensure_schema(con: duckdb.DuckDBPyConnection, line_compression: str = "uncompressed") -> None:
    """Create the layout; a store from before it (one `events` table) becomes the recent area,
    which the compactor then sorts into runs. `line_compression` applies to tables created here:
    an existing store keeps how its lines were stored."""
    old = first_row(
        con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'events' AND schema_name = 'main'"
    )
    if old is not None and old[0] and not _table_exists(con, RECENT):
        con.execute(f"ALTER TABLE events RENAME TO {RECENT}")
        con.execute(f"ALTER TABLE {RECENT} ADD COLUMN key_hash BIGINT")
        con.execute(f"UPDATE {RECENT} SET key_hash = {KEY_HASH}")
    columns = _COLUMN_TYPES.format(line_compression=LINE_COMPRESSION[line_compression])
    con.execute(_SCHEMA.format(RECENT=RECENT, SORTED=SORTED, RUNS=RUNS, COLUMNS=COLUMNS, columns=columns))


def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = first_row(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name])
    return bool(found and found[0])


def next_seq(con: duckdb.DuckDBPyConnection) -> int:
    found = first_row(con, "SELECT coalesce(max(seq), 0) + 1 FROM events")
    assert found is not None
    return int(found[0])


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """`table` readable as `name` within the block. After a failed statement the transaction
    refuses the unregister: the engine's own error is the one to raise (and the writer's retry
    tells an out-of-memory from it), and the next register of `name` replaces the table."""
    con.register(name, table)
    try:
        yield
    except BaseException:
        with suppress(duckdb.TransactionException):
            con.unregister(name)
        raise
    con.unregister(name)


def delete_events(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> int:
    """Delete the events matching `where` from both areas (in the caller's transaction, holding
    the maintenance lock); rows deleted. A run's recorded bounds may then be wider than its rows,
    which costs an export nothing but an empty page."""
    return sum(affected_rows(con, f"DELETE FROM {table} WHERE {where}", params) for table in (SORTED, RECENT))


@dataclass(frozen=True, slots=True)
class Run:
    run_batch: int
    project_id: int
    part: int
    min_time: int
    max_time: int  # inclusive
    rows: int


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction on `con`: committed when the block ends, rolled back if it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
