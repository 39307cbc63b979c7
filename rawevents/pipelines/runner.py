"""The server's pipeline thread: runs each active pipeline every `every` seconds, exactly once.

One run, for a pipeline whose cursor is C (everything at or below C is delivered):

1. Pin the slice: H = the store's ingestion position now; the run (number R, after C, upto H)
   is saved in the registry as the pipeline's pending run before anything is written.
2. Export the slice (the export's plan: the project's days from `--from`, its event names and
   `where`, positions in (C, H]) in the export's order, cut by project-local day into objects
   `events/date=D/run-R-S.<format>` (rawevents.pipelines.objects). Each object is spooled to
   local disk, its name added to the pending run in the registry, and only then uploaded.
3. Identity mappings changed in (C, H] go to `identity_mappings/run-R.<format>`.
4. Objects named by an earlier attempt of run R but not written by this one are deleted.
5. Commit: cursor = H, run = R, no pending run, with the run's row, in one registry write.

A crash, `kill -9` or a destination error anywhere before 5 leaves the pending run: the next
attempt exports the same slice (positions are fixed, so the same events) under the same names,
overwriting. An event is written only by the run whose slice holds its position, so it is in
exactly one object once that run is committed; a late event has a position above every
committed cursor, so a later run writes it to its day's partition. Errors are retried with
exponential backoff (1 s doubling, at most `retry_max_s`); the thread runs at a lower CPU
priority than ingestion and reads the store like an export does, so ingestion never waits for it.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from rawevents import timeutil
from rawevents.export.stream import compression_pool, lower_priority
from rawevents.pipelines import deletions
from rawevents.pipelines.destination import Destination
from rawevents.pipelines.model import ACTIVE, ENDED, Pipeline, RunState
from rawevents.pipelines.objects import (
    MAX_OBJECT_ROWS,
    LocalDays,
    ObjectSink,
    RunObjects,
    UtcMsDays,
    split_days,
)
from rawevents.projects import Project, ProjectRegistry, now_ms
from rawevents.where import parse

if TYPE_CHECKING:
    from rawevents.storage.base import EventStore, ExportPlan

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
LEASE_MS = 120_000  # a host that stops beating loses its pipelines after this (ClickHouse)
RENEW_SECONDS = 10.0
RETRY_MAX_SECONDS = 60.0
STOP_WAIT_SECONDS = 30.0
SPOOL_DIR = "pipeline-spool"


class PipelineObserver(Protocol):
    """What the runner reports (rawevents.metrics implements it)."""

    def pipeline_run(self, name: str, outcome: str, rows: int, objects: int, size: int) -> None: ...

    def pipeline_lag(self, name: str, seconds: float) -> None: ...


class _Quiet:
    def pipeline_run(self, name: str, outcome: str, rows: int, objects: int, size: int) -> None:
        pass

    def pipeline_lag(self, name: str, seconds: float) -> None:
        pass


class Stopping(Exception):
    """The server is stopping: the run is left pending, to be redone after the restart."""


@dataclass
class PipelineContext:
    registry: ProjectRegistry
    store: EventStore
    spool_root: Path
    observer: PipelineObserver = field(default_factory=_Quiet)
    stopping: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], int] = now_ms
    retry_max_s: float = RETRY_MAX_SECONDS
    object_rows: int = MAX_OBJECT_ROWS
    pool: Executor | None = None  # compression threads (None: compress on the runner's thread)
    _destinations: dict[str, Destination] = field(default_factory=dict)

    def destination(self, url: str) -> Destination:
        found = self._destinations.get(url)
        if found is None:
            found = self._destinations[url] = Destination(url)
        return found

    def spool(self, name: str) -> Path:
        return self.spool_root / name


def export_plan(pipeline: Pipeline, project: Project, after: int, upto: int, today: dt.date) -> ExportPlan:
    """The export of the pipeline's slice: its days from `--from` to two days after today (no
    event is more than an hour ahead of its ingestion), its filters, positions in (after, upto]."""
    from rawevents.storage.base import ExportPlan

    spec = pipeline.spec
    zone = project.zone
    start_ms, end_ms = timeutil.day_range_ms(
        zone, dt.date.fromisoformat(spec.from_day), today + dt.timedelta(days=2)
    )
    parquet = spec.format == "parquet"
    return ExportPlan(
        project_id=project.project_id,
        segments=tuple(timeutil.offset_segments(zone, start_ms, end_ms)),
        events=spec.events or None,
        where=parse(spec.where) if spec.where else None,
        timezone=project.timezone,
        time_in_ms=parquet,
        time_utc=parquet,
        after_position=after,
        upto_position=upto,
    )


class LeaseLost(Stopping):
    """Another host took the pipeline over (this one stalled past its lease): stop at once."""


def renew(ctx: PipelineContext, name: str) -> None:
    """Renew this host's lease on the pipeline while it works, or stop working on it."""
    if not ctx.registry.claim_pipeline(name, LEASE_MS):
        raise LeaseLost


