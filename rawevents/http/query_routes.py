"""Query-API endpoints: what ETL connectors call around the export (compat §6), Mixpanel's
segmentation and property discovery, and the explorer's paged event list; all answered from
stored data in Mixpanel's shapes, with the export's auth and error shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rawevents.errors import RawEventsError
from rawevents.export import mappings, metadata
from rawevents.export.ratelimit import ExportLease
from rawevents.http.export_routes import admission, authenticate, request_params
from rawevents.http.responses import query_api_error
from rawevents.projects import Project
from rawevents.query import cost, events_page, properties, segmentation
from rawevents.query.cost import QueryLimits, RawJson
from rawevents.service import Services

Answer = Callable[[Services, Project, dict[str, str]], Any]


def _endpoint(answer: Answer) -> Callable[[Request], Awaitable[Response]]:
    """Parameters and auth, then a slot of the export admission (queries and exports share the
    slots, the wait and the memory budget: a 503 + Retry-After when none frees in time), then the
    answer off the event loop, refused with a 400 when its body is over the answer cap."""
    light = answer in _LIGHT

    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        lease: ExportLease | None = None
        try:
            params = await request_params(request)
            project = authenticate(request, services, params)
            if not light:
                lease = await admission(request).admit_query()
            # Storage reads block: keep them off the event loop.
            body = await run_in_threadpool(_body, answer, services, project, params)
        except RawEventsError as error:
            return query_api_error(request, error)
        finally:
            if lease is not None:
                lease.release()
        return Response(body, media_type="application/json")

    return endpoint


def _body(answer: Answer, services: Services, project: Project, params: dict[str, str]) -> bytes:
    payload = answer(services, project, params)
    body = payload.body if isinstance(payload, RawJson) else orjson.dumps(payload)
    del payload
    limits = QueryLimits.from_config(services.config)
    cost.check_answer(len(body), limits.max_answer_bytes, _CHANGE.get(answer, "ask for less"))
    return body


def _engage(services: Services, project: Project, params: dict[str, str]) -> Any:
    return metadata.engage_page(services.store, project, params)


def _top_properties(services: Services, project: Project, params: dict[str, str]) -> Any:
    return metadata.event_property_counts(services.store, project, params)


def _property_values(services: Services, project: Project, params: dict[str, str]) -> Any:
    return properties.property_values(services.store, project, params)


def _engage_properties(services: Services, project: Project, params: dict[str, str]) -> Any:
    return metadata.profile_property_types(services.store, project)


def _segmentation(services: Services, project: Project, params: dict[str, str]) -> Any:
    return segmentation.segmentation(
        services.store, project, params, QueryLimits.from_config(services.config)
    )


def _events_page(services: Services, project: Project, params: dict[str, str]) -> Any:
    max_bytes = QueryLimits.from_config(services.config).max_answer_bytes
    return events_page.events_page(services.store, project, params, max_bytes)


def _cohorts(services: Services, project: Project, params: dict[str, str]) -> Any:
    return []  # cohorts are a Mixpanel UI feature; nothing defines them here


def _project(services: Services, project: Project, params: dict[str, str]) -> Any:
    # A rawevents extension: clients read the zone to turn exported local `time` back into UTC.
    return {
        "project_id": project.project_id,
        "name": project.name,
        "timezone": project.timezone,
        "id_merge": project.id_merge,
    }


def _identity_mappings(services: Services, project: Project, params: dict[str, str]) -> Any:
    return mappings.identity_mappings(services.store, project, params)


# Answers that read no events (a registry row, a constant): no admission slot.
_LIGHT: set[Answer] = {_cohorts, _project}
# What to change when an answer is over the byte cap.
_CHANGE: dict[Answer, str] = {
    _engage: "use a smaller page_size or output_properties",
    _top_properties: "use a smaller limit",
    _property_values: "use a smaller limit",
    _identity_mappings: "use after_cursor and upto_cursor to read the mappings a slice at a time",
}

_ENDPOINTS: dict[str, Answer] = {
    "/api/rawevents/project": _project,
    "/api/rawevents/identity/mappings": _identity_mappings,
    "/api/2.0/engage": _engage,
    "/api/query/engage": _engage,
    "/api/2.0/events/properties/top": _top_properties,
    "/api/query/events/properties/top": _top_properties,
    "/api/2.0/events/properties/values": _property_values,
    "/api/query/events/properties/values": _property_values,
    "/api/2.0/segmentation": _segmentation,
    "/api/query/segmentation": _segmentation,
    "/api/query/events/page": _events_page,
    "/api/2.0/engage/properties": _engage_properties,
    "/api/query/engage/properties": _engage_properties,
    "/api/2.0/cohorts/list": _cohorts,
    "/api/query/cohorts/list": _cohorts,
}


def routes() -> list[BaseRoute]:
    methods = ["GET", "POST", "HEAD"]
    found: list[BaseRoute] = []
    for path, answer in _ENDPOINTS.items():
        endpoint = _endpoint(answer)
        found.append(Route(path, endpoint, methods=methods))
        found.append(Route(path + "/", endpoint, methods=methods))
    return found
