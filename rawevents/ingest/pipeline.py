"""One ingestion request, end to end: decode → authenticate → normalise → durable write → reply.

Framework-free (asyncio only): the route module hands in an `IngestRequest` whose body was read
under the size cap, and gets back a `Reply`. A request is acknowledged only after the store's group
commit holding its rows has resolved; a failed write is a 503, never a 200 for unwritten data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from rawevents import auth
from rawevents.errors import (
    BadRequest,
    RateLimited,
    RawEventsError,
    StorageError,
    Unauthorized,
)
from rawevents.ingest import responses, workers
from rawevents.ingest.decode import (
    batch_items,
    decode_data_param,
    gunzip_capped,
    looks_like_json,
    merge_params,
    parse_form,
    parse_payload,
    too_large,
)
from rawevents.ingest.events import TOO_OLD, EventBatch, EventContext, normalize_events
from rawevents.ingest.profiles import apply_update, parse_updates
from rawevents.ingest.responses import FailedRecord, Reply
from rawevents.projects import Project, ProjectRegistry

if TYPE_CHECKING:  # the service owns the ingest workers: import it for types only
    from rawevents.service import Services

log = logging.getLogger(__name__)

ENDPOINTS = ("track", "import", "engage", "groups")
_DAY_MS = 86_400_000
# Work on bodies at least this large runs on a worker thread, smaller bodies inline. Measured on 2
# cores (4-8 clients, gzip batches of 2000 events ≈ 450 KB decoded): inline is ~8% faster, since
# parsing and normalising hold the GIL and a thread hop only adds switching; so only bodies big
# enough to stall the loop for tens of milliseconds leave it, to keep small requests responsive.
OFFLOAD_MIN_BYTES = 2 * 1024 * 1024

T = TypeVar("T")


@dataclass(slots=True)
class IngestRequest:
    """An ingestion request as plain data. `body` is the raw body (possibly gzip), already read
    under `max_request_bytes`; `query` holds the URL query parameters (first value per name)."""

    endpoint: str  # "track", "import", "engage" or "groups"
    method: str
    query: Mapping[str, str]
    body: bytes = b""
    content_type: str = ""
    content_encoding: str = ""
    authorization: str | None = None
    client_ip: str | None = None
    host: str = ""
    received_ms: int = 0


@dataclass(frozen=True, slots=True)
class _Flags:
    verbose: bool
    strict: bool
    img: bool
    callback: str | None


def host_name(host: str) -> str:
    """`$mp_api_endpoint`: the request's Host without the port (`api.example.com:8000` →
    `api.example.com`, `[::1]:8000` → `[::1]`), as Mixpanel records `api.mixpanel.com`."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


def _flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").strip().lower() in ("1", "true")


def _flags(endpoint: str, params: Mapping[str, str]) -> _Flags:
    return _Flags(
        _flag(params, "verbose"),
        endpoint == "import" and _flag(params, "strict"),
        _flag(params, "img"),
        params.get("callback"),
    )


async def ingest(services: Services, request: IngestRequest) -> Reply:
    """Handle one request; never raises for bad input (every failure becomes Mixpanel's body)."""
    query = request.query
    flags = _flags(request.endpoint, query)
    services.metrics.ingest_request(request.endpoint, len(request.body))
    try:
        reply, flags = await _ingest(services, request)
    except RawEventsError as exc:
        reply = _refuse(services, request.endpoint, flags, exc)
    return responses.wrap(reply, img=flags.img, callback=flags.callback)


def _refuse(services: Services, endpoint: str, flags: _Flags, exc: RawEventsError) -> Reply:
    services.metrics.ingest_refused(endpoint, exc.code)
    return _error_reply(endpoint, flags, exc)


def _error_reply(endpoint: str, flags: _Flags, exc: RawEventsError) -> Reply:
    if isinstance(exc, RateLimited):
        return responses.rate_limited(exc.retry_after)
    if isinstance(exc, StorageError):
        return responses.import_error(503, exc.message, {"Retry-After": "1"})
    if exc.status in (401, 403, 413):
        return responses.import_error(exc.status, exc.message)
    # Bad input (undecodable body, invalid JSON, nothing sent).
    if endpoint == "import":
        if flags.strict:
            return responses.import_error(400, exc.message)
        return responses.import_legacy(0, False, verbose=flags.verbose, error=exc.message)
    return responses.received(False, verbose=flags.verbose, error=exc.message)


