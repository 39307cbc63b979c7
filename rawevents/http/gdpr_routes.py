"""Mixpanel's GDPR API v3 (`/api/app/data-deletions/v3.0/`, `/api/app/data-retrievals/v3.0/`).

Requests become tasks in the registry, which the server's task runner carries out in the
background; answers follow Mixpanel's OpenAPI description (gdpr.openapi.yaml): `{"status": "ok",
"results": …}`, errors `{"status": "error", "error": …}`. A retrieval's result is a zip served,
with the same credentials, from `…/data-retrievals/v3.0/{task_id}/download`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from rawevents.admin import tasks
from rawevents.auth import GdprCaller, authenticate_gdpr
from rawevents.errors import BadRequest, NotFound, PayloadTooLarge, RawEventsError
from rawevents.http.responses import json_response
from rawevents.projects import PENDING, SUCCESS, Task
from rawevents.service import Services

MAX_DISTINCT_IDS = 2000
MAX_BODY_BYTES = 4 * 1024 * 1024
DELETIONS = "/api/app/data-deletions/v3.0"
RETRIEVALS = "/api/app/data-retrievals/v3.0"
COMPLIANCE_TYPES = {"GDPR", "CCPA"}
DISCLOSURE_TYPES = {"data": "Data", "categories": "Categories", "sources": "Sources"}


class NotCancellable(RawEventsError):
    code = "not_cancellable"
    status = 400


def gdpr_error(error: RawEventsError) -> Response:
    return json_response({"status": "error", "error": error.message}, error.status)


def _ok(results: Any, status: int = 200) -> Response:
    return json_response({"status": "ok", "results": results}, status)


@dataclass(frozen=True, slots=True)
class GdprRequest:
    distinct_ids: list[str]
    compliance_type: str
    disclosure_type: str


async def _body_fields(request: Request) -> dict[str, Any]:
    """A JSON object body, or form fields (with `distinct_ids` JSON-encoded, as in API v2)."""
    body = b""
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        return {}
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if not isinstance(parsed, dict):
        raise BadRequest("the request body must be a JSON object with distinct_ids")
    return parsed


def parse_request(fields: dict[str, Any]) -> GdprRequest:
    ids = fields.get("distinct_ids")
    if isinstance(ids, str):
        try:
            ids = orjson.loads(ids)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("distinct_ids must be a JSON array of strings") from exc
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise BadRequest("distinct_ids must be a non-empty array of strings")
    if len(ids) > MAX_DISTINCT_IDS:
        raise BadRequest(f"too many distinct_ids: {len(ids)} (at most {MAX_DISTINCT_IDS} per request)")
    compliance = str(fields.get("compliance_type") or "GDPR").upper()
    if compliance not in COMPLIANCE_TYPES:
        raise BadRequest("compliance_type must be GDPR or CCPA")
    disclosure = DISCLOSURE_TYPES.get(str(fields.get("disclosure_type") or "Data").lower())
    if disclosure is None:
        raise BadRequest("disclosure_type must be Data, Categories or Sources")
    return GdprRequest(list(dict.fromkeys(ids)), compliance, disclosure)


def _params(request: Request) -> dict[str, str]:
    return dict(parse_qsl(request.url.query, keep_blank_values=True))


def _caller(request: Request) -> GdprCaller:
    services: Services = request.app.state.services
    return authenticate_gdpr(services.registry, request.headers.get("authorization"), _params(request))


def _owned_task(request: Request, caller: GdprCaller, kind: str) -> Task:
    """The path's task, if it is this project's and of this kind (else 404, leaking nothing)."""
    services: Services = request.app.state.services
    task_id = request.path_params["task_id"]
    task = services.registry.task(task_id)
    if task is None or task.kind != kind or task.project_id != caller.project.project_id:
        raise NotFound(f"no {kind} task {task_id!r} in this project")
    return task


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000))


def _deletion_result(task: Task) -> dict[str, Any]:
    return {
        "tracking_id": task.task_id,
        "status": task.status,
        "requesting_user": task.requested_by,
        "compliance_type": task.payload["compliance_type"],
        "project_id": task.project_id,
        "date_requested": _iso(task.created_at_ms),
        "distinct_ids": task.payload["distinct_ids"],
    }


def _retrieval_result(request: Request, task: Task) -> dict[str, Any]:
    """`results` is the download link while the zip is kept (gdpr_retrieval_expiry_seconds)."""
    link = ""
    data_dir = Path(request.app.state.services.config.data_dir)
    if task.status == SUCCESS and tasks.retrieval_path(data_dir, task.task_id).exists():
        path = f"{RETRIEVALS}/{task.task_id}/download"
        link = (
            f"{str(request.base_url).rstrip('/')}{path}?{urlencode({'token': request.query_params['token']})}"
        )
    return {
        "tracking_id": task.task_id,
        "status": task.status,
        "results": link,
        "requesting_user": task.requested_by,
        "compliance_type": task.payload["compliance_type"],
        "disclosure_type": task.payload["disclosure_type"],
        "project_id": task.project_id,
        "date_requested": _iso(task.created_at_ms),
        "distinct_ids": task.payload["distinct_ids"],
    }


Handler = Callable[[Request, GdprCaller], Awaitable[Response]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            caller = await run_in_threadpool(_caller, request)
            return await handler(request, caller)
        except RawEventsError as error:
            return gdpr_error(error)

    return endpoint


def _creator(kind: str) -> Handler:
    async def create(request: Request, caller: GdprCaller) -> Response:
        services: Services = request.app.state.services
        wanted = parse_request(await _body_fields(request))
        payload = {
            "distinct_ids": wanted.distinct_ids,
            "compliance_type": wanted.compliance_type,
            "disclosure_type": wanted.disclosure_type,
        }
        delay_ms = services.config.gdpr_deletion_delay_seconds * 1000 if kind == tasks.DELETION else 0
        task = await run_in_threadpool(
            services.registry.create_task,
            kind,
            caller.project.project_id,
            payload,
            caller.requested_by,
            delay_ms=delay_ms,
        )
        request.app.state.task_runner.wake()
        return _ok({"task_id": task.task_id}, 201)

    return create


def _lister(kind: str) -> Handler:
    async def listing(request: Request, caller: GdprCaller) -> Response:
        services: Services = request.app.state.services
        found = await run_in_threadpool(services.registry.project_tasks, caller.project.project_id, kind)
        shape = _deletion_result if kind == tasks.DELETION else lambda t: _retrieval_result(request, t)
        return _ok([shape(task) for task in found])

    return listing


async def deletion_status(request: Request, caller: GdprCaller) -> Response:
    task = await run_in_threadpool(_owned_task, request, caller, tasks.DELETION)
    return _ok(_deletion_result(task))


async def cancel_deletion(request: Request, caller: GdprCaller) -> Response:
    services: Services = request.app.state.services
    task = await run_in_threadpool(_owned_task, request, caller, tasks.DELETION)
    if task.status != PENDING or not await run_in_threadpool(services.registry.cancel_task, task.task_id):
        current = services.registry.task(task.task_id)
        status = current.status if current else task.status
        raise NotCancellable(f"deletion task {task.task_id} is {status} and can no longer be cancelled")
    return Response(status_code=204)


async def retrieval_status(request: Request, caller: GdprCaller) -> Response:
    task = await run_in_threadpool(_owned_task, request, caller, tasks.RETRIEVAL)
    return _ok(_retrieval_result(request, task))


async def retrieval_download(request: Request, caller: GdprCaller) -> Response:
    services: Services = request.app.state.services
    task = await run_in_threadpool(_owned_task, request, caller, tasks.RETRIEVAL)
    path = tasks.retrieval_path(Path(services.config.data_dir), task.task_id)
    if task.status == SUCCESS and not path.exists():
        raise NotFound(
            f"retrieval task {task.task_id}'s result has expired (zips are kept"
            f" {services.config.gdpr_retrieval_expiry_seconds} s): create a new retrieval"
        )
    if task.status != SUCCESS:
        raise NotFound(f"retrieval task {task.task_id} has no result to download (status {task.status})")
    return FileResponse(path, media_type="application/zip", filename=f"retrieval-{task.task_id}.zip")


def routes() -> list[BaseRoute]:
    table: list[tuple[str, Handler, list[str]]] = [
        (DELETIONS, _creator(tasks.DELETION), ["POST"]),
        (DELETIONS, _lister(tasks.DELETION), ["GET"]),
        (DELETIONS + "/{task_id}", deletion_status, ["GET"]),
        (DELETIONS + "/{task_id}", cancel_deletion, ["DELETE"]),
        (RETRIEVALS, _creator(tasks.RETRIEVAL), ["POST"]),
        (RETRIEVALS, _lister(tasks.RETRIEVAL), ["GET"]),
        (RETRIEVALS + "/{task_id}", retrieval_status, ["GET"]),
        (RETRIEVALS + "/{task_id}/download", retrieval_download, ["GET"]),
    ]
    found: list[BaseRoute] = []
    for path, handler, methods in table:
        endpoint = _endpoint(handler)
        found.append(Route(path, endpoint, methods=methods))
        found.append(Route(path + "/", endpoint, methods=methods))
    return found
