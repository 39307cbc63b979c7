"""Gunzip, parse and normalise large gzip JSON `/import` bodies in a worker process.

Parsing JSON and normalising events is Python work under the GIL: in the server process it caps
ingest at one core, while the writer thread and DuckDB wait for it. A worker process does that
work on the other core and hands back finished rows; the server process keeps only HTTP, the
commit and the reply, and sends the worker the compressed body (a sixth of the decoded size).
Bodies under `MIN_GZIP_BYTES` stay in process (a round trip costs more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection

import pyarrow as pa

from rawevents.errors import StorageError
from rawevents.ingest.decode import (
    batch_items,
    decode_data_param,
    gunzip_capped,
    looks_like_json,
    parse_form,
    parse_payload,
)
from rawevents.ingest.events import EventContext, normalize_events
from rawevents.ingest.responses import FailedRecord
from rawevents.projects import Project

log = logging.getLogger(__name__)

MIN_GZIP_BYTES = 16 * 1024
WORKER_MODULE = "rawevents.ingest.worker_process"
WORKER_GONE = "the ingest worker failed while reading this batch; retry"
JOB_TIMEOUT_SECONDS = 60.0  # a 10 MB body takes well under a second; past this the worker is stuck
START_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 2.0
IDLE_CHECK_SECONDS = 1.0
JSON_TYPES = frozenset(
    {"application/json", "application/x-ndjson", "application/jsonl", "application/json-seq"}
)


@dataclass(slots=True)
class TableBatch:
    """A normalised batch as one Arrow table: cheap to send between processes, and what the
    writer inserts, so the server process never touches the rows one by one."""

    table: pa.Table
    failed: list[FailedRecord]
    dropped: int

    @property
    def stored(self) -> int:
        return int(self.table.num_rows)

    @property
    def accepted(self) -> int:
        return self.stored + self.dropped


@dataclass(frozen=True, slots=True)
class ImportJob:
    """An authenticated gzip JSON `/import` body and what normalising it needs."""

    body: bytes
    max_bytes: int
    ndjson: bool
    max_events: int
    ctx: EventContext
    project: Project


def import_batch(job: ImportJob) -> TableBatch:
    """The rows of an import job (runs in the worker; raises the same errors as in process)."""
    raw = gunzip_capped(job.body, job.max_bytes)
    ndjson = job.ndjson
    if not looks_like_json(raw):  # a form body despite its JSON content type: its `data` parameter
        raw, ndjson = decode_data_param(parse_form(raw).get("data", "")), False
    payload = parse_payload(raw, ndjson=ndjson)
    items = batch_items(payload, job.max_events)
    batch = normalize_events(items, job.ctx, project=job.project, lenient=payload.lenient)
    return TableBatch(batch.table(), batch.failed, batch.dropped)


class WorkerLost(Exception):
    """The worker process died or ran out of time while holding a job."""


class _Worker:
    """One worker process and the socket to it. Started with subprocess, not multiprocessing: no
    shared queue or lock that a dying worker could leave held (the old pool's manager thread then
    waited forever), and no resource tracker process to outlive the server."""

    def __init__(self, start_timeout: float) -> None:
        ours, theirs = socket.socketpair()
        self.conn = Connection(ours.detach())
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        if not self.conn.poll(start_timeout):
            self.stop()
            raise WorkerLost(f"ingest worker did not start within {start_timeout:g} s")
        try:
            self.conn.recv()  # ("ready", pid)
        except (EOFError, OSError) as exc:
            self.stop()
            raise WorkerLost("ingest worker exited while starting") from exc

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None  # poll() also reaps a dead worker (no zombie)

    def run(self, job: ImportJob, timeout: float) -> TableBatch:
        """The job's result; WorkerLost if the process dies or `timeout` passes (it is then killed:
        the kill also frees a `send` blocked on a stopped worker)."""
        timer = threading.Timer(timeout, self._expire, (timeout,))
        timer.start()
        try:
            self.conn.send(job)
            status, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerLost(f"ingest worker {self.pid} died during a job") from exc
        finally:
            timer.cancel()
        if status == "error":
            raise value
        return value  # type: ignore[no-any-return]

    def _expire(self, timeout: float) -> None:
        log.error("ingest worker %d took more than %g s on one job; killing it", self.pid, timeout)
        self.kill()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Close the socket (an idle worker exits on EOF), then kill if it lingers; always reaps."""
        self.conn.close()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait()


