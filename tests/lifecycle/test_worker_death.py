"""A killed ingest worker under gzip /import load: the request it held gets 503 + Retry-After in
Mixpanel's shape, the worker is reaped and replaced, nothing hangs, nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.import_load import ImportLoad
from tests.lifecycle.helpers import exported_ids, worker_processes, zombies
from tests.live_server import LiveServer

KILLS = 3


@pytest.fixture
def live(tmp_path: Path) -> LiveServer:
    server = LiveServer(tmp_path / "data", env={"RAWEVENTS_INGEST_PROCESSES": "2"}, log=tmp_path / "log")
    return server.start()


def _wait_for_workers(server: LiveServer, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p.pid for p in worker_processes(server)]
        if len(pids) == count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"expected {count} workers, have {worker_processes(server)}")


def test_killed_workers_give_503_then_a_rebuilt_pool(live: LiveServer) -> None:
    project = live.create_project()
    try:
        load = ImportLoad(live, project, clients=4).start()
        killed = []
        for _ in range(KILLS):
            time.sleep(1.0)
            victim = _wait_for_workers(live, 2)[0]
            # Stopped first, so the lane surely holds a job when it dies: that job must be a 503.
            os.kill(victim, signal.SIGSTOP)
            time.sleep(0.5)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        time.sleep(1.0)
        load.stop()

        assert load.errors == []  # no request timed out
        assert set(load.statuses) <= {200, 503}, load.statuses
        assert load.statuses[503] >= 1
        for response in load.unavailable:
            assert response.headers["Retry-After"] == "1"
            assert response.json() == {
                "code": 503,
                "error": "the ingest worker failed while reading this batch; retry",
                "status": "Service Unavailable",
            }
        workers_now = _wait_for_workers(live, 2)
        assert not set(workers_now) & set(killed)
        time.sleep(1.5)  # a lane checks its worker every second while idle
        assert zombies(live) == []

        after = ImportLoad(live, project, clients=2)
        after.start()
        time.sleep(1.0)
        after.stop()
        assert after.errors == [] and set(after.statuses) == {200}, after.statuses

        exported = exported_ids(live, project)
        acknowledged = load.acknowledged | after.acknowledged
        assert not acknowledged - set(exported)
        assert max(exported.values()) == 1
    finally:
        live.stop()
    assert "Traceback" not in live.log_text()


def test_a_worker_that_dies_while_idle_is_replaced(live: LiveServer) -> None:
    try:
        before = _wait_for_workers(live, 2)
        os.kill(before[0], signal.SIGKILL)
        time.sleep(2.5)
        after = _wait_for_workers(live, 2)
        assert before[0] not in after and before[1] in after
        assert zombies(live) == []
    finally:
        live.stop()
