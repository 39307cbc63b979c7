"""What ETL connectors read around the export, answered from stored data in Mixpanel's shapes:
people profiles (`/api/2.0/engage`), event property names (`events/properties/top`), profile
property types (`engage/properties`) and cohorts (none are stored: an empty list).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson

from rawevents.errors import BadRequest
from rawevents.params import int_param
from rawevents.projects import Project
from rawevents.storage.base import EventStore, ProfileQuery

PEOPLE_KIND = "user"  # the profile kind /engage writes (rawevents.ingest)
DEFAULT_PAGE_SIZE = 1000  # Mixpanel's page size for /engage
MAX_PAGE_SIZE = 100_000
PROPERTY_SAMPLE_ROWS = 100_000  # most recent events scanned for property names
PROFILE_SAMPLE = 100_000  # profiles scanned for property types
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?")


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


def engage_page(store: EventStore, project: Project, params: Mapping[str, str]) -> dict[str, Any]:
    """One page of people profiles, ordered by distinct_id, so pages are stable and complete
    (the result never depends on the page size). `session_id` is echoed for clients that send
    it back; it carries no state."""
    page = int_param(params, "page", 0, 0, 10**9)
    page_size = int_param(params, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    ids = _string_list(params, "distinct_ids")
    if params.get("distinct_id"):
        ids = [*(ids or []), params["distinct_id"]]
    output = _string_list(params, "output_properties")
    found = store.profile_page(
        ProfileQuery(
            project.project_id,
            PEOPLE_KIND,
            ids=None if ids is None else tuple(ids),
            offset=page * page_size,
            limit=page_size,
        )
    )
    results = []
    for profile_id, properties in found.rows:
        if output is not None:
            properties = {k: v for k, v in properties.items() if k in output}
        results.append({"$distinct_id": profile_id, "$properties": properties})
    session = params.get("session_id") or _session_id(project.project_id, params)
    return {
        "page": page,
        "page_size": page_size,
        "session_id": session,
        "status": "ok",
        "total": found.total,
        "results": results,
    }


def _session_id(project_id: int, params: Mapping[str, str]) -> str:
    basis = f"{project_id}|{params.get('distinct_ids', '')}|{params.get('distinct_id', '')}"
    return hashlib.sha1(basis.encode()).hexdigest()[:20]


def event_property_counts(store: EventStore, project: Project, params: Mapping[str, str]) -> dict[str, Any]:
    """`{"<property>": {"count": N}}` over the most recent events (of `event`, when given),
    most frequent first. No `limit` means every property seen (Mixpanel's default is 10, which
    would hide columns from the connectors that use this for schema discovery)."""
    limit = int_param(params, "limit", 0, 1, 1_000_000) or None
    counts = store.event_property_counts(
        project.project_id, params.get("event") or None, PROPERTY_SAMPLE_ROWS, limit
    )
    return {name: {"count": count} for name, count in counts}


# Mixpanel's reserved profile properties: engage/properties lists them even before any profile
# exists, so schema discovery (Airbyte's Mixpanel source fails on an empty `results`) always
# finds the columns every profile can have.
DEFAULT_PROFILE_PROPERTIES: dict[str, str] = {
    "$email": "string",
    "$name": "string",
    "$first_name": "string",
    "$last_name": "string",
    "$phone": "string",
    "$avatar": "string",
    "$created": "datetime",
    "$last_seen": "datetime",
    "$city": "string",
    "$region": "string",
    "$country_code": "string",
    "$timezone": "string",
    "$os": "string",
    "$browser": "string",
}


def profile_property_types(store: EventStore, project: Project) -> dict[str, Any]:
    """`{"results": {"<property>": {"count": N, "type": "string"|"number"|…}}, "status": "ok"}`,
    each property's most common type over the profiles, then the default profile properties not
    seen (count 0), so `results` is never empty."""
    types: dict[str, Counter[str]] = {}
    for seen, (_, properties) in enumerate(store.profiles(project.project_id, PEOPLE_KIND)):
        if seen >= PROFILE_SAMPLE:
            break
        for key, value in properties.items():
            types.setdefault(key, Counter())[_type_name(value)] += 1
    results = {
        key: {"count": sum(counter.values()), "type": counter.most_common(1)[0][0]}
        for key, counter in sorted(types.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    }
    for key, kind in DEFAULT_PROFILE_PROPERTIES.items():
        results.setdefault(key, {"count": 0, "type": kind})
    return {"results": results, "status": "ok"}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "datetime" if _DATETIME.fullmatch(value) else "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "unknown"
