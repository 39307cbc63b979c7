"""Gunzip, parse and normalise large gzip JSON `/import` bodies in a worker process.

Parsing JSON and normalising events is Python work under the GIL: in the server process it caps
ingest at one core, while the writer thread and DuckDB wait for it. A worker process does that
work on the other core and hands back finished rows; the server process keeps only HTTP, the
commit and the reply, and sends the worker the compressed body (a sixth of the decoded size).
Bodies under `MIN_GZIP_BYTES` stay in process (a round trip costs more).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

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
from rawevents.storage.base import events_table

log = logging.getLogger(__name__)

MIN_GZIP_BYTES = 16 * 1024
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
    return TableBatch(events_table(batch.rows), batch.failed, batch.dropped)


def _ready() -> bool:
    return True


class IngestWorkers:
    """A small process pool (spawned, so no DuckDB state is forked) that restarts when broken."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._lock = threading.Lock()
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("spawn"))

    def warm(self) -> None:
        """Start the processes now rather than on the first large request."""
        for future in [self._executor.submit(_ready) for _ in range(self._processes)]:
            future.result()

    async def import_batch(self, job: ImportJob) -> TableBatch:
        executor = self._executor
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, import_batch, job)
        except BrokenProcessPool as exc:
            log.error("ingest worker process died; starting a new one")
            with self._lock:
                if self._executor is executor:
                    self._executor = self._new_executor()
            raise StorageError("the ingest worker failed while reading this batch; retry") from exc

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
