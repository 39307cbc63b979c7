"""Prometheus metrics of one running server, on a CollectorRegistry that server owns.

Each `Services` builds its own `Metrics` (never prometheus_client's global registry), so two apps
in one process (tests) never share counters and nothing lives at module level. `Metrics` is also
the store's `StoreObserver`: any engine reports its commits, queue and scans the same way.
Every series with a fixed label set is created up front, so dashboards see 0 rather than nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

T = TypeVar("T")

INGEST_ENDPOINTS = ("track", "import", "engage", "groups")
# Why events of an answered request were not stored: failed validation, or valid but discarded.
REJECT_REASONS = ("invalid", "too_old")
DROP_REASONS = ("unknown_token", "ignored")
EXPORT_OUTCOMES = ("finished", "failed", "aborted")
RATE_LIMITED_APIS = ("ingest", "export")
CONTENT_TYPE = CONTENT_TYPE_LATEST

_KIB = 1024
_BYTE_BUCKETS = tuple(float(_KIB * 4**i) for i in range(8))  # 1 KiB … 16 MiB
_SECOND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_EVENT_BUCKETS = (1.0, 10.0, 100.0, 500.0, 2000.0, 5000.0, 10000.0, 25000.0, 50000.0, 100000.0)
_JOB_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


def directory_bytes(path: str | Path) -> int:
    """Total size of the files under `path` (files vanishing meanwhile are skipped)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                continue
    return total


