"""Request bodies to Python values: gzip under a size cap, form parameters, the `data` parameter
(raw JSON or base64 in any of the alphabets clients send), JSON, NDJSON.

Every failure is a `BadRequest` (or `PayloadTooLarge`), never an unexpected exception: bad input
must never become a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from isal import isal_zlib

from rawevents.errors import BadRequest, PayloadTooLarge

_GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # gzip container only
_ZLIB_AUTO_WBITS = 32 + isal_zlib.MAX_WBITS  # gzip or zlib ("deflate"), auto-detected
_WHITESPACE = b" \t\r\n"
_GZIP_ERRORS: tuple[type[BaseException], ...] = (isal_zlib.error, ValueError, EOFError)  # type: ignore[assignment]


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request exceeds max limit of {limit} bytes")


def gunzip_capped(body: bytes, limit: int, *, deflate: bool = False) -> bytes:
    """Decompress a gzip body (every member) without ever holding more than `limit` + 1 bytes of
    output: a gzip bomb fails with 413 after `limit` bytes, not after filling memory."""
    out = bytearray()
    data = body
    while data:
        decomp = isal_zlib.decompressobj(_ZLIB_AUTO_WBITS if deflate else _GZIP_WBITS)
        try:
            out += decomp.decompress(data, limit + 1 - len(out))
        except _GZIP_ERRORS as exc:
            raise BadRequest(f"invalid gzip body: {exc}") from exc
        if len(out) > limit or decomp.unconsumed_tail:
            raise too_large(limit)
        if not decomp.eof:
            raise BadRequest("invalid gzip body: truncated stream")
        data = decomp.unused_data.lstrip(b"\x00")  # members may be followed by zero padding
    return bytes(out)


def looks_like_json(body: bytes) -> bool:
    """A raw JSON / NDJSON body (object or array) rather than a form body."""
    stripped = body.lstrip(_WHITESPACE)
    if stripped.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark
        stripped = stripped[3:].lstrip(_WHITESPACE)
    return stripped[:1] in (b"{", b"[")


def parse_form(body: bytes) -> dict[str, str]:
    """`application/x-www-form-urlencoded` (also sent as `text/plain` by sendBeacon, or with no
    content type at all). Undecodable bytes survive as lone surrogates, so the JSON layer can
    report them per property."""
    text = body.decode("utf-8", "surrogateescape")
    params: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, errors="surrogateescape"):
        params[key] = value  # the last occurrence wins, as in the query string
    return params


def merge_params(query: Mapping[str, str], form: Mapping[str, str]) -> dict[str, str]:
    """Form and query parameters in one mapping; the query wins on conflict."""
    if not form:
        return dict(query)
    merged = dict(form)
    merged.update(query)
    return merged


def decode_data_param(data: str) -> bytes:
    """The `data` parameter as JSON bytes: raw JSON, or base64 (standard or URL-safe alphabet,
    missing padding, `+` turned into a space by form decoding, line breaks)."""
    text = data.strip()
    if not text:
        raise BadRequest("data, missing or empty")
    if text[0] in "{[":
        return text.encode("utf-8", "surrogateescape")
    cleaned = text.replace(" ", "+").replace("\n", "").replace("\r", "").replace("-", "+").replace("_", "/")
    cleaned = cleaned.rstrip("=")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("data, could not be decoded as base64 or JSON") from exc


@dataclass(frozen=True, slots=True)
class Payload:
    """Decoded request items. `items[i]` is a parsed JSON value, or `BadItem` for an NDJSON line
    that was not JSON. `lenient` is True when the fast parser refused the body and the tolerant one
    read it: only then can strings hold lone surrogates (invalid UTF-8), which callers must check."""

    items: list[Any]
    lenient: bool


@dataclass(frozen=True, slots=True)
class BadItem:
    message: str


def batch_items(payload: Payload, max_events: int) -> list[Any]:
    """The request's items, refusing an empty request (400) or one over `max_events` (413)."""
    if not payload.items:
        raise BadRequest("data, missing or empty")
    if len(payload.items) > max_events:
        raise PayloadTooLarge(f"request exceeds max limit of {max_events} events")
    return payload.items


def parse_payload(raw: bytes, *, ndjson: bool = False) -> Payload:
    """One JSON object, a JSON array of them, or NDJSON (one value per line)."""
    if not ndjson:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = _lenient_loads(raw)
            if not isinstance(value, BadItem):
                return Payload(value if type(value) is list else [value], True)
            lines = _lines(raw)
            if len(lines) > 1:
                return _parse_lines(lines)
            raise BadRequest(value.message) from None
        return Payload(value if type(value) is list else [value], False)
    return _parse_lines(_lines(raw))


def _lines(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\n") if line.strip(_WHITESPACE)]


def _parse_lines(lines: list[bytes]) -> Payload:
    items: list[Any] = []
    lenient = False
    for line in lines:
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            value = _lenient_loads(line)
            lenient |= not isinstance(value, BadItem)
            items.append(value)
    if len(items) == 1 and type(items[0]) is list:
        return Payload(items[0], lenient)
    return Payload(items, lenient)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _lenient_loads(raw: bytes) -> Any:
    """The standard library parser, which keeps lone surrogates (from `\\ud800` escapes or from
    invalid UTF-8 bytes) instead of refusing the whole body, so they can be reported per field."""
    try:
        text = raw.decode("utf-8", "surrogateescape")
        if text.startswith("\ufeff"):
            text = text[1:]
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return BadItem(f"invalid JSON: {exc}")
