"""Shared helpers for the client tests: events in, files out."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path
from typing import Any

import orjson

from rawevents.client import Connection, Credentials
from rawevents.projects import Project
from tests.export.helpers import basic
from tests.live_server import LiveServer


def utc_s(*parts: int) -> int:
    return int(dt.datetime(*parts, tzinfo=dt.UTC).timestamp())  # type: ignore[misc]


def event(name: str, time_s: int, insert_id: str, **props: Any) -> dict[str, Any]:
    return {
        "event": name,
        "properties": {
            "time": time_s,
            "distinct_id": props.pop("distinct_id", "u1"),
            "$insert_id": insert_id,
            **props,
        },
    }


def ingest(server: LiveServer, project: Project, events: list[dict[str, Any]]) -> None:
    response = server.post("/import?strict=1", json=events, headers=basic(project.api_secret))
    assert response.status_code == 200, response.text


def connect(server: LiveServer, project: Project, **kwargs: Any) -> Connection:
    return Connection(server.base_url, Credentials(project.api_secret), **kwargs)


def jsonl(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [orjson.loads(line) for line in data.split(b"\n") if line]


def insert_ids(paths: list[Path]) -> list[str]:
    return sorted(row["properties"]["$insert_id"] for path in paths for row in jsonl(path))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith((".part", ".tmp")))