_Item = tuple[ImportJob, "Future[TableBatch]"] | None


class IngestWorkers:
    """Supervised worker processes, one per lane thread.

    A lane thread starts its worker, feeds it one job at a time and replaces it when it dies (a
    job it held fails with a 503 and Retry-After, the client retries) or when it is found dead
    while idle. Each worker is started by the thread that uses it: PR_SET_PDEATHSIG fires when
    the *thread* that forked a process ends, and lanes end only at `close`.
    """

    def __init__(
        self,
        processes: int,
        *,
        job_timeout: float = JOB_TIMEOUT_SECONDS,
        start_timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        self._job_timeout = job_timeout
        self._start_timeout = start_timeout
        self._jobs: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._workers: dict[int, _Worker | None] = {}
        self._started = [threading.Event() for _ in range(processes)]
        self._closing = threading.Event()  # no replacement workers once set
        self._lanes = [
            threading.Thread(target=self._lane, args=(i,), name=f"rawevents-ingest-lane-{i}", daemon=True)
            for i in range(processes)
        ]
        for lane in self._lanes:
            lane.start()

    def warm(self) -> None:
        """Wait until every lane has started its worker (or failed to: it retries on its next job)."""
        for started in self._started:
            started.wait(self._start_timeout * 2)

    def pids(self) -> list[int]:
        """Process ids of the running workers (for supervision and tests)."""
        return [w.pid for w in list(self._workers.values()) if w is not None and w.alive()]

    async def import_batch(self, job: ImportJob) -> TableBatch:
        future: Future[TableBatch] = Future()
        self._jobs.put((job, future))
        return await asyncio.wrap_future(future)

    def close(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop taking jobs, give each lane `grace` seconds to finish its current one (at close
        the server has answered its requests: a job still running belongs to a request that was
        cut off), then kill what is left, so that stopping the server stays bounded."""
        self._closing.set()
        for _ in self._lanes:
            self._jobs.put(None)
        deadline = time.monotonic() + grace
        for lane in self._lanes:
            lane.join(max(0.0, deadline - time.monotonic()))
        for index, lane in enumerate(self._lanes):
            if lane.is_alive():
                worker = self._workers.get(index)
                if worker is not None:
                    worker.kill()  # its job fails at once; the lane then reads its stop marker
                lane.join(grace)
        while True:  # jobs queued after the stop markers never ran: fail them rather than hang
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_exception(StorageError(WORKER_GONE))

    # -- lane threads ---------------------------------------------------------------------------

    def _lane(self, index: int) -> None:
        self._start(index)
        self._started[index].set()
        try:
            while (item := self._next(index)) is not None:
                job, future = item
                if not future.set_running_or_notify_cancel():
                    continue
                worker = self._workers.get(index)
                if worker is None or not worker.alive():
                    if worker is not None:
                        worker.stop(0)
                    worker = self._start(index)
                if worker is None:
                    future.set_exception(StorageError(WORKER_GONE))
                    continue
                try:
                    future.set_result(worker.run(job, self._job_timeout))
                except WorkerLost as exc:
                    worker.stop(0)
                    future.set_exception(StorageError(WORKER_GONE))
                    if not self._closing.is_set():
                        log.error("%s; starting a new one", exc)
                        self._start(index)
                except BaseException as exc:
                    future.set_exception(exc)
        finally:
            current = self._workers.pop(index, None)
            if current is not None:
                current.stop()

    def _next(self, index: int) -> _Item:
        """The next job; while idle, check every second that the worker is alive (reaping and
        replacing one that died between jobs)."""
        while True:
            try:
                return self._jobs.get(timeout=IDLE_CHECK_SECONDS)
            except queue.Empty:
                worker = self._workers.get(index)
                if worker is not None and not worker.alive() and not self._closing.is_set():
                    log.error("ingest worker %d exited while idle; starting a new one", worker.pid)
                    worker.stop(0)
                    self._start(index)

    def _start(self, index: int) -> _Worker | None:
        try:
            worker: _Worker | None = _Worker(self._start_timeout)
        except (WorkerLost, OSError) as exc:
            log.error("could not start an ingest worker: %s", exc)
            worker = None
        self._workers[index] = worker
        return worker
