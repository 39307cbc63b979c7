"""Shared pieces of the lifecycle tests: gzip /import load from client threads that records what
was acknowledged, the server's worker processes, and the $insert_ids an export returns."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field

import orjson
import psutil
import requests

from rawevents.ingest import workers
from rawevents.projects import Project
from tests.live_server import LiveServer

BASE_TIME = 1_700_000_000  # 2023-11-14
DAY = "2023-11-14"
GZIP_JSON = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
WORKER_MARK = workers.WORKER_MODULE


def import_body(prefix: str, n: int) -> tuple[bytes, list[str]]:
    """A gzip JSON /import body of `n` events (large enough for the worker path) and its ids."""
    ids = [f"{prefix}-{i:05d}" for i in range(n)]
    events = [
        {
            "event": f"e{i % 7}",
            "properties": {
                "time": BASE_TIME + i % 3600,
                "distinct_id": f"user-{i % 97}",
                "$insert_id": insert_id,
                "payload": hashlib.sha256(insert_id.encode()).hexdigest(),  # gzip can't shrink it
            },
        }
        for i, insert_id in enumerate(ids)
    ]
    body = gzip.compress(orjson.dumps(events), compresslevel=1)
    assert len(body) >= workers.MIN_GZIP_BYTES
    return body, ids


def server_children(server: LiveServer) -> list[psutil.Process]:
    assert server.process is not None
    return psutil.Process(server.process.pid).children(recursive=True)


def worker_processes(server: LiveServer) -> list[psutil.Process]:
    """The server's ingest worker processes that are running (zombies excluded)."""
    found = []
    for child in server_children(server):
        try:
            if WORKER_MARK in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def zombies(server: LiveServer) -> list[psutil.Process]:
    result = []
    for child in server_children(server):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                result.append(child)
        except psutil.NoSuchProcess:
            continue
    return result


def survivors(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `processes` still running after `timeout` s (a zombie awaiting its reaper is not
    running: it holds no memory and executes nothing)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    running = []
    for process in alive:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            continue
    return running


def exported_ids(server: LiveServer, project: Project) -> Counter[str]:
    response = requests.get(
        f"{server.base_url}/api/2.0/export",
        params={"from_date": DAY, "to_date": DAY},
        auth=(project.api_secret, ""),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return Counter(
        orjson.loads(line)["properties"]["$insert_id"] for line in response.content.split(b"\n") if line
    )


@dataclass
class ImportLoad:
    """Client threads each posting gzip /import bodies of fresh events until `stop()`; records
    every answer and the ids of acknowledged (200) bodies. Timeouts are bounded: a hang fails."""

    server: LiveServer
    project: Project
    clients: int = 4
    events_per_body: int = 2000
    timeout: float = 30.0
    acknowledged: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    unavailable: list[requests.Response] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ImportLoad:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
            assert not thread.is_alive(), "a client is stuck: the server hangs"

    def _client(self, n: int) -> None:
        try:
            self._requests(n)
        except BaseException as exc:  # recorded: a thread's exception would not fail the test
            self._record_error(exc)

    def _requests(self, n: int) -> None:
        session = requests.Session()
        for round_ in itertools.count():
            if self._stop.is_set():
                return
            body, ids = import_body(f"c{n}-r{round_}", self.events_per_body)
            try:
                response = session.post(
                    f"{self.server.base_url}/import?strict=1",
                    data=body,
                    headers=GZIP_JSON,
                    auth=(self.project.api_secret, ""),
                    timeout=self.timeout,
                )
            except requests.Timeout as exc:
                self._record_error(exc)
                return
            except requests.ConnectionError:
                if self._stop.is_set():
                    return
                session = requests.Session()  # the server is going away (stop tests): try again
                continue
            with self._lock:
                self.statuses[response.status_code] += 1
                if response.status_code == 200 and response.json()["num_records_imported"] == len(ids):
                    self.acknowledged.update(ids)
                elif response.status_code == 503:
                    self.unavailable.append(response)

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)
