"""The embedded store: one DuckDB file, one writer thread doing group commits, MVCC readers.

Writes from many concurrent requests are gathered into one transaction (group commit): DuckDB
writes its WAL on COMMIT, so an acknowledged event survives `kill -9` of the server. Events are
kept time-clustered (storage/duckdb/schema.py): commits append to a small recent area, a
background compactor sorts it into runs by (project, time, seq), and exports read those runs in
storage order (storage/duckdb/export.py).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import orjson
import pyarrow as pa

from rawevents.errors import ServerBusy, StorageError, StoreInUse
from rawevents.storage.arrow_strings import string_column_bytes
from rawevents.storage.base import (
    BackupInfo,
    DeletedRows,
    EventSelection,
    EventsPageQuery,
    ExportPlan,
    NullObserver,
    PageRow,
    ProfileApplier,
    ProfilePage,
    ProfileQuery,
    ProfileUpdate,
    SegmentationQuery,
    SegmentCount,
    StoredEvent,
    StoreObserver,
    events_table,
    on_canonical_profiles,
)
from rawevents.storage.duckdb import backup, compaction, identity, ingest, queries, schema
from rawevents.storage.duckdb.export import ExportBounds, read_export
from rawevents.storage.group_commit import JobQueue, commit_groups, commit_isolated
from rawevents.where.ast import Node
from rawevents.where.printer import compile_predicate
from rawevents.where.printer.duckdb import DuckDBPrinter

log = logging.getLogger(__name__)

EVENTS_FILE = "events.duckdb"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    project_id INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    group_key VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    properties VARCHAR NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (project_id, kind, group_key, profile_id)
);
"""

# One row the readiness probe rewrites and reads back: proves a durable write and a read both work.
_PROBE_SCHEMA = "CREATE TABLE IF NOT EXISTS readiness_probe (id INTEGER PRIMARY KEY, value BIGINT NOT NULL)"

ROWS_PER_BATCH = 16384
# Bytes of lines an export page holds, at most (fewer when the server's export budget is smaller).
WINDOW_BYTES = 8 * 1024 * 1024
# A window query's engine memory (sort, result) relative to its lines, with room to spare; the
# engine runs at most memory_limit / (ENGINE_OVERHEAD x window) window queries at once, so
# concurrent exports never hit the engine's limit mid-stream (they wait for their turn instead).
ENGINE_OVERHEAD = 4

# Engine settings (bench/, docs/performance.md). DuckDB checkpoints (rewrites the WAL into the
# database file) once the WAL passes checkpoint_threshold, inside the COMMIT that crossed it; the
# default 16 MB means a checkpoint every ~20k stored events: the writer stored 38k events/s
# instead of 142k (docs/performance.md). 256 MB makes checkpoints 16x rarer; the price is a WAL
# of up to 256 MB to replay after a crash. Every COMMIT still writes and syncs the WAL. The
# compactor checkpoints first, at half that (compaction.CHECKPOINT_WAL_BYTES), so that an ingest
# commit seldom pays for one.
CHECKPOINT_THRESHOLD = "256MB"
# Seconds the writer waits before each retry of a commit the engine had no memory for. What took
# it is a compaction step: at a 16MB limit, writing 80k events, the longest took 0.07 s (0.14 s
# with both cores busy elsewhere); a commit failing there answered 503 in a CI run.
OUT_OF_MEMORY_WAITS_S = (0.1, 0.3, 1.0, 2.0)

_Job = Callable[[duckdb.DuckDBPyConnection], None]
T = TypeVar("T")


