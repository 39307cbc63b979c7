"""Issue 26, finding 5: `X-Content-Type-Options: nosniff` on every answer (export streams, JSON,
errors, the explorer, probes, Starlette's own 500s), once."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from rawevents.http.app import create_app
from rawevents.projects import Project
from rawevents.service import Services
from rawevents.settings import load_config
from tests.export.helpers import basic, stored_event

DAYS = "from_date=2024-05-01&to_date=2024-05-01"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, TestClient, Project]]:
    data_dir = tmp_path_factory.mktemp("nosniff") / "data"
    config = load_config({}, data_dir=str(data_dir), ingest_processes=0)
    services = Services.open(config)
    project = services.registry.create_project("nosniff", "UTC")
    services.store.submit_events([stored_event(project, "e", 1714521600000, distinct_id="u")]).result()
    try:
        with TestClient(create_app(config, services), raise_server_exceptions=False) as client:
            yield services, client, project
    finally:
        services.close()


REQUESTS = [
    ("GET", "/", 200),
    ("GET", f"/api/2.0/export?{DAYS}", 200),
    ("GET", "/api/2.0/export?from_date=x", 400),
    ("GET", f"/api/query/segmentation?{DAYS}", 200),
    ("GET", f"/api/query/events/page?{DAYS}", 200),
    ("GET", "/api/query/segmentation?from_date=1970-01-01&to_date=2299-12-31&unit=minute", 400),
    ("GET", "/api/2.0/engage", 200),
    ("GET", "/api/nothing-here", 400),
    ("GET", "/explore", 200),
    ("GET", "/healthz", 200),
    ("GET", "/metrics", 200),
    ("POST", "/track?data=e30=", 200),
    ("GET", "/not-a-route", 404),
]


@pytest.mark.parametrize(("method", "path", "status"), REQUESTS)
def test_every_answer_says_nosniff(
    app: tuple[Services, TestClient, Project], method: str, path: str, status: int
) -> None:
    _, client, project = app
    assert project.api_secret is not None
    response = client.request(method, path, headers=basic(project.api_secret))
    assert response.status_code == status, response.text[:300]
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]


def test_an_unexpected_500_says_nosniff(
    app: tuple[Services, TestClient, Project], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, client, project = app
    assert project.api_secret is not None

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(services.store, "top_values", broken)
    response = client.get(
        f"/api/query/events/properties/values?name=x&{DAYS}", headers=basic(project.api_secret)
    )
    assert response.status_code == 500
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]


def test_a_gdpr_zip_says_nosniff(tmp_path: Path) -> None:
    # FileResponse goes through the same wrapper; checked on its own start message shape.
    from rawevents.http.headers import NOSNIFF, App

    sent: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/zip")]}
        )
        await send({"type": "http.response.body", "body": b""})

    async def collect(message: Any) -> None:
        sent.append(message)

    import asyncio

    wrapper = App()
    wrapper.middleware_stack = inner  # type: ignore[assignment]
    asyncio.run(wrapper({"type": "http", "app": wrapper}, None, collect))  # type: ignore[arg-type]
    assert sent[0]["headers"] == [(b"content-type", b"application/zip"), NOSNIFF]
