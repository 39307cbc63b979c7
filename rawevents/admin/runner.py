"""The server's task runner: one thread, started and stopped by the app's lifespan.

It claims due tasks from the registry (created by GDPR requests or handed over by the CLI),
applies retention every `retention_interval_seconds`, deletes GDPR retrieval zips older than
`gdpr_retrieval_expiry_seconds`, and beats a heartbeat into the registry so
the CLI knows a server will run what it hands over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rawevents.admin import tasks
from rawevents.projects import ProjectRegistry

if TYPE_CHECKING:  # the engine (pyarrow, duckdb) loads only when a store is opened
    from rawevents.storage.base import EventStore

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
HEARTBEAT_FRESH_MS = 5000  # the CLI trusts a heartbeat this recent
STOP_WAIT_SECONDS = 30.0
EXPIRY_SWEEP_SECONDS = 60.0  # how often expired GDPR retrieval zips are looked for


class TaskRunner:
    def __init__(
        self,
        registry: ProjectRegistry,
        store: EventStore,
        data_dir: Path,
        *,
        retention_interval_s: float,
        retrieval_expiry_s: float = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ctx = tasks.TaskContext(registry, store, data_dir)
        self._retention_interval = retention_interval_s
        self._retrieval_expiry = retrieval_expiry_s
        self._clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rawevents-tasks", daemon=True)
        # Its own thread, so the heartbeat stays fresh while a long task (a backup) runs.
        self._heart = threading.Thread(target=self._beat, name="rawevents-heartbeat", daemon=True)

    def start(self) -> TaskRunner:
        requeued = self._ctx.registry.requeue_started_tasks()
        if requeued:
            log.info("re-running %d task(s) interrupted by the last stop", requeued)
        self._ctx.registry.beat()
        self._heart.start()
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look for due tasks now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_SECONDS)
        if self._heart.is_alive():
            self._heart.join(STOP_WAIT_SECONDS)
        self._ctx.registry.stop_beating()

    def _beat(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            try:
                self._ctx.registry.beat()
            except Exception:
                log.exception("task runner heartbeat failed")

    def _loop(self) -> None:
        next_retention = next_expiry = self._clock()
        while not self._stopping.is_set():
            try:
                if self._retention_interval > 0 and self._clock() >= next_retention:
                    tasks.apply_retention(self._ctx, int(self._clock() * 1000))
                    next_retention = self._clock() + self._retention_interval
                if self._retrieval_expiry > 0 and self._clock() >= next_expiry:
                    tasks.expire_retrievals(self._ctx.data_dir, self._retrieval_expiry, self._clock())
                    next_expiry = self._clock() + min(EXPIRY_SWEEP_SECONDS, self._retrieval_expiry)
                while not self._stopping.is_set() and (task := self._ctx.registry.claim_task()):
                    tasks.execute(self._ctx, task)
            except Exception:
                log.exception("task runner pass failed; retrying at the next poll")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
