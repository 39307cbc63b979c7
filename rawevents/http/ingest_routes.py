"""HTTP adapter for `/track`, `/import`, `/engage`, `/groups` (with and without trailing slash).

Reads the body under the size cap, hands plain data to rawevents.ingest, copies the `Reply` out and
adds CORS headers to every response (compat §6): the request's Origin is echoed with credentials
allowed (mixpanel-js sends `withCredentials`), never `*` when an Origin is present.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rawevents.errors import PayloadTooLarge
from rawevents.http.proxies import client_ip, trusted_proxies
from rawevents.ingest import IngestRequest, Reply, ingest
from rawevents.ingest.decode import too_large
from rawevents.ingest.pipeline import ENDPOINTS
from rawevents.ingest.responses import import_error, rate_limited
from rawevents.service import Services

ALLOW_METHODS = "GET, POST, OPTIONS"
PREFLIGHT_MAX_AGE = "86400"
RETRY_AFTER_SECONDS = 1


def cors_headers(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    headers = {"Access-Control-Expose-Headers": "Retry-After"}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Vary"] = "Origin"
    else:
        headers["Access-Control-Allow-Origin"] = "*"
    return headers


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _response(request: Request, reply: Reply) -> Response:
    headers = {**reply.headers, **cors_headers(request), "X-Content-Type-Options": "nosniff"}
    body = b"" if request.method == "HEAD" else reply.body
    return Response(body, status_code=reply.status, media_type=reply.content_type, headers=headers)


def preflight(request: Request) -> Response:
    headers = cors_headers(request)
    headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
    requested = request.headers.get("access-control-request-headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return Response(status_code=204, headers=headers)


class Gate:
    """Requests in progress (the event loop is single-threaded, so a plain counter is exact)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0


def _gate(request: Request, services: Services) -> Gate:
    gate: Gate | None = getattr(request.app.state, "ingest_gate", None)
    if gate is None:
        gate = request.app.state.ingest_gate = Gate(services.config.ingest_max_concurrent)
    return gate


def _handler(endpoint: str) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        if request.method == "OPTIONS":
            return preflight(request)
        services: Services = request.app.state.services
        gate = _gate(request, services)
        if gate.limit and gate.active >= gate.limit:
            return _response(request, rate_limited(RETRY_AFTER_SECONDS))
        gate.active += 1
        try:
            return await _handle(endpoint, request, services)
        finally:
            gate.active -= 1

    return handle


async def _handle(endpoint: str, request: Request, services: Services) -> Response:
    received_ms = int(time.time() * 1000)
    try:
        body = await read_body(request, services.config.max_request_bytes)
    except PayloadTooLarge as exc:
        return _response(request, import_error(413, exc.message))
    headers = request.headers
    reply = await ingest(
        services,
        IngestRequest(
            endpoint=endpoint,
            method=request.method,
            query=request.query_params,
            body=body,
            content_type=headers.get("content-type", ""),
            content_encoding=headers.get("content-encoding", ""),
            authorization=headers.get("authorization"),
            client_ip=client_ip(request, trusted_proxies(request)),
            host=headers.get("host", ""),
            received_ms=received_ms,
        ),
    )
    return _response(request, reply)


def routes() -> list[BaseRoute]:
    methods = ["GET", "POST", "HEAD", "OPTIONS"]
    result: list[BaseRoute] = []
    for endpoint in ENDPOINTS:
        handler = _handler(endpoint)
        result.append(Route(f"/{endpoint}", handler, methods=methods))
        result.append(Route(f"/{endpoint}/", handler, methods=methods))
    return result
