"""Shared helpers for the export tests: events written straight into a store, auth headers."""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import Iterable
from typing import Any

import orjson

from rawevents import timeutil
from rawevents.eventline import assemble_line
from rawevents.projects import Project
from rawevents.storage.base import StoredEvent


def stored_event(project: Project, event: str, time_ms: int, **properties: Any) -> StoredEvent:
    """An event as ingestion stores it (export line assembled with project-local seconds)."""
    properties.setdefault("$insert_id", f"{event}-{time_ms}-{properties.get('distinct_id')}")
    time_pos, line = assemble_line(event, properties, timeutil.local_seconds(project.zone, time_ms))
    return StoredEvent(
        project.project_id,
        time_ms,
        event,
        properties.get("distinct_id"),
        properties["$insert_id"],
        time_pos,
        line,
    )


def basic(username: str, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def rows(body: bytes | str) -> list[dict[str, Any]]:
    data = body.encode() if isinstance(body, str) else body
    return [orjson.loads(line) for line in data.split(b"\n") if line]  # not splitlines(): U+2028


def gunzip_strict(body: bytes) -> bytes:
    """Decode exactly one gzip member (as httpx/curl do) and insist nothing follows it."""
    decoder = zlib.decompressobj(31)
    data = decoder.decompress(body) + decoder.flush()
    assert decoder.eof, "gzip stream is truncated"
    assert decoder.unused_data == b"", "more than one gzip member"
    assert data == gzip.decompress(body)
    return data


def lines_of(events: Iterable[StoredEvent]) -> bytes:
    return "".join(e.line for e in events).encode()
