"""People profiles (`/api/2.0/engage`), which ETL connectors read around the export, answered
from stored data in Mixpanel's shape. Property discovery lives in rawevents.query.properties.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from rawevents.errors import BadRequest
from rawevents.projects import Project

PEOPLE_KIND = "user"  # the profile kind /engage writes (rawevents.ingest)
DEFAULT_PAGE_SIZE = 1000  # Mixpanel's page size for /engage
MAX_PAGE_SIZE = 100_000


class MetadataStore(Protocol):
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def profiles(
        self, project_id: int, kind: str, group_key: str = ""
    ) -> Iterable[tuple[str, dict[str, Any]]]: ...


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


def _string_list(params: Mapping[str, str], name: str) -> list[str] | None:
    raw = params.get(name, "")
    if raw.strip() == "":
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name} must be a JSON array of strings, got {raw!r}")
    return value


def engage_page(store: MetadataStore, project: Project, params: Mapping[str, str]) -> dict[str, Any]:
    """One page of people profiles, ordered by distinct_id, so pages are stable and complete
    (the result never depends on the page size). `session_id` is echoed for clients that send
    it back; it carries no state."""
    page = _int_param(params, "page", 0, 0, 10**9)
    page_size = _int_param(params, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    ids = _string_list(params, "distinct_ids")
    if params.get("distinct_id"):
        ids = [*(ids or []), params["distinct_id"]]
    output = _string_list(params, "output_properties")
    conditions = "project_id = ? AND kind = ? AND group_key = ''"
    args: list[Any] = [project.project_id, PEOPLE_KIND]
    if ids is not None:
        conditions += " AND list_contains(?, profile_id)"
        args.append(ids)
    total = int(store.query(f"SELECT count(*) FROM profiles WHERE {conditions}", args)[0][0])
    rows = store.query(
        f"SELECT profile_id, properties FROM profiles WHERE {conditions}"
        " ORDER BY profile_id LIMIT ? OFFSET ?",
        [*args, page_size, page * page_size],
    )
    results = []
    for profile_id, raw in rows:
        properties = orjson.loads(raw)
        if output is not None:
            properties = {k: v for k, v in properties.items() if k in output}
        results.append({"$distinct_id": profile_id, "$properties": properties})
    session = params.get("session_id") or _session_id(project.project_id, params)
    return {
        "page": page,
        "page_size": page_size,
        "session_id": session,
        "status": "ok",
        "total": total,
        "results": results,
    }


def _session_id(project_id: int, params: Mapping[str, str]) -> str:
    basis = f"{project_id}|{params.get('distinct_ids', '')}|{params.get('distinct_id', '')}"
    return hashlib.sha1(basis.encode()).hexdigest()[:20]
