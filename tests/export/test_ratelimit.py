"""Per-project export limits with a fake clock."""

from __future__ import annotations

import pytest

from rawevents.errors import RateLimited
from rawevents.export.ratelimit import ExportRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_disabled_by_default() -> None:
    limiter = ExportRateLimiter()
    for _ in range(1000):
        limiter.acquire(1)
    assert not limiter.enabled


def test_per_second_limit_and_retry_after() -> None:
    clock = Clock()
    limiter = ExportRateLimiter(per_second=3, clock=clock)
    for _ in range(3):
        limiter.acquire(1).release()
    with pytest.raises(RateLimited) as raised:
        limiter.acquire(1)
    assert raised.value.retry_after == 1
    assert raised.value.message == "Export rate limit exceeded for this project: 3/3 in the last second"
    limiter.acquire(2)  # another project is not affected
    clock.now += 1.0
    limiter.acquire(1)


def test_per_hour_limit_counts_a_rolling_hour() -> None:
    clock = Clock()
    limiter = ExportRateLimiter(per_hour=60, per_second=3, clock=clock)
    for _ in range(60):
        limiter.acquire(7).release()
        clock.now += 10
    # The oldest start was 600 s ago: a slot frees in 3000 s.
    with pytest.raises(RateLimited) as raised:
        limiter.acquire(7)
    assert raised.value.retry_after == 3000
    assert raised.value.message == (
        "Export rate limit exceeded for this project: 0/3 in the last second, 60/60 in the last hour"
    )
    clock.now += 3000
    limiter.acquire(7)


def test_concurrency_limit_released_by_lease() -> None:
    limiter = ExportRateLimiter(max_concurrent=2, clock=Clock())
    first, second = limiter.acquire(1), limiter.acquire(1)
    with pytest.raises(RateLimited) as raised:
        limiter.acquire(1)
    assert raised.value.message == "Export rate limit exceeded for this project: 2/2 running"
    assert raised.value.retry_after == 1
    first.release()
    first.release()  # idempotent
    third = limiter.acquire(1)
    with pytest.raises(RateLimited):
        limiter.acquire(1)
    second.release()
    third.release()
    limiter.acquire(1)


def test_refused_requests_are_not_counted() -> None:
    clock = Clock()
    limiter = ExportRateLimiter(per_second=1, clock=clock)
    limiter.acquire(1)
    for _ in range(5):
        with pytest.raises(RateLimited):
            limiter.acquire(1)
    clock.now += 1
    limiter.acquire(1)
