"""A real rawevents server in a subprocess on a free port, for tests that drive real clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from rawevents.projects import Project, ProjectRegistry
from rawevents.settings import load_config
from rawevents.storage import EventStore, open_registry, open_store

START_TIMEOUT_S = 120

# Whether the running test may start a server process. tests/conftest.py sets it for each test
# from the `server` marker (which the server fixtures add), so a test that starts one without the
# marker fails here rather than slowing down `scripts/check --quick`, which deselects them.
SERVERS_ALLOWED = True


def serve_command(*args: str) -> list[str]:
    """The command line of `rawevents serve ARGS`, for a test marked `server`."""
    if not SERVERS_ALLOWED:
        raise RuntimeError(
            "this test starts a server process: mark it @pytest.mark.server or use a server fixture"
            " (SERVER_FIXTURES in tests/conftest.py), so that `scripts/check --quick` leaves it out"
        )
    return [sys.executable, "-m", "rawevents.cli", "serve", *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    store: str = "duckdb"
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None  # where the server's stderr (its log) goes; default: beside data_dir
    args: list[str] = field(default_factory=list)  # extra `serve` flags

    @property
    def log_path(self) -> Path:
        """A file, never a pipe: a pipe nobody reads fills up and blocks the server once access
        logging writes a line per request."""
        return self.log or self.data_dir.with_name(self.data_dir.name + ".server.log")

    @property
    def pid(self) -> int:
        """The running server's process id."""
        assert self.process is not None, "the server is not running"
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def registry(self) -> ProjectRegistry:
        """The server's registry (in ClickHouse for a `clickhouse://` store); close it after use."""
        return open_registry(load_config({}, data_dir=str(self.data_dir), store=self.store))

    def create_project(self, name: str = "test", timezone: str = "UTC") -> Project:
        registry = self.registry
        try:
            return registry.create_project(name, timezone)
        finally:
            registry.close()

    def export_scans(self) -> int:
        """Export scans open in the server's store: its `rawevents_export_scans_running` gauge."""
        text = requests.get(self.base_url + "/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            if family.name == "rawevents_export_scans_running":
                return int(family.samples[0].value)
        raise AssertionError("the server exposes no rawevents_export_scans_running gauge")

    def open_store(self) -> EventStore:
        """The server's store opened directly (stop the server first: embedded stores are owned
        by one process)."""
        return open_store(load_config({}, data_dir=str(self.data_dir), store=self.store))

    def start(self) -> LiveServer:
        self.port = self.port or free_port()
        env = {**os.environ, **self.env, "RAWEVENTS_STORE": self.store}
        command = serve_command("--data-dir", str(self.data_dir), "--port", str(self.port), *self.args)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        # Generous: a chdb server starts the embedded ClickHouse engine (seconds on a busy machine).
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_text()}")
            try:
                requests.get(self.base_url + "/", timeout=0.5)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start in {START_TIMEOUT_S} s")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def restart(self) -> LiveServer:
        self.stop()
        return self.start()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.base_url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.base_url + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.delete(self.base_url + path, timeout=30, **kwargs)