async def _offload(size: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if size >= OFFLOAD_MIN_BYTES:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)


async def _ingest(services: Services, request: IngestRequest) -> tuple[Reply, _Flags]:
    config = services.config
    limit = config.max_request_bytes
    received_ms = request.received_ms or int(time.time() * 1000)
    body = request.body
    if len(body) > limit:
        raise too_large(limit)
    encoding = request.content_encoding.strip().lower()
    if (
        services.ingest_workers is not None
        and request.endpoint == "import"
        and request.method != "HEAD"
        and encoding in ("gzip", "x-gzip")
        and len(body) >= workers.MIN_GZIP_BYTES
        and request.content_type.split(";")[0].strip().lower() in workers.JSON_TYPES
    ):
        # A large gzip JSON /import (what batch importers send): everything after authentication,
        # from gunzip to finished rows, runs in a worker process, off this process's GIL.
        query = request.query
        flags = _flags("import", query)
        importer = _authenticate_import(services.registry, request, query)
        packed = await services.ingest_workers.import_batch(
            workers.ImportJob(
                body,
                limit,
                "ndjson" in request.content_type.lower(),
                config.max_batch_events,
                _event_context(request, query, flags, received_ms),
                importer,
            )
        )
        await _write(services, packed)
        _account(services, "import", packed.stored, _rejections(packed.failed), {"ignored": packed.dropped})
        return _events_reply("import", flags, packed), flags
    if encoding in ("gzip", "x-gzip", "deflate"):
        body = await _offload(len(body) * 4, gunzip_capped, body, limit, deflate=encoding == "deflate")
    elif encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding: {request.content_encoding}")

    raw: bytes | None = None
    form: dict[str, str] = {}
    if looks_like_json(body):
        raw = body
    elif body:
        form = parse_form(body)
    params = merge_params(request.query, form)
    endpoint = request.endpoint
    flags = _flags(endpoint, params)

    try:
        if request.method == "HEAD":
            return responses.received(True, verbose=flags.verbose), flags
        project = _authenticate_import(services.registry, request, params) if endpoint == "import" else None
        if raw is None:
            raw = decode_data_param(params.get("data", ""))
        ndjson = raw is body and "ndjson" in request.content_type.lower()
        payload = await _offload(len(raw), parse_payload, raw, ndjson=ndjson)
        items = batch_items(payload, config.max_batch_events)
        resolve = _token_resolver(services.registry)
        if endpoint in ("engage", "groups"):
            return await _profiles(services, endpoint, items, flags, resolve), flags

        ctx = _event_context(request, params, flags, received_ms, config.track_max_age_days)
        batch = await _offload(
            len(raw),
            normalize_events,
            items,
            ctx,
            project=project,
            resolve=resolve if project is None else None,
            lenient=payload.lenient,
        )
        await _write(services, batch)
    except RawEventsError as exc:
        return _refuse(services, endpoint, flags, exc), flags
    _account(services, endpoint, batch.stored, _rejections(batch.failed), _drops(batch))
    return _events_reply(endpoint, flags, batch), flags


def _drops(batch: EventBatch) -> dict[str, int]:
    return {"unknown_token": batch.unknown_token, "ignored": batch.dropped - batch.unknown_token}


def _rejections(failed: list[FailedRecord]) -> dict[str, int]:
    return Counter("too_old" if record.message == TOO_OLD else "invalid" for record in failed)


def _account(
    services: Services, endpoint: str, stored: int, rejected: Mapping[str, int], drops: Mapping[str, int]
) -> None:
    """Count what became of a batch's events and log every event that was not stored (unless
    only `$ignore` dropped it: the client asked for that) with its reason and count."""
    dropped = {reason: count for reason, count in drops.items() if count}
    services.metrics.ingest_batch(endpoint, stored, rejected, dropped)
    lost = {**rejected, **dropped}
    if lost:
        level = logging.INFO if lost.keys() == {"ignored"} else logging.WARNING
        reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(lost.items()))
        noun = "updates" if endpoint in ("engage", "groups") else "events"
        total = sum(lost.values())
        log.log(level, "/%s: %d of %d %s not stored (%s)", endpoint, total, stored + total, noun, reasons)


