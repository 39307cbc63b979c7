"""Gzip `/import` load against a live server from client threads, recording what was acknowledged:
the one load client of the reliability and lifecycle tests.

Bodies carry an incompressible payload, so their gzip size follows the event count: up to 200
events stay in process, `WORKER_BATCH` (1000) or more take the worker path (checked).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import orjson
import requests

from rawevents.ingest import workers
from rawevents.projects import Project
from tests.live_server import LiveServer

BASE_TIME = 1_700_000_000  # 2023-11-14 22:13:20 UTC: an hour of events stays on that day
GZIP_JSON = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
WORKER_BATCH = 1000  # events: a body this large is at least workers.MIN_GZIP_BYTES of gzip
RETRY_PAUSE_S = 0.05  # after a connection error, before the next body


def import_body(prefix: str, n: int, *, time_s: int = BASE_TIME) -> tuple[bytes, list[str]]:
    """A gzip JSON /import body of `n` events within the hour from `time_s`, and their ids
    (`{prefix}-{i:05d}`). Asserts that a body of `WORKER_BATCH` events or more is large enough
    for the worker path."""
    ids = [f"{prefix}-{i:05d}" for i in range(n)]
    events = [
        {
            "event": f"e{i % 7}",
            "properties": {
                "time": time_s + i % 3600,
                "distinct_id": f"user-{i % 97}",
                "$insert_id": insert_id,
                "payload": hashlib.sha256(insert_id.encode()).hexdigest(),  # gzip can't shrink it
            },
        }
        for i, insert_id in enumerate(ids)
    ]
    body = gzip.compress(orjson.dumps(events), compresslevel=1)
    assert n < WORKER_BATCH or len(body) >= workers.MIN_GZIP_BYTES, len(body)
    return body, ids


@dataclass
class ImportLoad:
    """`clients` threads each posting strict gzip /import bodies of `batch` fresh events (ids
    unique to this load) until `stop()`.

    Records every answer's status and latency, the 503 responses, and the ids of each 200 body
    whose every event was imported. A connection error (the server is down or going away) is
    counted, and the client tries again with a new session after a short pause. A timeout (the
    server hangs) or any other exception is recorded in `errors` and ends that client.
    """

    server: LiveServer
    project: Project
    clients: int = 4
    batch: int = 2000  # events per body (Mixpanel's /import maximum); 200 or fewer: in process
    time_s: int = BASE_TIME  # each body's events fall in the hour from here
    timeout: float = 30.0  # per request: a hang fails
    acknowledged: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    unavailable: list[requests.Response] = field(default_factory=list)
    connection_errors: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _auth: tuple[str, str] = field(init=False)
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _bodies: itertools.count[int] = field(default_factory=itertools.count)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        assert self.project.api_secret, "the load authenticates with the project's secret"
        self._auth = (self.project.api_secret, "")

    def start(self) -> ImportLoad:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_for_first_ack(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.acknowledged and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.acknowledged, f"no batch acknowledged in {timeout}s: {self.statuses}"

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
            assert not thread.is_alive(), "a client is stuck: the server hangs"

    def post(self, session: requests.Session) -> requests.Response | None:
        """Post one body of fresh events and record the answer; None after a connection error
        (counted). A timeout or any other exception is raised."""
        with self._lock:
            prefix = f"{self._run}-{next(self._bodies)}"
        body, ids = import_body(prefix, self.batch, time_s=self.time_s)
        started = time.monotonic()
        try:
            response = session.post(
                f"{self.server.base_url}/import?strict=1",
                data=body,
                headers=GZIP_JSON,
                auth=self._auth,
                timeout=self.timeout,
            )
        except requests.Timeout:  # before ConnectionError: a connect timeout is both, and a hang
            raise
        except requests.ConnectionError:
            with self._lock:
                self.connection_errors += 1
            return None
        with self._lock:
            self.latencies.append(time.monotonic() - started)
            self.statuses[response.status_code] += 1
            if response.status_code == 200 and response.json()["num_records_imported"] == len(ids):
                self.acknowledged.update(ids)
            elif response.status_code == 503:
                self.unavailable.append(response)
        return response

    def _client(self) -> None:
        session = requests.Session()
        try:
            while not self._stop.is_set():
                if self.post(session) is None:  # the server is down or going away
                    session.close()
                    session = requests.Session()
                    self._stop.wait(RETRY_PAUSE_S)
        except BaseException as exc:  # recorded: a thread's exception would not fail the test
            with self._lock:
                self.errors.append(exc)
        finally:
            session.close()
