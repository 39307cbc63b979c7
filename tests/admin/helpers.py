"""Shared helpers for the data-lifecycle tests: the CLI, ingestion and export of a live server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.export.helpers import basic
from tests.live_server import LiveServer

# One worker process fewer per server: these tests send small bodies.
LEAN = {"RAWEVENTS_INGEST_PROCESSES": "0"}


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "rawevents.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def cli_json(*args: str) -> Any:
    return json.loads(cli(*args).stdout)


@contextmanager
def live(data_dir: Path, **env: str) -> Iterator[LiveServer]:
    server = LiveServer(data_dir, env={**LEAN, **env}).start()
    try:
        yield server
    finally:
        server.stop()


def event(distinct_id: str, name: str, time_s: float, insert_id: str, **props: Any) -> dict[str, Any]:
    properties = {"time": time_s, "distinct_id": distinct_id, "$insert_id": insert_id, **props}
    return {"event": name, "properties": properties}


def import_events(server: LiveServer, secret: str, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 2000):
        response = server.post("/import?strict=1", json=events[start : start + 2000], headers=basic(secret))
        assert response.status_code == 200, response.text


def export(server: LiveServer, secret: str, from_date: str, to_date: str) -> bytes:
    response = server.get(
        f"/api/2.0/export?from_date={from_date}&to_date={to_date}",
        headers={**basic(secret), "Accept-Encoding": "identity"},
    )
    assert response.status_code == 200, response.text
    return response.content


def set_profiles(server: LiveServer, token: str, profiles: dict[str, dict[str, Any]]) -> None:
    updates = [{"$token": token, "$distinct_id": pid, "$set": props} for pid, props in profiles.items()]
    response = server.post("/engage?verbose=1", json=updates)
    assert response.json() == {"error": None, "status": 1}, response.text


def profile_ids(server: LiveServer, secret: str) -> list[str]:
    response = server.get("/api/2.0/engage", headers=basic(secret))
    assert response.status_code == 200, response.text
    return sorted(p["$distinct_id"] for p in response.json()["results"])


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def get(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, timeout=30, **kwargs)
