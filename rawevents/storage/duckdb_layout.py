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

import heapq
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from itertools import chain, groupby, pairwise
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rawevents.timeutil import TimeSegment

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
FLUSH_AGE_S = 2.0  # recent rows wait at most about this long before a flush
SORT_ROWS = 50_000  # rows one sorting INSERT handles: ~40 MB of lines, sorted within memory_limit
SLICE_ROWS = SORT_ROWS  # rows one flush transaction moves
# Engine memory a sorted row needs, about (a ~750 B line, the sort's copies and blocks): with a
# smaller memory limit the compactor sorts fewer rows at a time (at 16MB a 50k-row flush ran out).
SORT_BYTES_PER_ROW = 4096
MIN_SORT_ROWS = 1000
MERGE_FANIN = 4  # overlapping runs of a day merged at once even while ingest is busy
# While a day is busy a merge takes its smallest overlapping runs, each next one only while it has
# at most this many times the rows taken before it: late events add small runs to a day that
# already holds a big one, and merging them into it every MERGE_FANIN flushes rewrote about 18 rows
# per ingested event under steady traffic (docs/performance.md). The big run waits for a quiet day.
TIER_GROWTH = 4
MAX_RUNS = 16  # runs of a day beyond which adjacent ones are merged (if two fit one merge)
RECENT_BUCKET_MS = 60_000  # resolution at which an export locates recent rows
SETTLE_S = 30.0  # seconds without a flush writing into a day after which the day is quiet
# WAL size past which the compactor checkpoints, on its own thread, after a step: below the
# engine's own threshold (duckdb_store.CHECKPOINT_THRESHOLD), which checkpoints inside whichever
# COMMIT crosses it. Three times in a 400k-event /import run that was an ingest commit, stalled
# with every batch queued behind it for 1.3-1.8 s (docs/performance.md).
CHECKPOINT_WAL_BYTES = 128 << 20

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


# -- dedup and insert ----------------------------------------------------------------------------

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


