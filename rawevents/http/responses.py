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
