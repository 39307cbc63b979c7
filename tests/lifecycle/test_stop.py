"""Stopping the server: SIGTERM and SIGINT stop it gracefully (in-flight requests answered and
committed, exit 0, no child process left); kill -9 leaves no child process either."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.import_load import GZIP_JSON, ImportLoad, import_body
from tests.lifecycle.helpers import DAY, exported_ids, server_children, survivors, worker_processes
from tests.live_server import LiveServer

SHUTDOWN_TIMEOUT_S = 10

pytestmark = pytest.mark.server  # every test here starts a server process


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
    load = ImportLoad(server, project, clients=6, batch=1000).start()
    time.sleep(2.0)
    assert server.process is not None
    server.process.send_signal(sig)
    code = _wait_exit(server, SHUTDOWN_TIMEOUT_S + 10)  # bounded: more is a hang
    load.stop()
    assert code == 0
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


def test_a_stalled_export_does_not_hold_the_stop(tmp_path: Path) -> None:
    """An export whose reader stopped reading is cut after shutdown_timeout_s: the server still
    exits 0 in bounded time, and the client sees a truncated body, not a complete-looking one."""
    env = {"RAWEVENTS_INGEST_PROCESSES": "0", "RAWEVENTS_SHUTDOWN_TIMEOUT_S": "2"}
    server = LiveServer(tmp_path / "data", env=env, log=tmp_path / "log").start()
    project = server.create_project()
    with requests.Session() as session:
        for n in range(20):  # 40k events, ~10 MB of export: more than the socket buffers hold
            body, _ = import_body(f"x{n}", 2000)
            response = session.post(
                server.base_url + "/import?strict=1",
                data=body,
                headers=GZIP_JSON,
                auth=(project.api_secret, ""),
                timeout=60,
            )
            assert response.status_code == 200
    export = requests.get(
        server.base_url + "/api/2.0/export",
        params={"from_date": DAY, "to_date": DAY},
        auth=(project.api_secret, ""),
        stream=True,
        timeout=30,
    )
    assert export.status_code == 200
    export.raw.read(65536)  # then the reader stalls
    time.sleep(1.0)
    assert server.process is not None
    children = server_children(server)
    server.process.send_signal(signal.SIGTERM)
    assert _wait_exit(server, 2 + 10) == 0  # bounded: more is a hang
    assert survivors(children, timeout=5) == []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for _ in export.iter_content(1 << 20):
            pass
    export.close()