def delete_events(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> int:
    """Delete the events matching `where` from both areas (in the caller's transaction, holding
    the maintenance lock); rows deleted. A run's recorded bounds may then be wider than its rows,
    which costs an export nothing but an empty page."""
    return sum(affected_rows(con, f"DELETE FROM {table} WHERE {where}", params) for table in (SORTED, RECENT))


# -- export planning -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    run_batch: int
    project_id: int
    part: int
    min_time: int
    max_time: int  # inclusive
    rows: int


@dataclass(frozen=True, slots=True)
class Piece:
    """A stretch [start_ms, end_ms) of one export segment: read from one run in storage order
    (`run_batch` set), or from both areas with a sort (`run_batch` None)."""

    start_ms: int
    end_ms: int
    offset_ms: int
    run_batch: int | None


def project_runs(con: duckdb.DuckDBPyConnection, project_id: int, start_ms: int, end_ms: int) -> list[Run]:
    rows = con.execute(
        f"SELECT run_batch, project_id, part, min_time, max_time, rows FROM {RUNS}"
        " WHERE project_id = ? AND max_time >= ? AND min_time < ? ORDER BY min_time",
        [project_id, start_ms, end_ms],
    ).fetchall()
    return [Run(*map(int, row)) for row in rows]


def recent_buckets(
    con: duckdb.DuckDBPyConnection, project_id: int, start_ms: int, end_ms: int
) -> dict[int, int]:
    """Rows of the project's recent area in the range, per RECENT_BUCKET_MS bucket."""
    rows = con.execute(
        f"SELECT time_ms // ?, count(*) FROM {RECENT}"
        " WHERE project_id = ? AND time_ms >= ? AND time_ms < ? GROUP BY 1",
        [RECENT_BUCKET_MS, project_id, start_ms, end_ms],
    ).fetchall()
    return {int(bucket): int(count) for bucket, count in rows}


def plan_pieces(segments: Sequence[TimeSegment], runs: Sequence[Run], buckets: Sequence[int]) -> list[Piece]:
    """Cut the segments where the set of sources changes: a stretch covered by one run alone is
    read in that run's order; a stretch covered by several runs or by recent rows is sorted;
    stretches with no rows are skipped."""
    sources: list[tuple[int, int, int | None]] = [(r.min_time, r.max_time + 1, r.run_batch) for r in runs]
    sources += [(b * RECENT_BUCKET_MS, (b + 1) * RECENT_BUCKET_MS, None) for b in buckets]
    pieces: list[Piece] = []
    for segment in segments:
        pieces += _segment_pieces(segment, sources)
    return pieces


def _segment_pieces(segment: TimeSegment, sources: Iterable[tuple[int, int, int | None]]) -> list[Piece]:
    """Sweep the sources' edges in time order, keeping the set of sources active in between."""
    changes: list[tuple[int, int, int | None]] = []
    for lo, hi, run in sources:
        lo, hi = max(lo, segment.start_ms), min(hi, segment.end_ms)
        if lo < hi:
            changes += [(lo, 1, run), (hi, -1, run)]
    changes.sort(key=lambda change: change[0])
    active: Counter[int | None] = Counter()
    pieces: list[Piece] = []
    for index, (edge, delta, run) in enumerate(changes):
        active[run] += delta
        if active[run] == 0:
            del active[run]
        following = changes[index + 1][0] if index + 1 < len(changes) else edge
        if following == edge or not active:
            continue
        only = next(iter(active)) if len(active) == 1 and sum(active.values()) == 1 else None
        previous = pieces[-1] if pieces else None
        if previous is not None and previous.end_ms == edge and previous.run_batch == only:
            pieces[-1] = Piece(previous.start_ms, following, segment.offset_ms, only)
        else:
            pieces.append(Piece(edge, following, segment.offset_ms, only))
    return pieces


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


# -- compaction ----------------------------------------------------------------------------------


class Compactor:
    """Moves recent rows into sorted runs and merges overlapping runs, on its own connection.

    `poke()` (from the writer) wakes it early; `compact()` runs it to completion on the caller's
    thread (tests, benchmarks, a quiet store). `lock` is held for each step: deletions take it too,
    so a compaction step and a deletion never touch the same rows at once."""

    def __init__(
        self,
        db: duckdb.DuckDBPyConnection,
        flush_rows: int,
        lock: threading.Lock,
        engine_bytes: int,
        wal: Path,
        on_step: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._db = db
        self._wal = wal
        self._on_step = on_step  # hears how long each committed flush or merge took
        self._sort_rows = max(MIN_SORT_ROWS, engine_bytes // SORT_BYTES_PER_ROW)
        self._flush_rows = max(1, flush_rows)
        self._lock = lock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._landed: dict[tuple[int, int], float] = {}  # (project, day): when a flush last wrote into it
        self._thread: threading.Thread | None = None
        found = first_row(db, f"SELECT coalesce(max(run_batch), 0) FROM {RUNS}")
        self._last_batch = int(found[0]) if found else 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rawevents-compactor", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def compact(self) -> None:
        """Flush every recent row, then merge and consolidate until no runs of a day overlap (one
        run per day, unless the day is bigger than a merge may rewrite: then several)."""
        con = self._db.cursor()
        try:
            while self._flush(con, 1):
                pass
            while self._merge(con, _every_day):
                pass
        finally:
            con.close()

    def _loop(self) -> None:
        con = self._db.cursor()
        try:
            while not self._stop.is_set():
                timed_out = not self._wake.wait(FLUSH_AGE_S)
                self._wake.clear()
                try:
                    self._cycle(con, timed_out)
                except Exception:  # a failed step leaves the store as it was; retry next cycle
                    log.exception("compaction step failed")
                    self._stop.wait(1.0)
        finally:
            con.close()

    def _cycle(self, con: duckdb.DuckDBPyConnection, timed_out: bool) -> None:
        flushed = False
        while not self._stop.is_set() and self._flush(con, 1 if timed_out else self._flush_rows):
            flushed = True
        # A pause: FLUSH_AGE_S without a row to flush (a poke that finds fewer than flush_rows
        # rows, because a timed flush took them, is no pause: under steady traffic it used to
        # consolidate every day once every flush_rows events, backfills included).
        pause = timed_out and not flushed
        while not self._stop.is_set() and self._merge(con, self._quiet_days(pause=pause)):
            pass

    def _quiet_days(self, *, pause: bool) -> Quiet:
        """The days that may take the steps kept for quiet days: none while a poke waits (rows to
        flush come first), every day in a pause of ingest, else those no flush wrote into lately."""
        if self._wake.is_set():
            return _no_day
        if pause:
            return _every_day
        now = time.monotonic()
        landed = self._landed = {day: at for day, at in self._landed.items() if now - at < SETTLE_S}
        return lambda project, part: (project, part) not in landed

    def _flush(self, con: duckdb.DuckDBPyConnection, min_rows: int) -> bool:
        """Move up to SLICE_ROWS of the oldest recent rows into one batch of runs."""
        with self._lock:
            count = first_row(con, f"SELECT count(*) FROM {RECENT}")
            if count is None or count[0] < min_rows:
                return False
            batch = self._last_batch + 1
            started = time.perf_counter()
            with transaction(con):
                upto = first_row(
                    con,
                    f"SELECT max(seq) FROM (SELECT seq FROM {RECENT} ORDER BY seq LIMIT ?)",
                    [min(SLICE_ROWS, self._sort_rows)],
                )
                assert upto is not None
                params = [batch, upto[0]]
                con.execute(
                    f"INSERT INTO {SORTED} SELECT {STORED}, ? FROM {RECENT} WHERE seq <= ?"
                    " ORDER BY project_id, time_ms, seq",
                    params,
                )
                landed = con.execute(
                    f"INSERT INTO {RUNS} SELECT ?, project_id, time_ms // {PARTITION_MS},"
                    f" min(time_ms), max(time_ms), count(*) FROM {RECENT} WHERE seq <= ? GROUP BY ALL"
                    " RETURNING project_id, part",
                    params,
                ).fetchall()
                con.execute(f"DELETE FROM {RECENT} WHERE seq <= ?", [upto[0]])
            self._last_batch = batch
            now = time.monotonic()
            self._landed.update(((int(project), int(part)), now) for project, part in landed)
            self._on_step(time.perf_counter() - started)
        self._fold_wal(con)
        return True

    def _merge(self, con: duckdb.DuckDBPyConnection, quiet: Quiet) -> bool:
        """One merge step on the runs of a day; False when nothing is due."""
        with self._lock:
            # One sort's worth per transaction: the engine holds the new rows until the commit, on
            # top of the sort (two sorts' worth, 94k rows, ran out of 192MB building 10M events).
            max_rows = min(SORT_ROWS, self._sort_rows)
            due = _due_step(_crowded_runs(con), quiet, max_rows=max_rows)
            if due is None:
                return False
            step, runs = due
            batch = self._last_batch + 1
            started = time.perf_counter()
            with transaction(con):
                step(con, runs, batch, max_rows)
            self._last_batch = batch
            self._on_step(time.perf_counter() - started)
        self._fold_wal(con)
        return True

    def _fold_wal(self, con: duckdb.DuckDBPyConnection) -> None:
        """Checkpoint once the WAL passes CHECKPOINT_WAL_BYTES, here rather than inside an ingest
        commit. Best effort: a checkpoint the engine refuses now happens after a later step."""
        try:
            if self._wal.stat().st_size < CHECKPOINT_WAL_BYTES:
                return
            con.execute("CHECKPOINT")
        except FileNotFoundError:
            return  # no WAL: everything is in the database file
        except duckdb.Error:
            log.info("checkpoint after a compaction step deferred", exc_info=True)


# A step rewrites rows of `runs` (one project and day) into the new run `batch`, in the caller's
# transaction, and re-records the runs it touched.
Step = Callable[[duckdb.DuckDBPyConnection, list[Run], int, int], None]
# Whether the day (project, part) is quiet: it may have any two overlapping runs merged and be
# consolidated a window at a time.
Quiet = Callable[[int, int], bool]


def _every_day(project: int, part: int) -> bool:
    return True


def _no_day(project: int, part: int) -> bool:
    return False


_OF_RUNS = (
    "project_id = ? AND time_ms >= ? AND time_ms < ?"
    " AND run_batch BETWEEN ? AND ? AND list_contains(?, run_batch)"
)


def _day(run: Run) -> tuple[int, int]:
    return run.part * PARTITION_MS, (run.part + 1) * PARTITION_MS


def _of_runs(runs: Sequence[Run], *extra: int) -> list[Any]:
    """Parameters of _OF_RUNS: the rows of `runs` (and of the runs `extra`) in their day. The
    batch range lets zone maps skip other runs' row groups (run_batch grows with position)."""
    batches = [*(r.run_batch for r in runs), *extra]
    return [runs[0].project_id, *_day(runs[0]), min(batches), max(batches), batches]


def _merge_runs(con: duckdb.DuckDBPyConnection, runs: list[Run], batch: int, sort_rows: int) -> None:
    """All rows of `runs` (at most `sort_rows`) into one new run, with one sort."""
    params = _of_runs(runs)
    con.execute(
        f"INSERT INTO {SORTED} SELECT {STORED}, ? FROM {SORTED} WHERE {_OF_RUNS} ORDER BY time_ms, seq",
        [batch, *params],
    )
    con.execute(f"DELETE FROM {SORTED} WHERE {_OF_RUNS}", params)
    _record(con, runs, batch)


def _consolidate_window(con: duckdb.DuckDBPyConnection, runs: list[Run], batch: int, sort_rows: int) -> None:
    """The first `sort_rows` rows in time of an overlap group into a new run of their own: it ends
    before the rest of the group begins, so it overlaps nothing; the next step takes the rest."""
    params = _of_runs(runs)
    lowest = first_row(con, f"SELECT min(time_ms) FROM {SORTED} WHERE {_OF_RUNS}", params)
    cut = first_row(
        con,
        f"SELECT time_ms FROM {SORTED} WHERE {_OF_RUNS} ORDER BY time_ms LIMIT 1 OFFSET ?",
        [*params, sort_rows],
    )
    # No more rows than one sort: all of them; more than that in the first millisecond: all of it.
    end = _day(runs[0])[1] if cut is None or lowest is None else max(int(cut[0]), int(lowest[0]) + 1)
    con.execute(
        f"INSERT INTO {SORTED} SELECT {STORED}, ? FROM {SORTED} WHERE {_OF_RUNS} AND time_ms < ?"
        " ORDER BY time_ms, seq",
        [batch, *params, end],
    )
    con.execute(f"DELETE FROM {SORTED} WHERE {_OF_RUNS} AND time_ms < ?", [*params, end])
    _record(con, runs, batch)


def _record(con: duckdb.DuckDBPyConnection, runs: list[Run], batch: int) -> None:
    """Record `runs` and the new run `batch` again from their rows: bounds and counts as they now
    are, a run left without rows dropped."""
    first = runs[0]
    con.execute(
        f"DELETE FROM {RUNS} WHERE project_id = ? AND part = ? AND list_contains(?, run_batch)",
        [first.project_id, first.part, [r.run_batch for r in runs]],
    )
    con.execute(
        f"INSERT INTO {RUNS} SELECT run_batch, project_id, ?, min(time_ms), max(time_ms), count(*)"
        f" FROM {SORTED} WHERE {_OF_RUNS} GROUP BY run_batch, project_id",
        [first.part, *_of_runs(runs, batch)],
    )


def _crowded_runs(con: duckdb.DuckDBPyConnection) -> list[Run]:
    """Runs of the days that have more than one run."""
    rows = con.execute(
        f"SELECT run_batch, project_id, part, min_time, max_time, rows FROM {RUNS} JOIN"
        f" (SELECT project_id, part FROM {RUNS} GROUP BY ALL HAVING count(*) > 1) USING (project_id, part)"
        " ORDER BY project_id, part, min_time"
    ).fetchall()
    return [Run(*map(int, row)) for row in rows]


def _due_step(runs: list[Run], quiet: Quiet, *, max_rows: int) -> tuple[Step, list[Run]] | None:
    """The first merge step due on a day's runs, if any (see _due_in_day)."""
    for (project, part), day in groupby(runs, key=lambda r: (r.project_id, r.part)):
        due = _due_in_day(list(day), quiet=quiet(project, part), max_rows=max_rows)
        if due is not None:
            return due
    return None


def _due_in_day(day_runs: list[Run], *, quiet: bool, max_rows: int) -> tuple[Step, list[Run]] | None:
    """Runs that overlap in time (MERGE_FANIN of them, or any two on a quiet day) are merged, the
    smallest that fit `max_rows` (a merge is one transaction, whose new rows the engine holds),
    and on a busy day only those of similar size (_similar_smallest); when even those are too
    few, a quiet day's group is consolidated a window at a time.
    A day with more than MAX_RUNS runs merges two adjacent ones.

    Every step ends: a merge leaves fewer runs, a window leaves fewer rows in overlapping runs, and
    no step makes runs overlap that did not, so `compact()` gets to a day of runs that overlap
    none and fit (MAX_RUNS) or cannot be merged within `max_rows`."""
    for group in overlap_groups(day_runs):
        if len(group) >= MERGE_FANIN or (quiet and len(group) > 1):
            fitting = _smallest_fitting(group, max_rows)
            if not quiet:
                fitting = _similar_smallest(fitting)
            if len(fitting) > 1:
                return _merge_runs, fitting
            # Only when quiet: a shuffled backfill lands in every day on every flush, and
            # rewriting whole days each time would write each row over and over.
            if quiet:
                return _consolidate_window, group
    if len(day_runs) > MAX_RUNS:
        adjacent = _smallest_adjacent_pair(day_runs, max_rows)
        if adjacent is not None:
            return _merge_runs, adjacent
    return None


def _smallest_fitting(group: list[Run], max_rows: int) -> list[Run]:
    """The group's smallest runs whose rows add up to at most `max_rows`, in time order."""
    chosen: list[Run] = []
    total = 0
    for run in sorted(group, key=lambda r: r.rows):
        if total + run.rows > max_rows:
            break
        chosen.append(run)
        total += run.rows
    return sorted(chosen, key=lambda r: r.min_time)


def _similar_smallest(runs: list[Run]) -> list[Run]:
    """The first runs of similar size in `runs` by size: each next one has at most TIER_GROWTH
    times the rows of those before it. A run too big for the ones before starts the next try, so
    one tiny run does not keep the rest from merging. In time order; empty if no two are similar."""
    chosen: list[Run] = []
    total = 0
    for run in sorted(runs, key=lambda r: r.rows):
        if chosen and run.rows > TIER_GROWTH * total:
            if len(chosen) > 1:
                break
            chosen, total = [], 0
        chosen.append(run)
        total += run.rows
    return sorted(chosen, key=lambda r: r.min_time) if len(chosen) > 1 else []


def _smallest_adjacent_pair(day_runs: list[Run], max_rows: int) -> list[Run] | None:
    """Two runs next to each other in time, overlapping no run, with the fewest rows that fit
    `max_rows`: their merge overlaps no run either (merging runs that are not adjacent would
    overlap the ones between, which a window step would split again)."""
    alone = [(a[0], b[0]) for a, b in pairwise(overlap_groups(day_runs)) if len(a) == len(b) == 1]
    fitting = [pair for pair in alone if pair[0].rows + pair[1].rows <= max_rows]
    if not fitting:
        return None
    first, second = min(fitting, key=lambda pair: pair[0].rows + pair[1].rows)
    return [first, second]


def overlap_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs (sorted by min_time) grouped into chains whose [min, max] ranges overlap."""
    groups: list[list[Run]] = []
    high = None
    for run in runs:
        if groups and high is not None and run.min_time <= high:
            groups[-1].append(run)
            high = max(high, run.max_time)
        else:
            groups.append([run])
            high = run.max_time
    return groups
