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

from rawevents.projects import Project, Registry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None  # where the server's stderr goes (default: a pipe, read if it dies)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def registry(self) -> Registry:
        return Registry(self.data_dir)

    def create_project(self, name: str = "test", timezone: str = "UTC") -> Project:
        return self.registry.create_project(name, timezone)

    def start(self) -> LiveServer:
        self.port = self.port or free_port()
        env = {**os.environ, **self.env}
        stderr: Any = subprocess.PIPE if self.log is None else self.log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rawevents.cli",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        if self.log is not None:
            stderr.close()  # the child has its own copy
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stderr.read() if self.process.stderr else self.log_text().encode()
                raise RuntimeError(f"server exited: {output.decode(errors='replace')}")
            try:
                requests.get(self.base_url + "/", timeout=0.5)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("server did not start in 30 s")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None and self.log.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._forget()

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._forget()

    def _forget(self) -> None:
        """Drop the exited process, closing its stderr pipe (left open, it is a ResourceWarning)."""
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> LiveServer:
        self.stop()
        return self.start()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.base_url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.base_url + path, timeout=30, **kwargs)
