"""The embedded store's compactor: moves recent rows into sorted runs and merges overlapping
runs, with its merge rules (the layout and why: storage/duckdb/schema.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from itertools import groupby, pairwise
from pathlib import Path
from typing import Any

import duckdb

from rawevents.storage.duckdb.schema import (
    PARTITION_MS,
    RECENT,
    RUNS,
    SORTED,
    STORED,
    Run,
    first_row,
    transaction,
)

log = logging.getLogger(__name__)

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
SETTLE_S = 30.0  # seconds without a flush writing into a day after which the day is quiet
# WAL size past which the compactor checkpoints, on its own thread, after a step: below the
# engine's own threshold (store.CHECKPOINT_THRESHOLD), which checkpoints inside whichever
# COMMIT crosses it. Three times in a 400k-event /import run that was an ingest commit, stalled
# with every batch queued behind it for 1.3-1.8 s (docs/performance.md).
CHECKPOINT_WAL_BYTES = 128 << 20


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
