"""Failures during an export, through a real HTTP server (uvicorn in a thread over a store that
fails on purpose): before the first byte a JSON error, after it a dropped connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
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

URL = "/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01"
LINE = b'{"event":"e","properties":{"time":1714521600,"distinct_id":"d"}}\n'


class FailingStore:
    """Yields `good_chunks` chunks of rows, then raises `error`; records that it was closed."""

    def __init__(self) -> None:
        self.good_chunks = 0
        self.error: Exception = RuntimeError("disk on fire")
        self.closed = threading.Event()

    def export_chunks(self, plan: ExportPlan) -> Iterator[bytes]:
        self.closed.clear()
        try:
            for _ in range(self.good_chunks):
                yield LINE * 2000
            raise self.error
        finally:
            self.closed.set()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        bucket_ms, _, start_ms, _ = params[:4]  # the export's rows-per-hour histogram: one busy hour
        return [(start_ms // bucket_ms, 1)]

    def close(self) -> None:
        pass


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[tuple[str, Project, FailingStore]]:
    config = load_config({}, data_dir=str(tmp_path))
    registry = SqliteRegistry(tmp_path)
    project = registry.create_project("fail", "UTC")
    store = FailingStore()
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


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_failure_after_the_first_byte_truncates_the_body(
    failing: tuple[str, Project, FailingStore], encoding: str
) -> None:
    base, project, store = failing
    store.good_chunks = 3
    headers = {**basic(project.api_secret), "Accept-Encoding": encoding}
    with requests.get(base + URL, headers=headers, stream=True, timeout=30) as response:
        assert response.status_code == 200
        received = b""
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in response.iter_content(65536):
                received += chunk
    # What arrived is a prefix of the rows, never an in-band error line.
    assert received and (LINE * 6000).startswith(received)
    assert b"terminated" not in received
    assert store.closed.wait(5)
    # The server carries on.
    assert requests.get(base + "/", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (StorageError("the event store is unavailable; retry"), 503, "the event store is unavailable; retry"),
        (RuntimeError("boom"), 500, "export failed: internal error, see the server log"),
    ],
)
def test_failure_before_the_first_byte_is_a_json_error(
    failing: tuple[str, Project, FailingStore], error: Exception, status: int, message: str
) -> None:
    base, project, store = failing
    store.good_chunks = 0
    store.error = error
    response = requests.get(
        base + URL, headers={**basic(project.api_secret), "Accept-Encoding": "gzip"}, timeout=30
    )
    assert response.status_code == status
    assert response.json() == {"request": URL, "error": message}
    assert "content-encoding" not in response.headers
