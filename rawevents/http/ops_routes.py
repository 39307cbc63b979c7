"""Operations endpoints (`/healthz`, `/readyz`, `/metrics`) and the middleware counting responses.

The probes and the metrics carry no project auth: orchestrators and scrapers hold no project
credentials, and nothing here reveals event data. Restrict them at the network instead (README,
Deployment). Liveness says only that the process answers; readiness goes through the store (a
durable write through the writer, read back), so a stuck writer or a failing disk takes the
instance out of rotation without restarting it.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rawevents.errors import StorageError
from rawevents.http.responses import json_response, query_api_error
from rawevents.metrics import CONTENT_TYPE
from rawevents.service import Services

log = logging.getLogger(__name__)

READY_TIMEOUT = 5.0  # seconds the store gets to commit and read back the probe row

# path (trailing slash removed) → (handler label, rate-limited API label); anything else: "other".
_HANDLERS: dict[str, tuple[str, str | None]] = {
    "/track": ("track", "ingest"),
    "/import": ("import", "ingest"),
    "/engage": ("engage", "ingest"),
    "/groups": ("groups", "ingest"),
    "/api/2.0/export": ("export", "export"),
    "/healthz": ("healthz", None),
    "/readyz": ("readyz", None),
    "/metrics": ("metrics", None),
}
_OTHER: tuple[str, str | None] = ("other", None)


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        await asyncio.to_thread(services.store.check, READY_TIMEOUT)
    except StorageError as exc:
        log.warning("not ready: %s", exc.message)
        return query_api_error(request, exc)
    except Exception:
        log.exception("readiness probe failed")
        return query_api_error(request, StorageError("the event store failed the readiness probe"))
    return json_response({"status": "ready"})


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    # Off the loop: collecting sizes the data directory's files.
    body = await asyncio.to_thread(services.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE)


class ResponseMetrics:
    """Counts every HTTP response by handler and status (429s also as rate-limit rejections)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services | None = getattr(scope["app"].state, "services", None)
        if scope["type"] != "http" or services is None:
            await self.app(scope, receive, send)
            return
        handler, api = _HANDLERS.get(scope["path"].rstrip("/"), _OTHER)
        counted = services.metrics.response
        started = False

        async def send_counted(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                counted(handler, api, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:
            if not started:
                counted(handler, api, 500)
            raise


def routes() -> list[BaseRoute]:
    methods = ["GET", "HEAD"]
    return [
        Route("/healthz", healthz, methods=methods),
        Route("/readyz", readyz, methods=methods),
        Route("/metrics", metrics, methods=methods),
    ]
