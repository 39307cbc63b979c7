"""Per-project export limits: queries per rolling hour, per second, and concurrent exports.

Mixpanel's limits are 60/hour, 3/second and 100 concurrent; here each is a setting and 0 turns it
off. A refused request is not counted, so a client that waits `Retry-After` seconds gets through.
The 429 message states every counter, as Mixpanel's does ("1/5 running … 401/400 in the last
hour"), so a client can see which limit it hit and pace itself.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rawevents.errors import RateLimited

_HOUR = 3600.0
_SECOND = 1.0


@dataclass
class _ProjectState:
    starts: deque[float] = field(default_factory=deque)  # start times within the last hour
    running: int = 0


class ExportLease:
    """One admitted export; `release()` (idempotent) ends it for the concurrency count."""

    def __init__(self, release: Callable[[], None] | None) -> None:
        self._release = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class ExportRateLimiter:
    def __init__(
        self,
        per_hour: int = 0,
        per_second: int = 0,
        max_concurrent: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_hour = per_hour
        self.per_second = per_second
        self.max_concurrent = max_concurrent
        self._clock = clock
        self._lock = threading.Lock()
        self._projects: dict[int, _ProjectState] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.per_hour or self.per_second or self.max_concurrent)

    def acquire(self, project_id: int) -> ExportLease:
        """Admit one export of `project_id` or raise RateLimited (429 with Retry-After)."""
        if not self.enabled:
            return ExportLease(None)
        with self._lock:
            now = self._clock()
            state = self._projects.setdefault(project_id, _ProjectState())
            while state.starts and state.starts[0] <= now - _HOUR:
                state.starts.popleft()
            last_second = [t for t in state.starts if t > now - _SECOND]
            retry_after = 0.0
            if self.per_hour and len(state.starts) >= self.per_hour:
                retry_after = max(retry_after, state.starts[-self.per_hour] + _HOUR - now)
            if self.per_second and len(last_second) >= self.per_second:
                retry_after = max(retry_after, last_second[-self.per_second] + _SECOND - now)
            if self.max_concurrent and state.running >= self.max_concurrent:
                retry_after = max(retry_after, 1.0)
            if retry_after > 0:
                raise RateLimited(
                    self._message(len(state.starts), len(last_second), state.running),
                    max(1, math.ceil(retry_after)),
                )
            state.starts.append(now)
            state.running += 1
        return ExportLease(lambda: self._release(project_id))

    def _release(self, project_id: int) -> None:
        with self._lock:
            self._projects[project_id].running -= 1

    def _message(self, last_hour: int, last_second: int, running: int) -> str:
        counts = []
        if self.max_concurrent:
            counts.append(f"{running}/{self.max_concurrent} running")
        if self.per_second:
            counts.append(f"{last_second}/{self.per_second} in the last second")
        if self.per_hour:
            counts.append(f"{last_hour}/{self.per_hour} in the last hour")
        return "Export rate limit exceeded for this project: " + ", ".join(counts)
