"""In-process fixtures: the real app and store on a temp directory, driven through httpx's ASGI
transport (fast, for the big tables). Real-server tests use `server`/`fresh_server`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from rawevents.http.app import create_app
from rawevents.projects import Project
from rawevents.service import Services
from rawevents.settings import load_config


class Client:
    """A synchronous face on httpx.AsyncClient + ASGITransport (one event loop for the module)."""

    def __init__(self, asgi_app: Any, base_url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi_app), base_url=base_url)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


@dataclass
class App:
    client: Client
    services: Services
    asgi: Any

    def project(self, timezone: str = "UTC") -> Project:
        return self.services.registry.create_project("ingest-test", timezone)

    def rows(self, project: Project) -> list[dict[str, Any]]:
        """Stored rows of a project in ingest order, with the line parsed."""
        result = self.services.store.query(
            "SELECT time_ms, event, distinct_id, insert_id, time_pos, line FROM events"
            " WHERE project_id = ? ORDER BY seq",
            [project.project_id],
        )
        return [
            {
                "time_ms": r[0],
                "event": r[1],
                "distinct_id": r[2],
                "insert_id": r[3],
                "time_pos": r[4],
                "line": r[5],
                "json": orjson.loads(r[5]),
            }
            for r in result
        ]

    def profiles(self, project: Project, kind: str = "user", group_key: str = "") -> dict[str, Any]:
        return dict(self.services.store.profiles(project.project_id, kind, group_key))


def make_app(data_dir: Path, **overrides: Any) -> Iterator[App]:
    """The app over services of its own; without ingest worker processes unless `overrides` asks
    for them (`ingest_processes=1`: tests of the worker path)."""
    config = load_config({}, data_dir=str(data_dir), **{"ingest_processes": 0, **overrides})
    services = Services.open(config)
    asgi_app = create_app(config, services)
    asgi_app.state.services = services  # the ASGI transport does not run the lifespan
    client = Client(asgi_app, "http://api.example.com")
    try:
        yield App(client, services, asgi_app)
    finally:
        client.close()
        services.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    yield from make_app(tmp_path_factory.mktemp("ingest"))


@pytest.fixture
def project(app: App) -> Project:
    return app.project()
