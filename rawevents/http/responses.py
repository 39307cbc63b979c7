"""Mixpanel's response shapes, shared by every route module."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from rawevents.errors import RateLimited, RawEventsError, ServerBusy


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def request_target(request: Request) -> str:
    """`path?query` exactly as received, for the `request` field of query-API errors."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def query_api_error(request: Request, error: RawEventsError) -> Response:
    """Export/query API error body: `{"request": "<path?query>", "error": "<message>"}`."""
    headers = None
    if isinstance(error, RateLimited | ServerBusy):
        headers = {"Retry-After": str(error.retry_after)}
    return json_response({"request": request_target(request), "error": error.message}, error.status, headers)


MAX_ECHOED_REQUEST = 2048  # characters of an unparsed request target echoed back


def unparsed_request_error(target: str, message: str) -> bytes:
    """A 400 body for a request the HTTP layer could not parse, in the shape of the endpoint its
    (possibly partial) target names: query API, `/track`-style verbose, or `/import`."""
    path = target.split("?", 1)[0]
    if path.startswith("/api/"):
        return orjson.dumps({"request": target[:MAX_ECHOED_REQUEST], "error": message})
    if path.rstrip("/") in ("/track", "/engage", "/groups"):
        return orjson.dumps({"error": message, "status": 0})
    return orjson.dumps({"code": 400, "error": message, "status": "Bad Request"})
