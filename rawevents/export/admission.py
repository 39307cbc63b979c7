"""Export admission control: how many exports stream at once, and how much each may hold.

Without it every export request starts a scan at once: 40 concurrent exports took the server to
1-2 GB, ran the engine out of its memory limit mid-stream (a 200 cut off after its first bytes)
and starved ingestion. Here an export is admitted before the first byte or answered with an error
a client can act on:

- server-wide, at most `export_max_running` exports stream at once; a request over that waits up
  to `export_queue_seconds` for a slot (a short burst queues instead of failing), then gets a 503
  with Retry-After; at most `QUEUE_FACTOR` x that many wait, later ones get the 503 at once;
- per project, the rate limits of ExportRateLimiter (429 with Retry-After, Mixpanel's limits);
- the query endpoints (rawevents.http.query_routes) take the same slots and wait (admit_query),
  so a heavy query and an export are counted alike against the one memory budget;
- `export_memory_budget_mb` is shared by the running exports: each gets an equal share for its
  engine windows and its buffered output (rawevents.budget.ExportBudget), so the total is bounded whatever the
  number of requests or the speed of their readers.

What the admitted exports may take from ingestion is bounded by CPU priority instead: their
reader and compression threads run `export_nice` below the event loop (rawevents.export.stream).

The event loop is single-threaded: the counters need no lock; a freed slot is handed to the oldest
waiter directly, so a newcomer cannot overtake the queue.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

from rawevents import malloc
from rawevents.errors import ServerBusy
from rawevents.export.ratelimit import ExportLease, ExportRateLimiter
from rawevents.settings import Config

QUEUE_FACTOR = 4  # waiting requests allowed per running slot


class ExportAdmission:
    """Admits exports: a server-wide running cap with a bounded FIFO wait, then per-project limits."""

    def __init__(self, max_running: int, queue_seconds: float, limiter: ExportRateLimiter) -> None:
        self.max_running = max_running
        self.queue_seconds = queue_seconds
        self.limiter = limiter
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def from_config(cls, config: Config) -> ExportAdmission:
        limiter = ExportRateLimiter(
            config.export_rate_per_hour, config.export_rate_per_second, config.export_max_concurrent
        )
        return cls(config.export_max_running, config.export_queue_seconds, limiter)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def admit(self, project_id: int) -> ExportLease:
        """A lease for one export of `project_id`, or ServerBusy (503) / RateLimited (429)."""
        await self._take_slot()
        try:
            project_lease = self.limiter.acquire(project_id)
        except BaseException:
            self._free_slot()
            raise

        def release() -> None:
            project_lease.release()
            self._free_slot()

        return ExportLease(release)

    async def admit_query(self) -> ExportLease:
        """A slot for one query-endpoint answer (segmentation, property values, event pages,
        profiles): the exports' slots and wait, without the per-project export rate limits
        (Mixpanel counts the Query API apart from the export)."""
        await self._take_slot()
        return ExportLease(self._free_slot)

    async def _take_slot(self) -> None:
        if not self.max_running or (self.running < self.max_running and not self.waiting):
            self.running += 1
            return
        if self.waiting >= self.max_running * QUEUE_FACTOR or self.queue_seconds <= 0:
            raise self._busy()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.queue_seconds)
        except TimeoutError:
            if waiter.done():
                return  # a slot arrived just as the wait ended
            self._withdraw(waiter)
            raise self._busy() from None
        except BaseException:  # the request was cancelled (client gone, shutdown)
            if waiter.done():
                self._free_slot()
            else:
                self._withdraw(waiter)
            raise

    def _withdraw(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        self._waiters.remove(waiter)

    def _free_slot(self) -> None:
        """Hand the slot to the oldest waiter, or give it back."""
        if self._waiters:
            self._waiters.popleft().set_result(None)  # the slot changes hands: `running` stays
            return
        self.running -= 1
        if self.running == 0:
            asyncio.get_running_loop().run_in_executor(None, malloc.trim)

    def _busy(self) -> ServerBusy:
        return ServerBusy(
            f"Server is busy: {self.running}/{self.max_running} exports running, {self.waiting} waiting;"
            " retry later",
            max(1, math.ceil(self.queue_seconds / QUEUE_FACTOR)),
        )