class _Sink(ObjectSink):
    """Records each object's name in the pending run before uploading it."""

    def __init__(self, ctx: PipelineContext, name: str, state: RunState, dest: Destination) -> None:
        self.ctx, self.name, self.state, self.dest = ctx, name, state, dest

    def intend(self, key: str) -> None:
        if self.ctx.stopping.is_set():
            raise Stopping
        assert self.state.pending is not None
        objects: list[str] = self.state.pending.setdefault("objects", [])
        if key not in objects:
            objects.append(key)
            self.ctx.registry.save_pipeline_state(self.name, self.state)
        renew(self.ctx, self.name)

    def upload(self, key: str, path: Path) -> int:
        return self.dest.put_file(key, path)


def step(ctx: PipelineContext, pipeline: Pipeline) -> dict[str, Any] | None:
    """Do what is due for one pipeline: finish a pending run, carry out deletions, start a run.
    Returns the run row of a committed run, else None. Raises on failure (the caller retries)."""
    state = pipeline.state
    dest = ctx.destination(pipeline.spec.destination)
    project = ctx.registry.project_by_id(pipeline.spec.project_id)
    if project is None and state.pending is not None:  # project deleted: its run cannot finish
        for key in state.pending.get("objects", []):
            dest.delete(key)
        state.pending = None
        ctx.registry.save_pipeline_state(pipeline.name, state)
    if state.pending is None:
        _carry_out_deletions(ctx, pipeline, dest)
        if project is None or pipeline.status != ACTIVE or not _due(ctx, pipeline):
            return None
        upto = ctx.store.ingest_position()
        now = ctx.clock()
        state.pinned_ms = now
        if upto <= state.cursor:  # nothing stored since the last run: no run
            state.delivered_ms = now
            ctx.registry.save_pipeline_state(pipeline.name, state)
            return None
        state.pending = {
            "run": state.run + 1,
            "after": state.cursor,
            "upto": upto,
            "started_ms": now,
            "objects": [],
        }
        ctx.registry.save_pipeline_state(pipeline.name, state)
    elif project is None or pipeline.status != ACTIVE:
        return None
    assert project is not None
    return _run(ctx, pipeline, project, dest)


def _work_to_do(ctx: PipelineContext, pipeline: Pipeline) -> bool:
    """A run pending or due, or a deletion waiting: only then is the pipeline claimed."""
    if pipeline.state.pending is not None or (pipeline.status == ACTIVE and _due(ctx, pipeline)):
        return True
    return bool(ctx.registry.pipeline_deletions(pipeline.name))


def _due(ctx: PipelineContext, pipeline: Pipeline) -> bool:
    return ctx.clock() >= pipeline.state.pinned_ms + pipeline.spec.every_s * 1000


