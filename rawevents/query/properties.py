"""`events/properties/values`: the top values of one event property, in Mixpanel's shape."""

from __future__ import annotations

from collections.abc import Mapping

from rawevents.errors import BadRequest
from rawevents.params import int_param
from rawevents.projects import Project
from rawevents.query.params import day_range, selection
from rawevents.storage.base import EventStore
from rawevents.where import ast

VALUES_DEFAULT_LIMIT = 255  # Mixpanel's default for events/properties/values
VALUES_MAX_LIMIT = 10_000


def property_values(store: EventStore, project: Project, params: Mapping[str, str]) -> list[str]:
    """The most frequent values of property `name` (of `event`, when given), as `string()`
    renders them, most frequent first. Mixpanel takes no dates here; `from_date`/`to_date` and
    `where` are accepted as an extension, and the default range is the last 30 days."""
    name = params.get("name", "")
    if name == "":
        raise BadRequest("'name' is a required parameter")
    limit = int_param(params, "limit", VALUES_DEFAULT_LIMIT, 1, VALUES_MAX_LIMIT)
    chosen = selection(params, project, day_range(params, project, required=False))
    on = ast.Access(scope="properties", name=name)
    return [value for value, _ in store.top_values(chosen, on, limit)]
