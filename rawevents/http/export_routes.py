"""`/api/2.0/export`: HTTP adapter over rawevents.export (parse → auth → plan → stream).

The response is a raw ASGI streaming response: headers are sent once the scan has produced its
first bytes (or after FIRST_BYTE_WAIT), so every error found before that is a normal JSON 4xx/5xx;
an error after it drops the connection (truncated body), never an in-band error line.

Admission (rawevents.export.admission) happens before the scan starts: an export over the
server-wide or per-project caps gets its 503/429 with Retry-After before any byte of a 200. A
client that accepts nothing for `export_idle_timeout_seconds` is disconnected, which frees its
slot and everything its export held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from rawevents.auth import authenticate_query
from rawevents.budget import ExportBudget
from rawevents.errors import PayloadTooLarge, RawEventsError
from rawevents.export.admission import ExportAdmission
from rawevents.export.cursor import CURSOR_HEADER, apply_cursor, parse_cursor_params
from rawevents.export.params import TIME_HEADER, build_plan, parse_export_params
from rawevents.export.ratelimit import ExportLease
from rawevents.export.stream import ExportStream, accepts_gzip
from rawevents.http.protocol import CONNECTION_EXTENSION
from rawevents.http.responses import query_api_error
from rawevents.metrics import ExportTracker
from rawevents.projects import Project
from rawevents.service import Services

log = logging.getLogger(__name__)

FIRST_BYTE_WAIT = 0.5  # seconds to wait for the first rows before committing to a 200
MAX_FORM_BYTES = 1024 * 1024  # a query's parameters, not data: anything bigger is refused
_FORM_TYPES = ("application/x-www-form-urlencoded", "text/plain", "")


class InternalError(RawEventsError):
    code = "internal_error"
    status = 500


async def request_params(request: Request) -> dict[str, str]:
    """Query parameters merged over a form body (query wins), as Mixpanel's servers merge them."""
    params: dict[str, str] = {}
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in _FORM_TYPES:
            body = b""
            async for part in request.stream():
                body += part
                if len(body) > MAX_FORM_BYTES:
                    raise PayloadTooLarge(f"request body larger than {MAX_FORM_BYTES} bytes")
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    params.update(parse_qsl(request.url.query, keep_blank_values=True))
    return params


def authenticate(request: Request, services: Services, params: dict[str, str]) -> Project:
    return authenticate_query(
        services.registry,
        request.headers.get("authorization"),
        params,
        legacy_signature=services.config.legacy_signature_auth,
    )


def admission(request: Request) -> ExportAdmission:
    state = request.app.state
    gate: ExportAdmission | None = getattr(state, "export_admission", None)
    if gate is None:
        gate = state.export_admission = ExportAdmission.from_config(state.services.config)
    return gate


async def export(request: Request) -> Response:
    arrived = time.monotonic()
    services: Services = request.app.state.services
    try:
        params = await request_params(request)
        project = authenticate(request, services, params)
        plan = build_plan(parse_export_params(params, project), project)
        headers = {"content-type": "text/plain; charset=utf-8", "vary": "Accept-Encoding"}
        cursor = parse_cursor_params(params, project.project_id)
        if cursor is not None:  # the incremental extension; plain Mixpanel requests never get here
            plan, headers[CURSOR_HEADER] = apply_cursor(plan, cursor, services.store)
        if plan.time_utc:  # extension: tells the client its `time_utc` was honoured
            headers[TIME_HEADER] = "utc"
    except RawEventsError as error:
        return query_api_error(request, error)
    gzip = accepts_gzip(request.headers.get("accept-encoding"))
    if gzip:
        headers["content-encoding"] = "gzip"
    if request.method == "HEAD":
        return _without_length(Response(status_code=200), headers)
    try:
        lease = await admission(request).admit(project.project_id)
    except RawEventsError as error:
        return query_api_error(request, error)
    store = services.store
    budget = ExportBudget.from_config(services.config)
    tracker = services.metrics.export_started(arrived)
    # Runs in the reader thread: the store's planning and its scan both stay off the event loop.
    stream = ExportStream(
        lambda: services.metrics.scanning(store.export_chunks(plan)),
        gzip=gzip,
        pool=services.compression,
        capacity=budget.buffer_blocks,
        nice=services.config.export_nice,
    ).start()
    try:
        await stream.ready(FIRST_BYTE_WAIT)
    except BaseException as error:
        stream.close()
        lease.release()
        tracker.end("failed")
        if isinstance(error, RawEventsError):
            return query_api_error(request, error)
        if not isinstance(error, Exception):
            raise
        log.exception("export failed before the first byte")
        return query_api_error(request, InternalError("export failed: internal error, see the server log"))
    return ExportResponse(stream, lease, headers, tracker, services.config.export_idle_timeout_seconds)


def _without_length(response: Response, headers: dict[str, str]) -> Response:
    # Starlette would announce `content-length: 0` for a response built without a body.
    response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return response


class ReaderStalled(Exception):
    """The client accepted no data for the idle timeout."""


class ExportResponse(Response):
    """Streams an ExportStream straight to the ASGI server, watching for the client leaving.

    `send` waits while the transport's write buffer is full (uvicorn's flow control), so a slow
    reader pauses the scan; one that accepts nothing for `idle_timeout` seconds is dropped."""

    def __init__(
        self,
        stream: ExportStream,
        lease: ExportLease,
        headers: dict[str, str],
        tracker: ExportTracker,
        idle_timeout: float = 0,
    ) -> None:
        super().__init__(status_code=200)
        _without_length(self, headers)
        self.stream = stream
        self.lease = lease
        self.tracker = tracker
        self.idle_timeout = idle_timeout or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self.stream

        async def watch_disconnect() -> None:
            while True:
                message: Any = await receive()
                if message["type"] == "http.disconnect":
                    stream.close()  # stops the scan; the loop below sees the end
                    return

        async def send_within(message: dict[str, Any]) -> None:
            try:
                await asyncio.wait_for(send(message), self.idle_timeout)
            except TimeoutError:
                raise ReaderStalled from None

        watcher = asyncio.create_task(watch_disconnect())
        outcome = "aborted"  # unless it ends below: cancelled (server stopping) or client gone
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while (piece := await stream.next_piece()) is not None:
                self.tracker.sent(len(piece))
                await send_within({"type": "http.response.body", "body": piece, "more_body": True})
            if not watcher.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                outcome = "finished"
        except ReaderStalled:
            log.warning("export ended: the client accepted no data for %ss", self.idle_timeout)
            await _drop_connection(scope)
        except Exception:
            outcome = "aborted" if watcher.done() else "failed"
            raise
        finally:
            watcher.cancel()
            stream.close()
            self.lease.release()
            self.tracker.end(outcome)


async def _drop_connection(scope: Scope) -> None:
    """Reset the connection (what is buffered for the client is discarded). Without the server's
    abort hook, returning with the body incomplete makes the server close it gracefully."""
    abort = scope.get("extensions", {}).get(CONNECTION_EXTENSION, {}).get("abort")
    if abort is not None:
        abort()
        await asyncio.sleep(0)  # let the server see the connection lost before the app returns


def routes() -> list[BaseRoute]:
    methods = ["GET", "POST", "HEAD"]
    return [
        Route("/api/2.0/export", export, methods=methods),
        Route("/api/2.0/export/", export, methods=methods),
    ]
