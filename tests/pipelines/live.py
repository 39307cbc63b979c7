"""Helpers of the pipeline tests against a live server: a server reaching the loopback S3, events
in through /import, the project's export through HTTP, waiting for a pipeline to catch up."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import requests

from rawevents.pipelines.model import Pipeline
from rawevents.projects import Project
from tests.admin.helpers import LEAN, cli_json
from tests.export.helpers import basic
from tests.live_server import LiveServer
from tests.pipelines.conftest import S3Server

QUICK = {**LEAN, "RAWEVENTS_PIPELINE_RETRY_MAX_SECONDS": "2", "RAWEVENTS_LOG_LEVEL": "info"}


@contextmanager
def serving(data_dir: Path, s3: S3Server, store: str = "duckdb", **env: str) -> Iterator[LiveServer]:
    server = LiveServer(data_dir, env={**QUICK, **s3.env, **env}, store=store).start()
    try:
        yield server
    finally:
        server.stop()


def utc_s(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=dt.UTC).timestamp())


def make_events(count: int, start_s: int, step_s: int, prefix: str, users: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "event": "view" if i % 4 else "buy",
            "properties": {
                "time": start_s + i * step_s,
                "distinct_id": f"user{i % users}",
                "$insert_id": f"{prefix}-{i}",
                "n": i,
                "price": i / 4,
                "ok": i % 2 == 0,
                "tags": ["x", i % 3],
            },
        }
        for i in range(count)
    ]


def ingest(server: LiveServer, project: Project, events: list[dict[str, Any]]) -> None:
    assert project.api_secret is not None
    for start in range(0, len(events), 2000):
        response = server.post(
            "/import?strict=1", json=events[start : start + 2000], headers=basic(project.api_secret)
        )
        assert response.status_code == 200, response.text


def export_lines(server: LiveServer, project: Project, first: str = "1970-01-01") -> Counter[bytes]:
    assert project.api_secret is not None
    today = dt.datetime.now(project.zone).date().isoformat()
    response = server.get(
        f"/api/2.0/export?from_date={first}&to_date={today}",
        headers={**basic(project.api_secret), "Accept-Encoding": "identity"},
    )
    assert response.status_code == 200, response.text
    return Counter(line + b"\n" for line in response.content.split(b"\n") if line)


def position(server: LiveServer, project: Project) -> int:
    """The store's ingestion position now (the export cursor's, decoded)."""
    assert project.api_secret is not None
    reply = requests.head(
        server.base_url + "/api/2.0/export?cursor=1", headers=basic(project.api_secret), timeout=30
    )
    raw = reply.headers["x-rawevents-cursor"]
    return int(orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))["pos"])


def pipeline(server: LiveServer, name: str) -> Pipeline:
    registry = server.registry
    try:
        return registry.require_pipeline(name)
    finally:
        registry.close()


def wait_delivered(server: LiveServer, project: Project, name: str, timeout: float = 90.0) -> Pipeline:
    """Until the pipeline has committed everything stored when this was called."""
    target = position(server, project)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pipeline(server, name)
        if found.state.pending is None and found.state.cursor >= target:
            return found
        time.sleep(0.2)
    raise AssertionError(
        f"pipeline {name} did not catch up: {pipeline(server, name)}\n{server.log_text()[-3000:]}"
    )


def create(server: LiveServer, project: Project, to: str, *extra: str) -> dict[str, Any]:
    answer: dict[str, Any] = cli_json(
        "pipeline",
        "create",
        "--project",
        str(project.project_id),
        "--to",
        to,
        "--every",
        "1",
        *extra,
        "--data-dir",
        str(server.data_dir),
        "--store",
        server.store,
    )
    return answer
