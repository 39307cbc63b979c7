"""Stopping the server: SIGTERM and SIGINT stop it gracefully (in-flight requests answered and
committed, exit 0, no child process left); kill -9 leaves no child process either."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.lifecycle.helpers import (
    ImportLoad,
    exported_ids,
    server_children,
    survivors,
    worker_processes,
)
from tests.live_server import LiveServer

SHUTDOWN_TIMEOUT_S = 10


def _server(tmp_path: Path) -> LiveServer:
    env = {"RAWEVENTS_INGEST_PROCESSES": "2", "RAWEVENTS_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S)}
    return LiveServer(tmp_path / "data", env=env, log=tmp_path / "log").start()


def _wait_exit(server: LiveServer, timeout: float) -> int:
    assert server.process is not None
    try:
        return server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise AssertionError(f"the server did not exit within {timeout} s") from None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_no_child_process_survives_the_server(tmp_path: Path, sig: signal.Signals) -> None:
    server = _server(tmp_path)
    children = server_children(server)
    assert len(worker_processes(server)) == 2
    assert server.process is not None
    server.process.send_signal(sig)
    code = _wait_exit(server, SHUTDOWN_TIMEOUT_S + 10)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    assert survivors(children, timeout=5) == []
    if sig != signal.SIGKILL:
        log = server.log_text()
        assert "Traceback" not in log and "KeyboardInterrupt" not in log, log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_stop_under_load_loses_nothing_acknowledged(tmp_path: Path, sig: signal.Signals) -> None:
    server = _server(tmp_path)
    project = server.create_project()
    children = server_children(server)
    load = ImportLoad(server, project, clients=6, events_per_body=1000).start()
    time.sleep(2.0)
    assert server.process is not None
    server.process.send_signal(sig)
    started = time.monotonic()
    code = _wait_exit(server, SHUTDOWN_TIMEOUT_S + 10)
    stopped_in = time.monotonic() - started
    load.stop()
    assert code == 0
    assert stopped_in < SHUTDOWN_TIMEOUT_S + 5
    assert survivors(children, timeout=5) == []
    assert load.errors == []
    assert set(load.statuses) <= {200, 503}, load.statuses
    assert load.acknowledged

    server.process = None
    server.start()
    try:
        exported = exported_ids(server, project)
    finally:
        server.stop()
    assert not load.acknowledged - set(exported)
    assert max(exported.values()) == 1