def _event_context(
    request: IngestRequest, params: Mapping[str, str], flags: _Flags, received_ms: int, max_age_days: int = 0
) -> EventContext:
    endpoint = request.endpoint
    ip_param = params.get("ip", "").strip()
    return EventContext(
        endpoint=endpoint,
        strict=flags.strict,
        received_ms=received_ms,
        processed_ms=int(time.time() * 1000),
        host=host_name(request.host),
        ip_fallback=ip_param == "1" if endpoint == "track" else not flags.strict,
        client_ip=request.client_ip if ip_param != "0" else None,
        max_age_ms=max_age_days * _DAY_MS if endpoint == "track" else 0,
        restore=endpoint == "import" and _flag(params, "restore"),
    )


def _events_reply(endpoint: str, flags: _Flags, batch: EventBatch | workers.TableBatch) -> Reply:
    ok = batch.accepted > 0
    error = batch.failed[0].message if batch.failed and not ok else None
    if endpoint == "track":
        return responses.received(ok, verbose=flags.verbose, error=error)
    if flags.strict:
        return responses.import_strict(batch.stored, batch.failed)
    return responses.import_legacy(batch.stored, ok, verbose=flags.verbose)


async def _write(services: Services, batch: EventBatch | workers.TableBatch) -> None:
    if not batch.stored:
        return
    rows = batch.table if isinstance(batch, workers.TableBatch) else batch.table()
    try:
        await asyncio.wrap_future(services.store.submit_events(rows))
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError("the event store could not write this batch; retry") from exc


async def _profiles(
    services: Services,
    endpoint: str,
    items: list[Any],
    flags: _Flags,
    resolve: Callable[[str], Project | None],
) -> Reply:
    kind = "user" if endpoint == "engage" else "group"
    batch = parse_updates(items, kind=kind, now_ms=int(time.time() * 1000), resolve=resolve)
    futures = [
        asyncio.wrap_future(
            services.store.submit_profile_updates(
                target.project.project_id, target.kind, target.group_key, updates, apply_update
            )
        )
        for target, updates in batch.updates.values()
    ]
    if futures:
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise StorageError("the profile store could not write this batch; retry") from result
    rejected = {"invalid": len(batch.errors)} if batch.errors else {}
    stored = batch.accepted - batch.unknown_token
    _account(services, endpoint, stored, rejected, {"unknown_token": batch.unknown_token})
    ok = batch.accepted > 0
    error = batch.errors[0] if batch.errors and not ok else None
    return responses.received(ok, verbose=flags.verbose, error=error)


def _token_resolver(registry: ProjectRegistry) -> Callable[[str], Project | None]:
    """Token → project, looked up once per token per request."""
    cache: dict[str, Project | None] = {}

    def resolve(token: str) -> Project | None:
        if token not in cache:
            try:
                cache[token] = registry.project_by_token(token)
            except (UnicodeError, ValueError):
                cache[token] = None
        return cache[token]

    return resolve


def _authenticate_import(
    registry: ProjectRegistry, request: IngestRequest, params: Mapping[str, str]
) -> Project:
    """Service account + project_id, project secret, or token as Basic username; without any
    Authorization header, the legacy `api_key` parameter (a project token) of old SDKs."""
    try:
        project = auth.authenticate_import(registry, request.authorization, params)
    except RawEventsError as exc:
        if exc.status == 401:
            message = responses.INVALID_CREDENTIALS if params.get("project_id") else auth.INVALID_SECRET
            if isinstance(exc, auth.ServiceAccountUnauthorized):
                message = exc.message
            raise type(exc)(message) from exc
        raise
    except (UnicodeError, ValueError) as exc:
        raise Unauthorized(responses.INVALID_CREDENTIALS) from exc
    if project is not None:
        return project
    api_key = params.get("api_key", "")
    if api_key:
        try:
            found = registry.project_by_token(api_key)
        except (UnicodeError, ValueError):
            found = None
        if found is not None:
            return found
    raise Unauthorized(responses.INVALID_CREDENTIALS)