def _run(ctx: PipelineContext, pipeline: Pipeline, project: Project, dest: Destination) -> dict[str, Any]:
    state = pipeline.state
    pending = state.pending
    assert pending is not None
    run, after, upto = int(pending["run"]), int(pending["after"]), int(pending["upto"])
    fmt = pipeline.spec.format
    plan = export_plan(pipeline, project, after, upto, timeutil.today(project.zone))
    spool = ctx.spool(pipeline.name)
    shutil.rmtree(spool, ignore_errors=True)
    sink = _Sink(ctx, pipeline.name, state, dest)
    local = UtcMsDays(plan.segments) if fmt == "parquet" else None
    objects = RunObjects(sink, spool, run, fmt, local=local, max_rows=ctx.object_rows, pool=ctx.pool)
    chunks = ctx.store.export_chunks(plan)
    try:
        renewed = time.monotonic()
        for day, lines in split_days(chunks, local or LocalDays()):
            if ctx.stopping.is_set():
                raise Stopping
            if time.monotonic() - renewed > RENEW_SECONDS:
                renew(ctx, pipeline.name)
                renewed = time.monotonic()
            objects.add(day, lines)
        written = objects.finish()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        objects.abandon()
    keys = {o.key for o in written}
    size = sum(o.bytes for o in written)
    mappings = ctx.store.identity_mappings(project.project_id, after, upto)
    if mappings:
        key = f"identity_mappings/run-{run:08d}.{fmt}"
        sink.intend(key)
        size += dest.put_file(key, _mappings_file(mappings, spool, fmt))
        keys.add(key)
    for stale in sorted(set(pending.get("objects", [])) - keys):  # an earlier attempt's
        dest.delete(stale)
    finished = ctx.clock()
    rows = sum(o.rows for o in written)
    record = {
        "run": run,
        "attempt": state.attempt,
        "outcome": "committed",
        "started_ms": int(pending["started_ms"]),
        "finished_ms": finished,
        "after": after,
        "upto": upto,
        "rows": rows,
        "objects": len(written),
        "bytes": size,
        "days": sorted({o.day for o in written}),
        "identity_mappings": len(mappings),
        "lag_seconds": round((finished - int(pending["started_ms"])) / 1000, 3),
        "error": None,
    }
    state.cursor, state.run, state.pending = upto, run, None
    state.attempt = state.failures = 0
    state.error = None
    state.next_attempt_ms = 0
    state.last_run_ms = finished
    state.delivered_ms = int(pending["started_ms"])
    ctx.registry.save_pipeline_state(pipeline.name, state, record)
    shutil.rmtree(spool, ignore_errors=True)
    return record


def _mappings_file(rows: list[tuple[str, str]], spool: Path, fmt: str) -> Path:
    path = spool / f"identity_mappings.{fmt}"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "distinct_id": pa.array([r[0] for r in rows], pa.string()),
                "resolved_distinct_id": pa.array([r[1] for r in rows], pa.string()),
            }
        )
        pq.write_table(table, path)
    else:
        import gzip

        body = b"".join(orjson.dumps({"distinct_id": a, "resolved_distinct_id": b}) + b"\n" for a, b in rows)
        path.write_bytes(gzip.compress(body, compresslevel=1))
    return path


def _carry_out_deletions(ctx: PipelineContext, pipeline: Pipeline, dest: Destination) -> None:
    for record in ctx.registry.pipeline_deletions(pipeline.name):
        if ctx.stopping.is_set():
            raise Stopping
        counts = deletions.carry_out(dest, record, ctx.spool(pipeline.name))
        if record["kind"] == deletions.PROJECT:
            ctx.registry.set_pipeline_status(pipeline.name, ENDED)
        ctx.registry.finish_pipeline_deletion(pipeline.name, str(record["task_id"]))
        log.info(
            "pipeline %s: %s %s carried to %s: %s",
            pipeline.name,
            record["kind"],
            record["task_id"],
            pipeline.spec.destination,
            orjson.dumps(counts).decode(),
        )


def record_failure(ctx: PipelineContext, name: str, error: BaseException) -> None:
    """A failed attempt: kept pending (redone with the same names), retried after a backoff."""
    fresh = ctx.registry.pipeline(name)
    if fresh is None:
        return
    state = fresh.state
    now = ctx.clock()
    state.failures += 1
    state.error = f"{type(error).__name__}: {error}"[:2000]
    state.next_attempt_ms = now + int(min(ctx.retry_max_s, 2 ** (state.failures - 1)) * 1000)
    record = None
    if state.pending is not None:
        pending = state.pending
        record = {
            "run": int(pending["run"]),
            "attempt": state.attempt,
            "outcome": "failed",
            "started_ms": int(pending["started_ms"]),
            "finished_ms": now,
            "after": int(pending["after"]),
            "upto": int(pending["upto"]),
            "rows": 0,
            "objects": 0,
            "bytes": 0,
            "error": state.error,
        }
        state.attempt += 1
    ctx.registry.save_pipeline_state(name, state, record)