class Metrics:
    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        # -- ingestion
        self.events_accepted = Counter(
            "rawevents_ingest_events_accepted",
            "Events and profile updates stored, by endpoint.",
            ["endpoint"],
            registry=registry,
        )
        self.events_rejected = Counter(
            "rawevents_ingest_events_rejected",
            "Events and profile updates that failed validation (invalid, too_old), by endpoint.",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.events_dropped = Counter(
            "rawevents_ingest_events_dropped",
            "Valid events answered as received but not stored (unknown_token, ignored: $ignore).",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.requests_refused = Counter(
            "rawevents_ingest_requests_refused",
            "Whole ingestion requests refused, by endpoint and error code.",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.request_bytes = Histogram(
            "rawevents_ingest_request_bytes",
            "Ingestion request bodies as received (before gunzip), in bytes.",
            ["endpoint"],
            buckets=_BYTE_BUCKETS,
            registry=registry,
        )
        # -- the store
        self.commit_seconds = Histogram(
            "rawevents_store_commit_seconds",
            "Duration of one durable group commit.",
            buckets=_SECOND_BUCKETS,
            registry=registry,
        )
        self.commit_events = Histogram(
            "rawevents_store_commit_events",
            "Event rows written by one group commit.",
            buckets=_EVENT_BUCKETS,
            registry=registry,
        )
        self.commit_jobs = Histogram(
            "rawevents_store_commit_jobs",
            "Write jobs (requests' batches, probes) gathered into one group commit.",
            buckets=_JOB_BUCKETS,
            registry=registry,
        )
        self.commit_failures = Counter(
            "rawevents_store_commit_failures", "Write transactions that failed.", registry=registry
        )
        self.write_queue = Gauge(
            "rawevents_store_write_queue_depth", "Write jobs waiting for the writer.", registry=registry
        )
        self.store_bytes = Gauge(
            "rawevents_store_bytes", "Bytes of the files in the data directory.", registry=registry
        )
        if data_dir is not None:
            self.store_bytes.set_function(lambda: float(directory_bytes(data_dir)))
        self.compactions = Counter(
            "rawevents_store_compactions",
            "Background compaction steps finished (the DuckDB store's flushes and merges of sorted runs).",
            registry=registry,
        )
        self.compaction_seconds = Counter(
            "rawevents_store_compaction_seconds",
            "Time spent in background compactions.",
            registry=registry,
        )
        # -- exports
        self.export_scans = Gauge(
            "rawevents_export_scans_running",
            "Export scans open in the store (a closed or finished export's scan ends at its next step).",
            registry=registry,
        )
        self.exports_started = Counter(
            "rawevents_exports_started", "Exports admitted and started.", registry=registry
        )
        self.exports_ended = Counter(
            "rawevents_exports_ended",
            "Exports ended: finished, failed (error before or during the body), aborted (client left).",
            ["outcome"],
            registry=registry,
        )
        self.export_rows = Counter("rawevents_export_rows", "Rows read by export scans.", registry=registry)
        self.export_bytes = Counter(
            "rawevents_export_bytes", "Export body bytes sent (compressed when gzip).", registry=registry
        )
        self.export_first_byte = Histogram(
            "rawevents_export_first_byte_seconds",
            "From an export request's arrival to its first body bytes.",
            buckets=_SECOND_BUCKETS,
            registry=registry,
        )
        # -- HTTP
        self.rate_limited = Counter(
            "rawevents_rate_limited_requests",
            "Requests answered 429 (ingest: backpressure; export: per-project limits).",
            ["api"],
            registry=registry,
        )
        self.http_responses = Counter(
            "rawevents_http_responses",
            "HTTP responses by handler and status code.",
            ["handler", "code"],
            registry=registry,
        )
        # -- data pipelines (rawevents.pipelines), labelled by pipeline name
        self.pipeline_runs = Counter(
            "rawevents_pipeline_runs",
            "Pipeline run attempts ended, by pipeline and outcome (committed, failed).",
            ["pipeline", "outcome"],
            registry=registry,
        )
        self.pipeline_rows = Counter(
            "rawevents_pipeline_rows",
            "Events written by committed pipeline runs.",
            ["pipeline"],
            registry=registry,
        )
        self.pipeline_objects = Counter(
            "rawevents_pipeline_objects",
            "Objects written by committed pipeline runs.",
            ["pipeline"],
            registry=registry,
        )
        self.pipeline_bytes = Counter(
            "rawevents_pipeline_bytes",
            "Bytes of the objects written by committed pipeline runs.",
            ["pipeline"],
            registry=registry,
        )
        self.pipeline_lag_seconds = Gauge(
            "rawevents_pipeline_lag_seconds",
            "Seconds since the slice a pipeline last delivered was pinned, while newer events wait"
            " (0 when it is up to date).",
            ["pipeline"],
            registry=registry,
        )
        self._zero_series()

    # -- data pipelines (rawevents.pipelines.runner.PipelineObserver) ---------------------------

    def pipeline_run(self, name: str, outcome: str, rows: int, objects: int, size: int) -> None:
        self.pipeline_runs.labels(name, outcome).inc()
        if outcome == "committed":
            self.pipeline_rows.labels(name).inc(rows)
            self.pipeline_objects.labels(name).inc(objects)
            self.pipeline_bytes.labels(name).inc(size)

    def pipeline_lag(self, name: str, seconds: float) -> None:
        self.pipeline_lag_seconds.labels(name).set(seconds)

    def _zero_series(self) -> None:
        for endpoint in INGEST_ENDPOINTS:
            self.events_accepted.labels(endpoint)
            self.request_bytes.labels(endpoint)
            for reason in REJECT_REASONS:
                self.events_rejected.labels(endpoint, reason)
            for reason in DROP_REASONS:
                self.events_dropped.labels(endpoint, reason)
        for outcome in EXPORT_OUTCOMES:
            self.exports_ended.labels(outcome)
        for api in RATE_LIMITED_APIS:
            self.rate_limited.labels(api)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    # -- ingestion -----------------------------------------------------------------------------

    def ingest_request(self, endpoint: str, body_bytes: int) -> None:
        self.request_bytes.labels(endpoint).observe(body_bytes)

    def ingest_refused(self, endpoint: str, reason: str) -> None:
        self.requests_refused.labels(endpoint, reason).inc()

    def ingest_batch(
        self, endpoint: str, stored: int, rejected: Mapping[str, int], dropped: Mapping[str, int]
    ) -> None:
        if stored:
            self.events_accepted.labels(endpoint).inc(stored)
        for reason, count in rejected.items():
            self.events_rejected.labels(endpoint, reason).inc(count)
        for reason, count in dropped.items():
            self.events_dropped.labels(endpoint, reason).inc(count)

    # -- StoreObserver -------------------------------------------------------------------------

    def queue_depth(self, jobs: int) -> None:
        self.write_queue.set(jobs)

    def committed(self, jobs: int, events: int, seconds: float) -> None:
        self.commit_seconds.observe(seconds)
        self.commit_jobs.observe(jobs)
        self.commit_events.observe(events)

    def commit_failed(self) -> None:
        self.commit_failures.inc()

    def rows_exported(self, rows: int) -> None:
        self.export_rows.inc(rows)

    def compacted(self, seconds: float) -> None:
        self.compactions.inc()
        self.compaction_seconds.inc(seconds)

    # -- exports and HTTP ----------------------------------------------------------------------

    def export_started(self, arrived: float) -> ExportTracker:
        """`arrived`: the request's `time.monotonic()` on arrival (time to first byte starts there)."""
        self.exports_started.inc()
        return ExportTracker(self, arrived)

    def scanning(self, chunks: Iterator[T]) -> Iterator[T]:
        """`chunks`, counted in the running-scans gauge from its first step until it is exhausted
        or closed."""
        self.export_scans.inc()
        try:
            yield from chunks
        finally:
            self.export_scans.dec()

    def response(self, handler: str, api: str | None, status: int) -> None:
        self.http_responses.labels(handler, str(status)).inc()
        if status == 429 and api is not None:
            self.rate_limited.labels(api).inc()


class ExportTracker:
    """One started export: its first byte, bytes sent and how it ended (recorded once)."""

    def __init__(self, metrics: Metrics, arrived: float) -> None:
        self._metrics = metrics
        self._arrived = arrived
        self._first = True
        self._ended = False

    def sent(self, size: int) -> None:
        if self._first:
            self._first = False
            self._metrics.export_first_byte.observe(time.monotonic() - self._arrived)
        self._metrics.export_bytes.inc(size)

    def end(self, outcome: str) -> None:
        if not self._ended:
            self._ended = True
            self._metrics.exports_ended.labels(outcome).inc()
