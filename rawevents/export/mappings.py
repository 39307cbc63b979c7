"""The identity mappings table (a rawevents extension beside the export): every id of a project
that resolves to another, as Mixpanel's JSON pipelines ship it (`distinct_id`,
`resolved_distinct_id`), so a copy of events exported as ingested can be resolved downstream.

With the export's cursor parameters it answers only the ids whose resolution changed in that
slice of ingestion, and its `cursor` is the upper bound to pass as `after_cursor` next time: an
incremental client re-resolves the events it already holds with the rows it receives.
"""

from __future__ import annotations

from typing import Any, Protocol

from rawevents.export.cursor import CursorRequest, cursor_bounds, parse_cursor_params
from rawevents.projects import Project


class MappingSource(Protocol):
    cursor_kind: str

    def ingest_position(self) -> int: ...

    def identity_mappings(
        self, project_id: int, after: int | None = None, upto: int | None = None
    ) -> list[tuple[str, str]]: ...


def identity_mappings(store: MappingSource, project: Project, params: dict[str, str]) -> dict[str, Any]:
    """`{"id_merge", "cursor", "results": [{"distinct_id", "resolved_distinct_id"}, …]}`."""
    request = parse_cursor_params(params, project.project_id) or CursorRequest(None, None)
    after, upto, cursor = cursor_bounds(request, project.project_id, store)
    rows = store.identity_mappings(project.project_id, after, upto)
    return {
        "id_merge": project.id_merge,
        "cursor": cursor,
        "results": [{"distinct_id": d, "resolved_distinct_id": c} for d, c in rows],
    }
