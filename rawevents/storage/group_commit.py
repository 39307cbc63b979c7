"""The group commit both stores' writer threads run: gather what concurrent requests queued into
one durable commit, and keep one bad job from failing its neighbours."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from rawevents.errors import StorageError

log = logging.getLogger(__name__)

# A queued write: the job (rows, an Arrow table, or a callable run in the transaction) and the
# future that resolves once it is durable. None in the queue stops the writer.
Pending = tuple[Any, Future[None]]
JobQueue = queue.SimpleQueue[Pending | None]


def commit_groups(jobs: JobQueue, interval_s: float) -> Iterator[list[Pending]]:
    """Each group of jobs for one commit: the first one waiting, then whatever else arrives
    within `interval_s`. Ends at the stop marker, after yielding what was queued before it."""
    while True:
        first = jobs.get()
        if first is None:
            return
        pending = [first]
        if interval_s > 0:
            time.sleep(interval_s)
        while True:
            try:
                item = jobs.get_nowait()
            except queue.Empty:
                break
            if item is None:
                yield pending
                return
            pending.append(item)
        yield pending


def commit_isolated(
    pending: list[Pending], run: Callable[[list[Any]], None], failed: Callable[[], None]
) -> None:
    """`run` the group's jobs in one transaction and resolve their futures. When it fails, each
    job is retried in its own transaction, so only the bad one fails (`failed` is told)."""
    try:
        run([job for job, _ in pending])
    except Exception:
        if len(pending) > 1:
            for item in pending:
                commit_isolated([item], run, failed)
            return
        log.exception("storage write failed")
        failed()
        pending[0][1].set_exception(StorageError("the event store could not write this batch; retry"))
        return
    for _, future in pending:
        future.set_result(None)
