"""Property discovery in Mixpanel's shapes: the top values of one event property
(`events/properties/values`), property names with real counts (`events/properties/top`) and the
profile properties a project has (`engage/properties`, never an empty `results`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from rawevents.errors import BadRequest
from rawevents.export.metadata import PEOPLE_KIND
from rawevents.projects import Project
from rawevents.query.params import day_range, int_param, segment_expression, selection
from rawevents.storage.base import EventSelection, EventStore, TimeSegment
from rawevents.where import ast, to_text

VALUES_DEFAULT_LIMIT = 255  # Mixpanel's default for events/properties/values
PROPERTY_SAMPLE_ROWS = 100_000  # most recent events scanned for property names without dates
PROFILE_SAMPLE = 100_000  # profiles scanned for property types
_ALL_TIME = (TimeSegment(0, 2**62, 0),)
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?")

# Mixpanel's reserved people properties (its docs' "Default Properties" for profiles): listed by
# engage/properties even before any profile exists, so schema discovery (Airbyte's Mixpanel
# source, which fails on an empty answer) always finds the columns every profile can have.
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


class ProfileSource(Protocol):
    def profiles(
        self, project_id: int, kind: str, group_key: str = ""
    ) -> Iterable[tuple[str, dict[str, Any]]]: ...


def property_values(store: EventStore, project: Project, params: Mapping[str, str]) -> list[str]:
    """The most frequent values of property `name` (as `string()` renders them), most frequent
    first. Mixpanel takes no dates here; `from_date`/`to_date` and `where` are accepted as an
    extension, and the default range is the last 30 days."""
    name = params.get("name", "")
    if name == "":
        raise BadRequest("'name' is a required parameter")
    limit = int_param(params, "limit", VALUES_DEFAULT_LIMIT, 1, 10_000)
    on = segment_expression(to_text(ast.Access(scope="properties", name=name)), project, "name")
    chosen = selection(params, project, day_range(params, project, required=False))
    return [value for value, _ in store.top_values(chosen, on, limit)]


def event_property_counts(store: EventStore, project: Project, params: Mapping[str, str]) -> dict[str, Any]:
    """`{"<property>": {"count": N}}`: how many events (of `event`, when given) carry each
    property, most frequent first. With `from_date`/`to_date` (an extension) the counts are over
    every event of those days; without, over the PROPERTY_SAMPLE_ROWS most recent events. No
    `limit` means every property (Mixpanel's default of 10 would hide columns from the connectors
    that use this for schema discovery)."""
    limit = int_param(params, "limit", 0, 1, 1_000_000) or None
    dated = bool(params.get("from_date", "").strip() or params.get("to_date", "").strip())
    if dated:
        chosen = selection(params, project, day_range(params, project))
        sample = None
    else:
        chosen = EventSelection(project.project_id, _ALL_TIME, events=_single_event(params))
        sample = PROPERTY_SAMPLE_ROWS
    counts = store.event_property_counts(chosen, sample, limit)
    return {name: {"count": count} for name, count in counts}


def _single_event(params: Mapping[str, str]) -> tuple[str, ...] | None:
    event = params.get("event")
    return (event,) if event else None


def profile_property_types(store: ProfileSource, project: Project) -> dict[str, Any]:
    """`{"results": {"<property>": {"count": N, "type": …}}, "status": "ok"}`: each property's most
    common type over the profiles, then Mixpanel's default profile properties not seen yet
    (count 0), so `results` is never empty."""
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
