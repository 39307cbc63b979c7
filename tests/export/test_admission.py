"""Export admission: the server-wide running cap, its bounded FIFO wait, and per-project limits."""

from __future__ import annotations

import asyncio

import pytest

from rawevents.errors import RateLimited, ServerBusy
from rawevents.export.admission import ExportAdmission
from rawevents.export.ratelimit import ExportRateLimiter


def admission(max_running: int, queue_seconds: float = 0, per_project: int = 0) -> ExportAdmission:
    return ExportAdmission(max_running, queue_seconds, ExportRateLimiter(max_concurrent=per_project))


def test_over_the_cap_without_a_queue_is_a_503_with_retry_after() -> None:
    async def run() -> None:
        gate = admission(2)
        first, _ = await gate.admit(1), await gate.admit(2)
        with pytest.raises(ServerBusy) as raised:
            await gate.admit(3)
        assert raised.value.status == 503
        assert raised.value.retry_after >= 1
        assert raised.value.message == "Server is busy: 2/2 exports running, 0 waiting; retry later"
        first.release()
        first.release()  # idempotent
        await gate.admit(3)
        assert gate.running == 2

    asyncio.run(run())


def test_waiters_get_freed_slots_in_arrival_order() -> None:
    async def run() -> None:
        gate = admission(1, queue_seconds=5)
        lease = await gate.admit(1)
        order: list[int] = []

        async def wait(n: int) -> None:
            (await gate.admit(n)).release()
            order.append(n)

        waiters = [asyncio.create_task(wait(n)) for n in (2, 3, 4)]
        await asyncio.sleep(0.01)
        assert gate.waiting == 3
        lease.release()
        await asyncio.gather(*waiters)
        assert order == [2, 3, 4]
        assert (gate.running, gate.waiting) == (0, 0)

    asyncio.run(run())


def test_a_wait_that_times_out_is_a_503_and_leaves_no_trace() -> None:
    async def run() -> None:
        gate = admission(1, queue_seconds=0.05)
        lease = await gate.admit(1)
        with pytest.raises(ServerBusy):
            await gate.admit(2)
        assert gate.waiting == 0
        lease.release()
        assert gate.running == 0

    asyncio.run(run())


def test_a_cancelled_waiter_does_not_take_a_slot() -> None:
    async def run() -> None:
        gate = admission(1, queue_seconds=5)
        lease = await gate.admit(1)
        waiter = asyncio.create_task(gate.admit(2))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        lease.release()
        assert (gate.running, gate.waiting) == (0, 0)

    asyncio.run(run())


def test_the_queue_is_bounded() -> None:
    async def run() -> None:
        gate = admission(1, queue_seconds=5)
        lease = await gate.admit(1)
        waiters = [asyncio.create_task(gate.admit(n)) for n in range(4)]
        await asyncio.sleep(0.01)
        with pytest.raises(ServerBusy):
            await gate.admit(99)  # 1 running x QUEUE_FACTOR 4 already waiting
        lease.release()
        for waiter in waiters:
            (await waiter).release()

    asyncio.run(run())


def test_per_project_limit_is_a_429_and_frees_the_server_slot() -> None:
    async def run() -> None:
        gate = admission(4, per_project=1)
        await gate.admit(1)
        with pytest.raises(RateLimited) as raised:
            await gate.admit(1)
        assert raised.value.status == 429
        assert gate.running == 1
        await gate.admit(2)  # another project is not affected

    asyncio.run(run())
