"""The ClickHouse store: one schema and one SQL text for chdb (the engine in process) and for a
ClickHouse server or cluster over HTTP; only the connection differs (`conn`).

Layout. `events` is a MergeTree ordered by (project_id, time_ms, seq, node): an export (one
project, a time range, in time order) is a primary-key range read in order, never a full sort
(`optimize_read_in_order`). `seq` is the writer's clock in microseconds, strictly increasing per
writer, and `node` a random id drawn when the writer starts: equal times keep ingestion order and
the tie-break is unique across hosts without a shared counter. Partitions are months of event
time, so dropping old data is a metadata operation. Lines are stored assembled, as in DuckDB.

Idempotency. A retried batch is stored once: the writer inserts each group commit through a
staging table and keeps only rows whose dedup key (project, time, hash of event, distinct_id and
$insert_id) is neither earlier in the batch nor already stored in the batch's time span (the
same anti-join the DuckDB store runs). Two hosts inserting the same retry at the same instant
could both pass that check, so exports also drop repeats at read time with `LIMIT 1 BY time_ms,
dedup` on each ordered window: an export never shows a duplicate, even before any merge.

Durability. The future of a write resolves only after the INSERT returned. The table sets
`fsync_after_insert` and `fsync_part_directory`, so an acknowledged part is on disk (chdb and a
single server alike); on a cluster, `insert_quorum` (docs/scale-out.md) adds replicas.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow as pa

from rawevents.errors import StorageError, Unsupported
from rawevents.storage.base import (
    EVENT_COLUMNS,
    BackupInfo,
    DeletedRows,
    EventSelection,
    EventsPageQuery,
    ExportPlan,
    PageRow,
    ProfileApplier,
    ProfilePage,
    ProfileQuery,
    ProfileUpdate,
    SegmentationQuery,
    SegmentCount,
    StoredEvent,
    events_table,
    on_canonical_profiles,
)
from rawevents.storage.clickhouse import identity, ingest, queries, schema
from rawevents.storage.clickhouse.conn import Connection, Engine, Params
from rawevents.storage.clickhouse.export import (
    BUCKET_MS,
    SCAN_TARGET_ROWS,
    export_query,
    pieces,
    position_conditions,
)
from rawevents.storage.group_commit import JobQueue, commit_groups, commit_isolated
from rawevents.where.ast import Node
from rawevents.where.printer import compile_predicate
from rawevents.where.printer.clickhouse import ClickHousePrinter

log = logging.getLogger(__name__)

# With a shared server, other hosts' writers commit rows whose `seq` (their clock) may be below
# this host's newest; a cursor position trails the clock by this much so that every such row is
# committed before a cursor covers it (bounds clock skew + the longest commit). Docs: scale-out.
SHARED_CURSOR_LAG_US = 30_000_000
# Rows per window of an export resolved through all of a project's identity rows: each window
# reads them once (identity.resolved), so fewer, larger windows (the dedup state of one
# stays small).
RESOLVED_TARGET_ROWS = 4 * SCAN_TARGET_ROWS
# With a shared server, how long the writer trusts that an id it saw linked still is (another
# host may have deleted its row: GDPR, retention); this host's own deletions clear it at once.
LINKED_TTL_S = 30.0

_PROFILE_SCOPE = "project_id = {p:Int32} AND kind = {kind:String} AND group_key = {gk:String}"

_Job = Callable[[Connection], None]
T = TypeVar("T")
_USERS = "project_id = {p:Int32} AND has({ids:Array(String)}, distinct_id)"
_USER_PROFILES = "project_id = {p:Int32} AND kind = 'user' AND has({ids:Array(String)}, profile_id)"
_T = TypeVar("_T")


class ClickHouseStore:
    # Cursors carry `seq`, the writers' microsecond clocks: an ingestion-time watermark.
    cursor_kind = "ingest_us"

    def __init__(self, engine: Engine, *, commit_interval_ms: int = 2) -> None:
        self._engine = engine
        self._node = random.getrandbits(32)
        self._staging = f"rawevents_incoming_{self._node:08x}"
        self._readers: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        writer = engine.connect()
        cluster = f" ON CLUSTER {engine.cluster}" if engine.cluster else ""
        for statement in (*schema.SCHEMA, identity.SCHEMA):
            writer.command(statement.format(cluster=cluster))
        writer.command(ingest.STAGING.format(staging=self._staging))
        # Ticks continue above every stored one (a batch can run ahead of the clock), so a cursor
        # issued before a restart never skips rows written after it.
        newest = "SELECT greatest((SELECT max(seq) FROM events), (SELECT max(version) FROM identity))"
        self._last_tick = int(writer.table(newest).column(0)[0].as_py() or 0)
        self._inflight: int | None = None  # first seq of the commit being written, if any
        # Ids known to have identity rows (the writer's; other hosts' writers may delete rows).
        self._linked = identity.LinkedIds(shared=engine.shared, ttl_s=LINKED_TTL_S)
        self._commit_interval = commit_interval_ms / 1000
        self._jobs: JobQueue = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write_loop, args=(writer,), name="rawevents-ch-writer", daemon=True
        )
        self._writer.start()

    # -- writes ---------------------------------------------------------------------------------

    def submit_events(self, events: Sequence[StoredEvent] | pa.Table) -> Future[None]:
        future: Future[None] = Future()
        if len(events) == 0:
            future.set_result(None)
            return future
        self._jobs.put((events if isinstance(events, pa.Table) else list(events), future))
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

        def job(con: Connection) -> None:
            resolved = list(updates)
            if kind == "user":
                canonical = dict(identity.mappings_of(con, project_id, {u.profile_id for u in resolved}))
                resolved = on_canonical_profiles(resolved, canonical)
            self._apply_profiles(con, project_id, kind, group_key, resolved, apply)

        self._jobs.put((job, future))
        return future

    def _write_loop(self, con: Connection) -> None:
        for pending in commit_groups(self._jobs, self._commit_interval):
            # A retried group is harmless: the dedup drops events of it that did land.
            commit_isolated(pending, lambda jobs: self._run(con, jobs), lambda: None)
        con.command(f"DROP TABLE IF EXISTS {self._staging}")
        con.close()

    def _run(self, con: Connection, jobs: list[Any]) -> None:
        tables = [
            job if isinstance(job, pa.Table) else events_table(job) for job in jobs if not callable(job)
        ]
        if tables:
            self._insert_events(con, pa.concat_tables(tables))
        for job in jobs:
            if callable(job):
                job(con)

    def _ticks(self, count: int) -> int:
        """The first of `count` strictly increasing ticks (µs of the writer's clock)."""
        first = max(self._last_tick + 1, time.time_ns() // 1000)
        self._last_tick = first + count - 1
        return first

    def _insert_events(self, con: Connection, rows: pa.Table) -> None:
        start = self._ticks(rows.num_rows)
        self._inflight = start
        try:
            seq = pa.array(range(start, start + rows.num_rows), pa.uint64())
            ingest.insert_deduped(
                con, self._staging, rows.select(list(EVENT_COLUMNS)).append_column("seq", seq), self._node
            )
            # The links after the events they travel with (a retried group applies them again,
            # which changes nothing). Rows changed here are versioned by the commit's last tick.
            identity.apply_links(con, rows.append_column("seq", seq), self._last_tick, self._linked)
        finally:
            self._inflight = None

    def _apply_profiles(
        self,
        con: Connection,
        project_id: int,
        kind: str,
        group_key: str,
        updates: list[ProfileUpdate],
        apply: ProfileApplier,
    ) -> None:
        scope: dict[str, Any] = {"p": project_id, "kind": kind, "gk": group_key}
        ids = sorted({u.profile_id for u in updates})
        found = con.table(
            f"SELECT profile_id, properties FROM profiles FINAL WHERE {_PROFILE_SCOPE}"
            " AND has({ids:Array(String)}, profile_id)",
            {**scope, "ids": ids},
        )
        current: dict[str, dict[str, Any] | None] = {
            pid: orjson.loads(props)
            for pid, props in zip(found.column(0).to_pylist(), found.column(1).to_pylist(), strict=True)
        }
        touched: dict[str, int] = {}
        for update in updates:
            current[update.profile_id] = apply(current.get(update.profile_id), update)
            touched[update.profile_id] = update.time_ms
        version = self._ticks(len(touched))
        changed = list(touched)
        properties = [current.get(pid) for pid in changed]
        con.insert(
            "profiles",
            pa.table(
                {
                    "project_id": pa.array([project_id] * len(changed), pa.int32()),
                    "kind": [kind] * len(changed),
                    "group_key": [group_key] * len(changed),
                    "profile_id": changed,
                    "properties": ["{}" if p is None else orjson.dumps(p).decode() for p in properties],
                    "updated_ms": pa.array(list(touched.values()), pa.int64()),
                    "version": pa.array(range(version, version + len(changed)), pa.uint64()),
                    "deleted": pa.array([int(p is None) for p in properties], pa.uint8()),
                }
            ),
        )

    # -- reads ----------------------------------------------------------------------------------

    def _reader(self) -> Connection:
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            return self._engine.connect()

    def _release(self, con: Connection) -> None:
        self._readers.put(con)

    def ingest_position(self) -> int:
        """Below any commit in flight (its rows are not visible yet), else the newest tick this
        writer handed out; with a shared server also SHARED_CURSOR_LAG_US behind the clock."""
        inflight = self._inflight
        position = self._last_tick if inflight is None else inflight - 1
        if self._engine.shared:
            position = min(position, time.time_ns() // 1000 - SHARED_CURSOR_LAG_US)
        return position

    def export_chunks(self, plan: ExportPlan) -> Iterator[bytes | memoryview]:
        where = (
            None if plan.where is None else compile_predicate(ClickHousePrinter(plan.timezone), plan.where)
        )
        con = self._reader()
        try:
            remaining = plan.limit
            identity_rows = 0
            if plan.resolve_identity:
                identity_rows = identity.row_count(con, plan.project_id)
            resolve = identity_rows > 0
            # A resolved window reads identity rows once (identity.resolved): all of the
            # project's when they are few, in windows made larger to read them less often; else
            # only those of the window's ids, whose number the window bounds.
            only_read_ids = identity_rows > SCAN_TARGET_ROWS
            target = RESOLVED_TARGET_ROWS if resolve and not only_read_ids else SCAN_TARGET_ROWS
            for start, end, offset in self._windows(con, plan, target):
                if remaining is not None and remaining <= 0:
                    return
                sql, params = export_query(
                    plan, where, start, end, offset, remaining, resolve, only_read_ids=only_read_ids
                )
                for block in con.raw(sql, params):
                    if remaining is not None:
                        remaining -= block.count(b"\n")  # one line per row, newline-terminated
                    yield block
        finally:
            self._release(con)

    def _windows(
        self, con: Connection, plan: ExportPlan, target: int = SCAN_TARGET_ROWS
    ) -> list[tuple[int, int, int]]:
        """The plan's range cut to the hours holding rows, in windows of about `target` rows:
        each window is one ordered query whose read-time dedup state stays that small."""
        if not plan.segments:
            return []
        sql = (
            "SELECT toInt64(floor(time_ms / {bucket:Int64})) AS bucket, count() FROM events"
            " WHERE project_id = {p:Int32} AND time_ms >= {low:Int64} AND time_ms < {high:Int64}"
        )
        params: dict[str, Any] = {
            "bucket": BUCKET_MS,
            "p": plan.project_id,
            "low": plan.segments[0].start_ms,
            "high": plan.segments[-1].end_ms,
        }
        if plan.events is not None:
            sql += " AND has({events:Array(String)}, event)"
            params["events"] = list(plan.events)
        for condition in position_conditions(plan, params):  # incremental: count only new rows
            sql += f" AND {condition}"
        found = con.table(sql + " GROUP BY bucket", params)
        buckets = sorted(zip(found.column(0).to_pylist(), found.column(1).to_pylist(), strict=True))
        return [(s.start_ms, s.end_ms, s.offset_ms) for s in pieces(plan.segments, buckets, target)]

    def profiles(
        self, project_id: int, kind: str, group_key: str = ""
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        con = self._reader()
        try:
            for batch in con.stream(
                f"SELECT profile_id, properties FROM profiles FINAL WHERE {_PROFILE_SCOPE}"
                " ORDER BY profile_id",
                {"p": project_id, "kind": kind, "gk": group_key},
            ):
                for profile_id, properties in zip(
                    batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True
                ):
                    yield profile_id, orjson.loads(properties)
        finally:
            self._release(con)

    def profile_page(self, query: ProfileQuery) -> ProfilePage:
        conditions = _PROFILE_SCOPE
        params: dict[str, Any] = {"p": query.project_id, "kind": query.kind, "gk": query.group_key}
        if query.ids is not None:
            conditions += " AND has({ids:Array(String)}, profile_id)"
            params["ids"] = list(query.ids)
        total = self._table(f"SELECT count() FROM profiles FINAL WHERE {conditions}", params)
        page = self._table(
            f"SELECT profile_id, properties FROM profiles FINAL WHERE {conditions}"
            " ORDER BY profile_id LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
            {**params, "limit": query.limit, "offset": query.offset},
        )
        rows = zip(page.column(0).to_pylist(), page.column(1).to_pylist(), strict=True)
        return ProfilePage(int(total.column(0)[0].as_py()), [(pid, orjson.loads(p)) for pid, p in rows])

    def event_property_counts(
        self, project_id: int, event: str | None, sample_rows: int, limit: int | None
    ) -> list[tuple[str, int]]:
        conditions = "project_id = {p:Int32}"
        params: dict[str, Any] = {"p": project_id, "sample": sample_rows}
        if event is not None:
            conditions += " AND event = {event:String}"
            params["event"] = event
        sql = (
            f"SELECT k, count() AS n FROM (SELECT line FROM events WHERE {conditions}"
            " ORDER BY time_ms DESC, seq DESC, node DESC LIMIT {sample:UInt64})"
            " ARRAY JOIN JSONExtractKeys(line, 'properties') AS k WHERE k != 'time'"
            " GROUP BY k ORDER BY n DESC, k"
        )
        if limit is not None:
            sql += " LIMIT {limit:UInt64}"
            params["limit"] = limit
        found = self._table(sql, params)
        return list(zip(found.column(0).to_pylist(), found.column(1).to_pylist(), strict=True))

    # -- readiness and data lifecycle -----------------------------------------------------------
    # Deletions run as writer jobs, so they are serialised with group commits (a commit's dedup
    # never sees half a deletion); ClickHouse's lightweight DELETE is synchronous by default.

    def _write(self, fn: Callable[[Connection], T], timeout: float | None = None) -> T:
        results: list[T] = []
        future: Future[None] = Future()
        self._jobs.put((lambda con: results.append(fn(con)), future))
        try:
            future.result(timeout)
        except FutureTimeout as exc:
            raise StorageError(f"the writer did not commit within {timeout:g} s") from exc
        return results[-1]

    def check(self, timeout: float) -> None:
        if not self._writer.is_alive():
            raise StorageError("the writer thread has stopped")
        self._write(lambda con: con.command("SELECT 1"), timeout)
        if self._table("SELECT 1", {}).num_rows != 1:
            raise StorageError("the store did not answer a read")

    def _count(self, con: Connection, sql: str, params: Params) -> int:
        return int(con.table(sql, params).column(0)[0].as_py())

    def _delete(self, con: Connection, table: str, condition: str, params: Params) -> int:
        found = self._count(con, f"SELECT count() FROM {table} WHERE {condition}", params)
        if found:
            con.command(f"DELETE FROM {table} WHERE {condition}", params)
        return found

    def delete_users(self, project_id: int, distinct_ids: Sequence[str]) -> DeletedRows:
        def delete(con: Connection) -> DeletedRows:
            # The ids' whole clusters: every id a person was seen under, and their identity rows.
            self._linked.clear()
            ids = identity.cluster_members(con, project_id, distinct_ids)
            params = {"p": project_id, "ids": ids}
            identity.delete_rows(
                con,
                "project_id = {p:Int32}"
                " AND (has({ids:Array(String)}, distinct_id) OR has({ids:Array(String)}, canonical_id))",
                params,
            )
            return DeletedRows(
                self._delete(con, "events", _USERS, params),
                self._delete(con, "profiles", _USER_PROFILES, params),
            )

        return self._write(delete)

    def drop_events_before(self, project_id: int, cutoff_ms: int) -> int:
        def drop(con: Connection) -> int:
            dropped = self._delete(
                con,
                "events",
                "project_id = {p:Int32} AND time_ms < {cutoff:Int64}",
                {"p": project_id, "cutoff": cutoff_ms},
            )
            self._linked.clear()
            identity.drop_expired(con, project_id, cutoff_ms)
            return dropped

        return self._write(drop)

    def delete_project(self, project_id: int) -> DeletedRows:
        params = {"p": project_id}

        def delete(con: Connection) -> DeletedRows:
            self._linked.clear()
            identity.delete_rows(con, "project_id = {p:Int32}", params)
            return DeletedRows(
                self._delete(con, "events", "project_id = {p:Int32}", params),
                self._delete(con, "profiles", "project_id = {p:Int32}", params),
            )

        return self._write(delete)

    def user_events(self, project_id: int, distinct_ids: Sequence[str]) -> Iterator[bytes | memoryview]:
        con = self._reader()
        try:
            ids = identity.cluster_members(con, project_id, distinct_ids)
            source = f"events WHERE {_USERS}"
            if identity.has_rows(con, project_id):  # the cluster's events carry its canonical id
                source = identity.resolved(_USERS, only_read_ids=True)
            yield from con.raw(
                f"SELECT line AS out FROM {source} ORDER BY time_ms, seq, node LIMIT 1 BY time_ms, dedup",
                {"p": project_id, "ids": ids},
            )
        finally:
            self._release(con)

    def user_profiles(
        self, project_id: int, distinct_ids: Sequence[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        ids = self._read(lambda con: identity.cluster_members(con, project_id, distinct_ids))
        found = self._table(
            f"SELECT profile_id, properties FROM profiles FINAL WHERE {_USER_PROFILES} ORDER BY profile_id",
            {"p": project_id, "ids": ids},
        )
        rows = zip(found.column(0).to_pylist(), found.column(1).to_pylist(), strict=True)
        return iter([(pid, orjson.loads(props)) for pid, props in rows])

    def identity_mappings(
        self, project_id: int, after: int | None = None, upto: int | None = None
    ) -> list[tuple[str, str]]:
        return self._read(lambda con: identity.mappings(con, project_id, after, upto))

    def put_identity_mappings(self, project_id: int, rows: Sequence[tuple[str, str, int]]) -> None:
        position = self.ingest_position()

        def put(con: Connection) -> None:
            self._linked.clear()
            identity.put_rows(con, project_id, list(rows), position, self._ticks(1))

        self._write(put)

    def backup(self, target: Path) -> BackupInfo:
        raise Unsupported(
            "rawevents backup snapshots the embedded DuckDB store; back up a ClickHouse store with"
            " ClickHouse's own BACKUP … TO (docs/scale-out.md)"
        )

    def _table(self, sql: str, params: Params) -> pa.Table:
        con = self._reader()
        try:
            return con.table(sql, params)
        finally:
            self._release(con)

    def query(self, sql: str, params: Sequence[Any] | Params = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (tests inspecting stored rows, as on the DuckDB store; not part
        of the contract): named `{name:Type}` parameters from a mapping, or `?` placeholders
        bound in order and typed from the Python values."""
        if isinstance(params, Mapping):
            found = self._table(sql, params)
        else:
            parts = sql.split("?")
            text = parts[0] + "".join(
                f"{{q{i}:{_ch_type(value)}}}{part}"
                for i, (value, part) in enumerate(zip(params, parts[1:], strict=True))
            )
            found = self._table(text, {f"q{i}": value for i, value in enumerate(params)})
        return list(zip(*(column.to_pylist() for column in found.columns), strict=True))

    def close(self) -> None:
        if self._writer.is_alive():
            self._jobs.put(None)
            self._writer.join()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
        self._engine.close()

    # The explorer's reads (rawevents/storage/queries.py).
    def segmentation(self, query: SegmentationQuery) -> list[SegmentCount]:
        return self._read(lambda con: queries.segmentation(con, query))

    def top_values(self, selection: EventSelection, on: Node, limit: int) -> list[tuple[str, int]]:
        return self._read(lambda con: queries.top_values(con, selection, on, limit))

    def events_page(self, query: EventsPageQuery) -> list[PageRow]:
        return self._read(lambda con: queries.events_page(con, query))

    def _read(self, work: Callable[[Connection], _T]) -> _T:
        con = self._reader()
        try:
            return work(con)
        finally:
            self._release(con)


def _ch_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int64"
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, list | tuple):
        return f"Array({_ch_type(value[0]) if value else 'String'})"
    return "String"
