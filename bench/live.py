"""Measurements through the real HTTP server (a subprocess), with real clients in other processes.

- Export: `curl` (a separate process, no decompression) reads the gzip stream to /dev/null and
  reports bytes, time to first byte and total time; one extra untimed run per scenario is read
  with httpx and decompressed to check the JSONL byte and row counts.
- Server memory: psutil samples the server's RSS every 5 ms during the export; the peak is kept.
- Ingest: N `bench.ingest_client` processes post pre-gzipped /import batches concurrently;
  psutil reads the CPU the server and its ingest workers spent meanwhile.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psutil
from isal import isal_zlib

from bench.baselines import Filter

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`rawevents serve` on a free port; stderr goes to a log file (a pipe nobody reads can fill)."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rawevents.cli",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
            ],
            env={**os.environ, **(env or {})},
            stdout=self.log,
            stderr=self.log,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 180  # a busy shared machine starts the workers slowly
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited, see {log_path}")
            try:
                httpx.get(self.base_url + "/", timeout=0.5)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server did not start in 180 s")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its ingest worker processes so far."""
        server = psutil.Process(self.process.pid)
        total = 0.0
        for process in [server, *server.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.Error:  # a worker that ended meanwhile
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class PeakRss:
    """Samples a process's RSS in a thread; `peak` is the largest value seen."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.interval)

    def mib(self) -> float:
        return round(self.peak / 2**20, 1)


@dataclass(frozen=True)
class ExportRun:
    status: int
    seconds: float
    first_byte: float
    out_bytes: int


def export_query(flt: Filter, from_date: str, to_date: str) -> str:
    params = {"from_date": from_date, "to_date": to_date}
    if flt.where is not None:
        params["where"] = flt.where
    if flt.events is not None:
        params["event"] = json.dumps(list(flt.events))
    return "/api/2.0/export?" + urlencode(params)


def curl_export(server: Server, secret: str, path: str) -> ExportRun:
    result = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-u",
            f"{secret}:",
            "-H",
            "Accept-Encoding: gzip",
            "-w",
            "%{http_code} %{size_download} %{time_starttransfer} %{time_total}",
            server.base_url + path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    code, size, first, total = result.stdout.split()
    return ExportRun(int(code), float(total), float(first), int(size))


def check_export(server: Server, secret: str, path: str) -> tuple[int, int, int]:
    """(status, rows, JSONL bytes) of one export read with httpx and decompressed (untimed)."""
    decompressor = isal_zlib.decompressobj(31)
    size = rows = 0
    with httpx.stream(
        "GET",
        server.base_url + path,
        auth=(secret, ""),
        headers={"Accept-Encoding": "gzip"},
        timeout=600,
    ) as response:
        if response.status_code != 200:
            return response.status_code, 0, 0
        for raw in response.iter_raw():
            data = decompressor.decompress(raw)
            size += len(data)
            rows += data.count(b"\n")
    return 200, rows, size


@dataclass(frozen=True)
class IngestRun:
    events: int
    seconds: float
    failures: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float  # the server's and its workers' CPU while the clients ran


def http_ingest(
    server: Server, secret: str, jsonl: Path, *, clients: int, batch: int, limit: int
) -> IngestRun:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ingest_client",
                server.base_url,
                secret,
                str(jsonl),
                str(i),
                str(clients),
                str(batch),
                str(limit),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(clients)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("ingest client failed to start")
    cpu_before = server.cpu_seconds()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    summaries = []
    for proc in procs:
        out, _ = proc.communicate()
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    server_cpu_s = server.cpu_seconds() - cpu_before
    started = min(s["started"] for s in summaries)
    finished = max(s["finished"] for s in summaries)
    return IngestRun(
        events=sum(s["events"] for s in summaries),
        seconds=finished - started,
        failures=sum(s["failures"] for s in summaries),
        p50_ms=max(s["p50_ms"] for s in summaries),
        p99_ms=max(s["p99_ms"] for s in summaries),
        server_cpu_s=server_cpu_s,
    )
