"""What the probes and export metrics say when things go wrong, through a real HTTP server
(uvicorn in a thread) over a store that misbehaves on purpose: a store that cannot write makes
/readyz a 503 in the query API's error shape; exports that fail or lose their client are counted
as failed and aborted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from rawevents.errors import StorageError
from rawevents.http.app import create_app
from rawevents.projects import Project
from rawevents.service import Services
from rawevents.settings import load_config
from rawevents.storage.base import ExportPlan
from rawevents.storage.duckdb.registry import SqliteRegistry
from tests.export.helpers import basic
from tests.live_server import free_port
from tests.ops.helpers import moved, scrape, wait_for

URL = "/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01"
LINE = b'{"event":"e","properties":{"time":1714521600,"distinct_id":"d"}}\n'


class MisbehavingStore:
    """Exports `good_chunks` chunks, then raises `error`; `check` raises `not_ready` when set."""

    def __init__(self) -> None:
        self.good_chunks = 0
        self.error: Exception = RuntimeError("disk on fire")
        self.not_ready: Exception | None = None
        self.closed = threading.Event()

    def export_chunks(self, plan: ExportPlan) -> Iterator[bytes]:
        self.closed.clear()
        try:
            for _ in range(self.good_chunks):
                yield LINE * 2000
            raise self.error
        finally:
            self.closed.set()

    def check(self, timeout: float) -> None:
        if self.not_ready is not None:
            raise self.not_ready

    def close(self) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Project, MisbehavingStore]]:
    config = load_config({}, data_dir=str(tmp_path))
    registry = SqliteRegistry(tmp_path)
    project = registry.create_project("ops", "UTC")
    store = MisbehavingStore()
    services: Any = Services(config, registry, store)  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config, services), port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}", project, store
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (StorageError("the writer did not commit within 5 s"), "the writer did not commit within 5 s"),
        (RuntimeError("IO Error: disk full"), "the event store failed the readiness probe"),
    ],
)
def test_readiness_is_503_when_the_store_fails_its_probe(
    served: tuple[str, Project, MisbehavingStore], error: Exception, message: str
) -> None:
    base, _, store = served
    store.not_ready = error
    response = requests.get(base + "/readyz", timeout=30)
    assert response.status_code == 503
    assert response.json() == {"request": "/readyz", "error": message}
    # Liveness is only about the process: still fine.
    assert requests.get(base + "/healthz", timeout=30).json() == {"status": "ok"}


def test_readiness_fails_once_the_real_store_is_closed(tmp_path: Path) -> None:
    config = load_config({}, data_dir=str(tmp_path), ingest_processes=0)
    services = Services.open(config)
    services.store.check(5.0)  # healthy: a durable write read back
    # Probes at the same time (an orchestrator and a person) each read back their own write.
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: services.store.check(5.0), range(32))) == [None] * 32
    services.store.close()
    with pytest.raises(StorageError, match="writer thread has stopped"):
        services.store.check(5.0)


def test_export_failing_mid_stream_is_counted_failed(served: tuple[str, Project, MisbehavingStore]) -> None:
    base, project, store = served
    store.good_chunks = 3
    before = scrape(base)
    with requests.get(base + URL, headers=basic(project.api_secret), stream=True, timeout=30) as response:
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for _ in response.iter_content(65536):
                pass
    wait_for(lambda: moved(before, scrape(base), "rawevents_exports_ended_total", outcome="failed") == 1)
    after = scrape(base)
    assert moved(before, after, "rawevents_exports_started_total") == 1
    assert moved(before, after, "rawevents_exports_ended_total", outcome="finished") == 0
    assert moved(before, after, "rawevents_export_first_byte_seconds_count") == 1


def test_export_left_by_its_client_is_counted_aborted(served: tuple[str, Project, MisbehavingStore]) -> None:
    base, project, store = served
    store.good_chunks = 10**9  # endless: only the client leaving ends it
    before = scrape(base)
    headers = {**basic(project.api_secret), "Accept-Encoding": "identity"}
    with requests.get(base + URL, headers=headers, stream=True, timeout=30) as response:
        assert response.status_code == 200
        assert next(response.iter_content(65536))
    assert store.closed.wait(10)  # the scan was stopped
    wait_for(lambda: moved(before, scrape(base), "rawevents_exports_ended_total", outcome="aborted") == 1)
    after = scrape(base)
    assert moved(before, after, "rawevents_exports_ended_total", outcome="failed") == 0
    assert moved(before, after, "rawevents_export_bytes_total") > 0