class DuckDBStore:
    # Cursors carry `seq`: assigned in commit order by the single writer, kept by compaction.
    cursor_kind = "seq"

    def __init__(
        self,
        data_dir: str | Path,
        *,
        memory_limit: str = "144MB",
        commit_interval_ms: int = 2,
        export_window_bytes: int = WINDOW_BYTES,
        observer: StoreObserver | None = None,
        compact_rows: int = 50_000,
        line_compression: str = "uncompressed",
        background_compaction: bool = True,
    ) -> None:
        path = Path(data_dir)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path / EVENTS_FILE
        self._db = _connect(self.path, memory_limit)
        self._db.execute(_SCHEMA)
        self._db.execute(_PROBE_SCHEMA)
        self._db.execute(identity.SCHEMA)
        schema.ensure_schema(self._db, line_compression)
        self._observer: StoreObserver = observer or NullObserver()
        self._probe_values = itertools.count(1)
        self._probe_lock = threading.Lock()  # one probe at a time: each reads back its own value
        limit_row = schema.first_row(self._db, "SELECT current_setting('memory_limit')")
        assert limit_row is not None
        engine_bytes = _size_bytes(str(limit_row[0]))
        # No more window queries at once than fit the engine's memory, nor than there are cores:
        # more would only slow the writer's commits (ingestion) without exporting faster.
        fit = engine_bytes // (ENGINE_OVERHEAD * export_window_bytes)
        window_queries = threading.BoundedSemaphore(max(1, min(fit, os.cpu_count() or 1)))
        self._export_bounds = ExportBounds(export_window_bytes, window_queries, self._observer)
        self._next_seq = schema.next_seq(self._db)
        # Held by each compaction step and each deletion: they never touch the same rows at once.
        self._maintenance = threading.Lock()
        self._compactor = compaction.Compactor(
            self._db,
            compact_rows,
            self._maintenance,
            engine_bytes,
            self.path.with_name(self.path.name + ".wal"),
            self._observer.compacted,
        )
        self._compact_rows = compact_rows
        self._unflushed = 0
        if background_compaction:
            self._compactor.start()
        self._commit_interval = commit_interval_ms / 1000
        self._jobs: JobQueue = queue.SimpleQueue()
        self._linked = identity.LinkedDevices()  # the writer's: cleared by every identity deletion
        self._writer = threading.Thread(target=self._write_loop, name="rawevents-writer", daemon=True)
        self._writer.start()

    # -- writes ---------------------------------------------------------------------------------

    def submit_events(self, events: Sequence[StoredEvent] | pa.Table) -> Future[None]:
        """Queue events (rows, or an Arrow table of INCOMING_SCHEMA) for the next group commit;
        the future resolves once they are durable."""
        future: Future[None] = Future()
        if len(events) == 0:
            future.set_result(None)
            return future
        self._enqueue(events if isinstance(events, pa.Table) else list(events), future)
        return future

    def submit_profile_updates(
        self,
        project_id: int,
        kind: str,
        group_key: str,
        updates: Sequence[ProfileUpdate],
        apply: ProfileApplier,
    ) -> Future[None]:
        future: Future[None] = Future()

        def job(con: duckdb.DuckDBPyConnection) -> None:
            resolved = list(updates)
            if kind == "user":
                canonical = dict(identity.mappings_of(con, project_id, {u.profile_id for u in resolved}))
                resolved = on_canonical_profiles(resolved, canonical)
            _apply_profiles(con, project_id, kind, group_key, resolved, apply)

        self._enqueue(job, future)
        return future

    def _enqueue(self, job: Any, future: Future[None]) -> None:
        self._jobs.put((job, future))
        self._observer.queue_depth(self._jobs.qsize())

    def _write_loop(self) -> None:
        con = self._db.cursor()
        for pending in commit_groups(self._jobs, self._commit_interval):
            self._observer.queue_depth(self._jobs.qsize())
            started = time.perf_counter()
            commit_isolated(pending, lambda jobs: self._commit(con, jobs), self._observer.commit_failed)
            events = sum(len(job) for job, _ in pending if not callable(job))
            self._observer.committed(len(pending), events, time.perf_counter() - started)
        con.close()

    def _commit(self, con: duckdb.DuckDBPyConnection, jobs: list[Any]) -> None:
        """Run `jobs` in one transaction; when the engine's memory is taken (by a compaction
        step, at a small limit), roll back and try again after the step had time to end, rather
        than answer 503 for a batch that fits."""
        for wait_s in OUT_OF_MEMORY_WAITS_S:
            try:
                self._run_transaction(con, jobs)
                return
            except duckdb.OutOfMemoryException:
                log.warning("the engine had no memory left for a commit; retrying in %.1f s", wait_s)
                time.sleep(wait_s)
        self._run_transaction(con, jobs)

    def _run_transaction(self, con: duckdb.DuckDBPyConnection, jobs: list[Any]) -> None:
        tables: list[pa.Table] = []
        callables: list[_Job] = []
        for job in jobs:
            if callable(job):
                callables.append(job)
            else:
                tables.append(job if isinstance(job, pa.Table) else events_table(job))
        rows = pa.concat_tables(tables) if tables else None
        seq_start = self._next_seq
        with schema.transaction(con):
            if rows is not None:
                self._insert_events(con, rows, seq_start)
            for fn in callables:
                fn(con)
        self._next_seq = seq_start + (rows.num_rows if rows is not None else 0)
        if rows is not None:
            self._unflushed += rows.num_rows
            if self._unflushed >= self._compact_rows:
                self._unflushed = 0
                self._compactor.poke()

    def _insert_events(self, con: duckdb.DuckDBPyConnection, rows: pa.Table, seq_start: int) -> None:
        seq = pa.array(range(seq_start, seq_start + rows.num_rows), pa.int64())
        incoming = rows.add_column(2, "seq", seq)
        ingest.insert_deduped(con, incoming)
        identity.apply_links(con, incoming, self._linked)

    def compact(self) -> None:
        """Sort every recent row into runs and merge overlapping runs now (tests, benchmarks,
        bulk loads); the background compactor does the same over time."""
        self._compactor.compact()

    # -- reads ----------------------------------------------------------------------------------

    def ingest_position(self) -> int:
        # `_next_seq` moves only after COMMIT returned, so every seq below it is committed
        # (dedup may leave holes in the sequence; it never reorders it).
        return self._next_seq - 1

    def export_chunks(self, plan: ExportPlan) -> Iterator[bytes | memoryview]:
        where = None if plan.where is None else compile_predicate(DuckDBPrinter(plan.timezone), plan.where)
        con = self._db.cursor()
        try:
            resolve = plan.resolve_identity and identity.has_rows(con, plan.project_id)
            yield from read_export(con, plan, where, self._export_bounds, resolve)
        finally:
            con.close()

    def profiles(
        self, project_id: int, kind: str, group_key: str = ""
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        con = self._db.cursor()
        try:
            result = con.execute(
                "SELECT profile_id, properties FROM profiles"
                " WHERE project_id = ? AND kind = ? AND group_key = ? ORDER BY profile_id",
                [project_id, kind, group_key],
            )
            while batch := result.fetchmany(1000):
                for profile_id, properties in batch:
                    yield profile_id, orjson.loads(properties)
        finally:
            con.close()

    def profile_page(self, query: ProfileQuery) -> ProfilePage:
        conditions = "project_id = ? AND kind = ? AND group_key = ?"
        args: list[Any] = [query.project_id, query.kind, query.group_key]
        if query.ids is not None:
            conditions += " AND list_contains(?, profile_id)"
            args.append(list(query.ids))
        con = self._db.cursor()
        try:
            total = schema.first_row(con, f"SELECT count(*) FROM profiles WHERE {conditions}", args)
            rows = con.execute(
                f"SELECT profile_id, properties FROM profiles WHERE {conditions}"
                " ORDER BY profile_id LIMIT ? OFFSET ?",
                [*args, query.limit, query.offset],
            ).fetchall()
        finally:
            con.close()
        assert total is not None
        return ProfilePage(int(total[0]), [(pid, orjson.loads(props)) for pid, props in rows])

    def event_property_counts(
        self, project_id: int, event: str | None, sample_rows: int, limit: int | None
    ) -> list[tuple[str, int]]:
        conditions = "project_id = ?"
        args: list[Any] = [project_id]
        if event is not None:
            conditions += " AND event = ?"
            args.append(event)
        sql = (
            f"WITH sample AS (SELECT line FROM events WHERE {conditions}"
            " ORDER BY time_ms DESC, seq DESC LIMIT ?),"
            " keys AS (SELECT unnest(json_keys(json_extract(line, '$.properties'))) AS k FROM sample)"
            " SELECT k, count(*) AS n FROM keys WHERE k <> 'time' GROUP BY k ORDER BY n DESC, k"
        )
        args.append(sample_rows)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._read(lambda con: con.execute(sql, args).fetchall())
        return [(name, int(count)) for name, count in rows]

    # The explorer's reads (rawevents/storage/duckdb/queries.py).
    def segmentation(self, query: SegmentationQuery) -> list[SegmentCount]:
        return self._read(lambda con: queries.segmentation(con, query))

    def top_values(self, selection: EventSelection, on: Node, limit: int) -> list[tuple[str, int]]:
        return self._read(lambda con: queries.top_values(con, selection, on, limit))

    def events_page(self, query: EventsPageQuery) -> list[PageRow]:
        return self._read(lambda con: queries.events_page(con, query))

    def _read(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run a query endpoint's read on a fresh cursor. When the engine's memory is taken (by
        concurrent reads, an export or a compaction step, at the default 144MB limit five
        explorer page loads at once did this) the read waits for the others to end and runs
        again; still without memory, the answer is a 503 with Retry-After, never a 500."""
        for wait_s in (*OUT_OF_MEMORY_WAITS_S, None):
            con = self._db.cursor()
            try:
                return work(con)
            except duckdb.OutOfMemoryException as exc:
                if wait_s is None:
                    raise ServerBusy(
                        "the store's memory is taken by other requests; retry shortly", 2
                    ) from exc
            finally:
                con.close()
            time.sleep(wait_s)
        raise AssertionError("unreachable")

    def identity_mappings(
        self, project_id: int, after: int | None = None, upto: int | None = None
    ) -> list[tuple[str, str]]:
        con = self._db.cursor()
        try:
            return identity.mappings(con, project_id, after, upto)
        finally:
            con.close()

    def put_identity_mappings(self, project_id: int, rows: Sequence[tuple[str, str, int]]) -> None:
        position = self.ingest_position()

        def put(con: duckdb.DuckDBPyConnection) -> None:
            self._linked.clear()
            identity.put_rows(con, project_id, rows, position)

        self._write(put)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query on a fresh cursor (the store's own reads, and tests inspecting
        the stored rows; not part of the contract)."""
        con = self._db.cursor()
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    def check(self, timeout: float) -> None:
        """Write a new value into the probe row through the writer (a real durable commit), then
        read it back on a reader cursor; StorageError when either fails or takes over `timeout`."""
        if not self._writer.is_alive():
            raise StorageError("the writer thread has stopped")
        if not self._probe_lock.acquire(timeout=timeout):
            raise StorageError(f"the previous readiness probe did not finish within {timeout:g} s")
        try:
            self._probe(next(self._probe_values), timeout)
        finally:
            self._probe_lock.release()

    def _probe(self, value: int, timeout: float) -> None:
        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("INSERT OR REPLACE INTO readiness_probe VALUES (1, ?)", [value])

        future: Future[None] = Future()
        self._enqueue(write, future)
        try:
            future.result(timeout)
        except FutureTimeout as exc:
            raise StorageError(f"the writer did not commit within {timeout:g} s") from exc
        rows = self.query("SELECT value FROM readiness_probe WHERE id = 1")
        if rows != [(value,)]:
            raise StorageError("the probe row read back differs from the one written")

    # -- data lifecycle -------------------------------------------------------------------------

    def _write(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn` in the writer's next transaction (serialised with ingestion commits), wait
        until it is durable, and return its result. The maintenance lock is held meanwhile, so no
        compaction step moves the rows `fn` deletes (the writer itself never takes that lock)."""
        results: list[T] = []  # a group that fails is retried job by job: keep the last run's

        def job(con: duckdb.DuckDBPyConnection) -> None:
            results.append(fn(con))

        future: Future[None] = Future()
        with self._maintenance:
            self._enqueue(job, future)
            future.result()
        return results[-1]

    def _checkpoint(self) -> None:
        """Fold the WAL into the database file, so deleted rows leave the WAL now rather than at
        the next size-triggered checkpoint. Best effort: a busy engine checkpoints later."""
        con = self._db.cursor()
        try:
            con.execute("CHECKPOINT")
        except duckdb.Error:
            log.info("checkpoint after a deletion deferred", exc_info=True)
        finally:
            con.close()

    def delete_users(self, project_id: int, distinct_ids: Sequence[str]) -> DeletedRows:
        def delete(con: duckdb.DuckDBPyConnection) -> DeletedRows:
            ids = identity.cluster_members(con, project_id, distinct_ids)
            self._linked.clear()
            identity.delete_rows(
                con,
                "project_id = ? AND (list_contains(?, distinct_id) OR list_contains(?, canonical_id))",
                [project_id, ids, ids],
            )
            events = schema.delete_events(
                con, "project_id = ? AND list_contains(?, distinct_id)", [project_id, ids]
            )
            profiles = schema.affected_rows(
                con,
                "DELETE FROM profiles WHERE project_id = ? AND kind = 'user'"
                " AND list_contains(?, profile_id)",
                [project_id, ids],
            )
            return DeletedRows(events, profiles)

        deleted = self._write(delete)
        self._checkpoint()
        return deleted

    def drop_events_before(self, project_id: int, cutoff_ms: int) -> int:
        def drop(con: duckdb.DuckDBPyConnection) -> int:
            dropped = schema.delete_events(con, "project_id = ? AND time_ms < ?", [project_id, cutoff_ms])
            self._linked.clear()
            identity.drop_expired(con, project_id, cutoff_ms)
            return dropped

        dropped = self._write(drop)
        if dropped:
            self._checkpoint()
        return dropped

    def delete_project(self, project_id: int) -> DeletedRows:
        def delete(con: duckdb.DuckDBPyConnection) -> DeletedRows:
            events = schema.delete_events(con, "project_id = ?", [project_id])
            profiles = schema.affected_rows(con, "DELETE FROM profiles WHERE project_id = ?", [project_id])
            self._linked.clear()
            identity.delete_rows(con, "project_id = ?", [project_id])
            return DeletedRows(events, profiles)

        deleted = self._write(delete)
        self._checkpoint()
        return deleted

    def user_events(self, project_id: int, distinct_ids: Sequence[str]) -> Iterator[bytes | memoryview]:
        con = self._db.cursor()
        try:
            ids = identity.cluster_members(con, project_id, distinct_ids)
            linked = identity.has_rows(con, project_id)
            source = identity.resolved("events") if linked else "events"
            reader = con.sql(  # resolved, the cluster's events all carry its canonical id
                f"SELECT line FROM {source} WHERE project_id = ? AND list_contains(?, distinct_id)"
                " ORDER BY time_ms, seq",
                params=[project_id, ids],
            ).to_arrow_reader(ROWS_PER_BATCH)
            for batch in reader:
                if batch.num_rows:
                    yield string_column_bytes(batch.column(0))
        finally:
            con.close()

    def user_profiles(
        self, project_id: int, distinct_ids: Sequence[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        con = self._db.cursor()
        try:
            ids = identity.cluster_members(con, project_id, distinct_ids)
            result = con.execute(
                "SELECT profile_id, properties FROM profiles WHERE project_id = ? AND kind = 'user'"
                " AND list_contains(?, profile_id) ORDER BY profile_id",
                [project_id, ids],
            )
            while batch := result.fetchmany(1000):
                for profile_id, properties in batch:
                    yield profile_id, orjson.loads(properties)
        finally:
            con.close()

    def backup(self, target: Path) -> BackupInfo:
        """EXPORT DATABASE inside one read transaction: MVCC gives it a snapshot of every table
        at the transaction's start, while the writer keeps committing."""
        con = self._db.cursor()
        try:
            return backup.export_snapshot(con, target)
        finally:
            con.close()

    def close(self) -> None:
        self._compactor.stop()
        if self._writer.is_alive():
            self._jobs.put(None)
            self._writer.join()
        self._db.close()


def _connect(path: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """Open the database with every setting in the connect config: opening replays the WAL left
    by a crash, and that replay may already spill to the temp directory, so a temp_directory SET
    afterwards fails ("Cannot switch temporary directory after the current one has been used")."""
    temp_dir = path.parent / "tmp"
    temp_dir.mkdir(mode=0o700, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": memory_limit,
        "temp_directory": str(temp_dir),
        # Sorted runs are written and read in storage order: plain scans must keep it.
        "preserve_insertion_order": True,
        "checkpoint_threshold": CHECKPOINT_THRESHOLD,
    }
    try:
        return duckdb.connect(str(path), config=config)
    except duckdb.IOException as exc:
        if "Could not set lock" in str(exc):
            holder = re.search(r"\(PID (\d+)\)", str(exc))
            who = f" (PID {holder.group(1)})" if holder else ""
            raise StoreInUse(
                f"data directory {path.parent} is in use by another process{who}, probably another"
                " rawevents server: stop it, or give this one its own --data-dir"
            ) from None
        raise


_UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def _size_bytes(text: str) -> int:
    """DuckDB's memory sizes ('192MB', '183.1 MiB') in bytes."""
    number = text.strip().rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ").strip()
    unit = text.strip()[len(number) :].strip().lower()
    return int(float(number) * _UNITS[unit])


def _apply_profiles(
    con: duckdb.DuckDBPyConnection,
    project_id: int,
    kind: str,
    group_key: str,
    updates: list[ProfileUpdate],
    apply: ProfileApplier,
) -> None:
    ids = sorted({u.profile_id for u in updates})
    rows = con.execute(
        "SELECT profile_id, properties FROM profiles"
        " WHERE project_id = ? AND kind = ? AND group_key = ? AND list_contains(?, profile_id)",
        [project_id, kind, group_key, ids],
    ).fetchall()
    current: dict[str, dict[str, Any] | None] = {pid: orjson.loads(props) for pid, props in rows}
    touched: dict[str, int] = {}
    for update in updates:
        current[update.profile_id] = apply(current.get(update.profile_id), update)
        touched[update.profile_id] = update.time_ms
    for profile_id, updated_ms in touched.items():
        con.execute(
            "DELETE FROM profiles WHERE project_id = ? AND kind = ? AND group_key = ? AND profile_id = ?",
            [project_id, kind, group_key, profile_id],
        )
        props = current.get(profile_id)
        if props is not None:
            con.execute(
                "INSERT INTO profiles VALUES (?, ?, ?, ?, ?, ?)",
                [project_id, kind, group_key, profile_id, orjson.dumps(props).decode(), updated_ms],
            )