class PipelineRunner:
    """The thread that runs every pipeline of the registry (one at a time)."""

    def __init__(
        self,
        registry: ProjectRegistry,
        store: EventStore,
        data_dir: Path,
        *,
        observer: PipelineObserver | None = None,
        nice: int = 0,
        poll_s: float = POLL_SECONDS,
        retry_max_s: float = RETRY_MAX_SECONDS,
        object_rows: int = MAX_OBJECT_ROWS,
    ) -> None:
        self.ctx = PipelineContext(
            registry,
            store,
            Path(data_dir) / SPOOL_DIR,
            observer or _Quiet(),
            retry_max_s=retry_max_s,
            object_rows=object_rows,
            pool=compression_pool(nice),
        )
        self._nice = nice
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rawevents-pipelines", daemon=True)

    def start(self) -> PipelineRunner:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self.ctx.stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_SECONDS)
        if self.ctx.pool is not None:
            self.ctx.pool.shutdown(cancel_futures=True)

    def _loop(self) -> None:
        lower_priority(self._nice)
        ctx = self.ctx
        while not ctx.stopping.is_set():
            try:
                self.pass_once()
            except Exception:
                log.exception("pipeline pass failed; retrying at the next poll")
            self._wake.wait(self._poll_s)
            self._wake.clear()
        self._release_all()

    def _release_all(self) -> None:
        """Let another host take this one's pipelines at once rather than when leases expire."""
        try:
            for pipeline in self.ctx.registry.pipelines():
                self.ctx.registry.release_pipeline(pipeline.name)
        except Exception:
            log.exception("could not release the pipelines' leases")

    def pass_once(self) -> None:
        ctx = self.ctx
        position: int | None = None
        for pipeline in ctx.registry.pipelines():
            if ctx.stopping.is_set():
                return
            if pipeline.status == ENDED:
                continue
            if pipeline.state.pending is None and position is None:
                position = ctx.store.ingest_position()
            behind = pipeline.state.pending is not None or (position or 0) > pipeline.state.cursor
            since = pipeline.state.delivered_ms or pipeline.spec.created_at_ms
            ctx.observer.pipeline_lag(
                pipeline.name, max(0.0, (ctx.clock() - since) / 1000) if behind else 0.0
            )
            if ctx.clock() < pipeline.state.next_attempt_ms or not _work_to_do(ctx, pipeline):
                continue
            if not ctx.registry.claim_pipeline(pipeline.name, LEASE_MS):
                continue
            self._step(pipeline)

    def _step(self, pipeline: Pipeline) -> None:
        ctx = self.ctx
        started = time.monotonic()
        try:
            record = step(ctx, pipeline)
        except LeaseLost:
            log.warning("pipeline %s: another host holds it now; this one stops", pipeline.name)
            return
        except Stopping:
            log.info("pipeline %s: stopping; its run is redone after the restart", pipeline.name)
            return
        except Exception as exc:
            log.warning(
                "pipeline %s: run failed (%s: %s); retrying with backoff",
                pipeline.name,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            record_failure(ctx, pipeline.name, exc)
            ctx.observer.pipeline_run(pipeline.name, "failed", 0, 0, 0)
            return
        if record is None:
            return
        ctx.observer.pipeline_run(
            pipeline.name, "committed", record["rows"], record["objects"], record["bytes"]
        )
        ctx.observer.pipeline_lag(pipeline.name, 0.0)
        log.info(
            "pipeline %s: run %d committed: %d rows in %d objects, %d bytes, positions (%d, %d], %d days,"
            " %.2f s",
            pipeline.name,
            record["run"],
            record["rows"],
            record["objects"],
            record["bytes"],
            record["after"],
            record["upto"],
            len(record["days"]),
            time.monotonic() - started,
        )
