"""Ingestion response bodies as data, byte for byte as Mixpanel sends them (compat §3.5, §5.2, §5.3).

A `Reply` is status + body + content type + extra headers; the HTTP layer only copies it out.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
JAVASCRIPT = "text/javascript; charset=utf-8"
PNG = "image/png"

RATE_LIMITED_MESSAGE = "Project exceeded rate limits. Please retry the request with exponential backoff."
VALIDATION_FAILED = "some data points in the request failed validation"
INVALID_CREDENTIALS = "Invalid credentials"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FailedRecord:
    """One rejected event of a strict `/import`. Emitted with both `$insert_id` (Mixpanel's docs)
    and `insert_id` (its OpenAPI schema, and what mixpanel-go decodes)."""

    index: int
    insert_id: str | None
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "$insert_id": self.insert_id,
            "insert_id": self.insert_id,
            "field": self.field,
            "message": self.message,
        }


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(payload), JSON, headers or {})


# -- /track, /engage, /groups (and non-strict /import without verbose) ------------------------------


def received(ok: bool, *, verbose: bool, error: str | None = None) -> Reply:
    """`1`/`0` as text, or verbose `{"error":null,"status":1}` / `{"error":"<msg>","status":0}`."""
    if verbose:
        return _json({"error": None if ok else (error or VALIDATION_FAILED), "status": 1 if ok else 0})
    return Reply(200, b"1" if ok else b"0", TEXT)


# -- /import -----------------------------------------------------------------------------------------


def import_strict(imported: int, failed: list[FailedRecord]) -> Reply:
    if not failed:
        return _json({"code": 200, "num_records_imported": imported, "status": "OK"})
    return _json(
        {
            "code": 400,
            "error": VALIDATION_FAILED,
            "failed_records": [record.as_dict() for record in failed],
            "num_records_imported": imported,
            "status": "Bad Request",
        },
        400,
    )


def import_legacy(imported: int, ok: bool, *, verbose: bool, error: str | None = None) -> Reply:
    """Non-strict `/import`: `1`/`0`, or verbose with `status` as an integer (python, ruby and
    node SDKs check `status == 1`)."""
    if not verbose:
        return Reply(200, b"1" if ok else b"0", TEXT)
    return _json(
        {
            "code": 200,
            "error": None if ok else (error or VALIDATION_FAILED),
            "num_records_imported": imported,
            "status": 1 if ok else 0,
        }
    )


def import_error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """`{"code":N,"error":"<msg>","status":"<reason>"}`: 400, 401, 403, 413, 429, 503 on `/import`
    (and 401/413/429/503 on every ingestion endpoint)."""
    return _json({"code": status, "error": message, "status": _REASONS.get(status, "Error")}, status, headers)


def unauthorized(message: str = INVALID_CREDENTIALS) -> Reply:
    return import_error(401, message)


def rate_limited(retry_after: int) -> Reply:
    return import_error(429, RATE_LIMITED_MESSAGE, {"Retry-After": str(retry_after)})


# -- wrappers: img=1 and callback= -------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# A 1×1 fully transparent RGBA PNG (Mixpanel's OpenAPI calls the img=1 response "PNGPixel").
PIXEL_PNG = (
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00"))
    + _png_chunk(b"IEND", b"")
)

# A dotted path of JavaScript identifiers (`cb`, `mixpanel._jsc.abc`, `$jsonp_1`), with optional
# `[123]` / `["key"]` indexing, or the anonymous no-op mixpanel-js uses. Nothing else is echoed.
_CALLBACK = re.compile(r'[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*|\[\d{1,10}\]|\["[\w$]{1,64}"\])*', re.ASCII)
_NOOP_CALLBACK = "(function(){})"
MAX_CALLBACK_LENGTH = 256


def valid_callback(name: str) -> bool:
    if len(name) > MAX_CALLBACK_LENGTH:
        return False
    return name == _NOOP_CALLBACK or _CALLBACK.fullmatch(name) is not None


def wrap(reply: Reply, *, img: bool, callback: str | None) -> Reply:
    """`img=1` → the pixel (status kept); `callback=fn` → `fn(<body>)` as JavaScript. Only
    successful bodies are wrapped: errors (4xx/5xx) go out as they are."""
    if reply.status >= 400:
        return reply
    if img:
        return Reply(reply.status, PIXEL_PNG, PNG, reply.headers)
    if callback and valid_callback(callback):
        return Reply(reply.status, callback.encode() + b"(" + reply.body + b")", JAVASCRIPT, reply.headers)
    return reply
