"""`/api/rawevents/pipelines`: the data pipelines of the authenticated project (an extension).

Authentication is the export's (project secret, service account with `project_id`, legacy
signature); a caller sees and changes only its project's pipelines. Over HTTP a pipeline writes
to s3://, gs:// or az:// without endpoint overrides: file:// destinations and other endpoints
are the server operator's to set up with the CLI. Errors use the export's shape.

    GET    /api/rawevents/pipelines                 the project's pipelines
    POST   /api/rawevents/pipelines                 create: JSON {"to", "format", "every", "from",
                                                    "events", "where", "name"}
    GET    /api/rawevents/pipelines/{name}          status: the pipeline, its pending run, its runs
    POST   /api/rawevents/pipelines/{name}/pause    (and /resume)
    DELETE /api/rawevents/pipelines/{name}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rawevents.errors import BadRequest, PayloadTooLarge, RawEventsError
from rawevents.http.export_routes import authenticate
from rawevents.http.responses import json_response, query_api_error
from rawevents.pipelines import commands
from rawevents.projects import Project
from rawevents.service import Services

PATH = "/api/rawevents/pipelines"
MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[Request, Services, Project, dict[str, Any]], Any]


def _endpoint(handler: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            params = dict(parse_qsl(request.url.query, keep_blank_values=True))
            project = await run_in_threadpool(authenticate, request, services, params)
            body = await _body(request) if request.method == "POST" else {}
            result = await run_in_threadpool(handler, request, services, project, body)
        except RawEventsError as error:
            return query_api_error(request, error)
        return json_response(result, status)

    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    data = b""
    async for part in request.stream():
        data += part
        if len(data) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body larger than {MAX_BODY_BYTES} bytes")
    if not data.strip():
        return {}
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the request body must be a JSON object") from exc
    if not isinstance(parsed, dict):
        raise BadRequest("the request body must be a JSON object")
    return parsed


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"{key} must be a string")
    return str(value)


def _create(request: Request, services: Services, project: Project, body: dict[str, Any]) -> Any:
    events = body.get("events", body.get("event", []))
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise BadRequest("events must be a JSON array of event names")
    to = _text(body, "to")
    if not to:
        raise BadRequest("'to' is required: the destination URL (s3://bucket/prefix, …)")
    return commands.create(
        services.registry,
        project.project_id,
        to,
        fmt=_text(body, "format") or "jsonl.gz",
        every=_text(body, "every") or "1h",
        from_day=_text(body, "from"),
        events=events,
        where=_text(body, "where"),
        name=_text(body, "name"),
        remote=True,
    )


def _list(request: Request, services: Services, project: Project, body: dict[str, Any]) -> Any:
    return commands.listing(services.registry, project.project_id)


def _action(action: Callable[..., Any]) -> Handler:
    def run(request: Request, services: Services, project: Project, body: dict[str, Any]) -> Any:
        return action(services.registry, request.path_params["name"], project.project_id)

    return run


def routes() -> list[BaseRoute]:
    return [
        Route(PATH, _endpoint(_list), methods=["GET"]),
        Route(PATH, _endpoint(_create, 201), methods=["POST"]),
        Route(PATH + "/{name}", _endpoint(_action(commands.status)), methods=["GET"]),
        Route(PATH + "/{name}", _endpoint(_action(commands.delete)), methods=["DELETE"]),
        Route(PATH + "/{name}/pause", _endpoint(_action(commands.pause)), methods=["POST"]),
        Route(PATH + "/{name}/resume", _endpoint(_action(commands.resume)), methods=["POST"]),
    ]
