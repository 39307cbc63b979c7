"""Incremental-export cursors: a rawevents extension to `/api/2.0/export`, off the compatibility path.

Every stored event has a position in ingestion order that the store defines (DuckDB: `seq`,
assigned in commit order by the single writer; ClickHouse: an ingestion-time watermark). An
export asked with `after_cursor=C` returns only the events stored after C, and its
`X-Rawevents-Cursor` response header carries the cursor H the answer reaches up to: every event
with C < position ≤ H, nothing else. Repeating the export with `after_cursor=H` sees each late
event exactly once. `upto_cursor=H` pins the upper end, so a run cut short can re-request the
same slice and get the same bytes.

A cursor is opaque to clients: URL-safe base64 of a small JSON object naming its format version,
the store's kind of position and the project, so a cursor from another project, another store
kind or a newer format is a clear 400 instead of a silent wrong answer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

import orjson

from rawevents.errors import BadRequest
from rawevents.storage.base import ExportPlan

CURSOR_HEADER = "x-rawevents-cursor"  # lower case, as ASGI wants header names
FORMAT_VERSION = 1
_TRUE = {"1", "true"}


@dataclass(frozen=True, slots=True)
class Cursor:
    kind: str  # the store's kind of position ("seq" for DuckDB)
    project_id: int
    position: int

    def encode(self) -> str:
        raw = orjson.dumps(
            {"v": FORMAT_VERSION, "kind": self.kind, "p": self.project_id, "pos": self.position}
        )
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class CursorRequest:
    """The cursor parameters of one export: `None` bounds mean "from the start" / "up to now"."""

    after: Cursor | None
    upto: Cursor | None


class PositionSource(Protocol):
    cursor_kind: str

    def ingest_position(self) -> int: ...


def parse_cursor_params(params: Mapping[str, str], project_id: int) -> CursorRequest | None:
    """None when the request uses no cursor parameter (a plain Mixpanel request)."""
    after = _decode(params, "after_cursor", project_id)
    upto = _decode(params, "upto_cursor", project_id)
    flag = params.get("cursor", "").strip().lower()
    if after is None and upto is None and flag not in _TRUE:
        return None
    return CursorRequest(after, upto)


def _decode(params: Mapping[str, str], name: str, project_id: int) -> Cursor | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        cursor = Cursor(str(data["kind"]), int(data["p"]), int(data["pos"]))
        version = int(data["v"])
    except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
        raise BadRequest(f"{name} is not a cursor issued by this server, got {raw!r}") from exc
    if version != FORMAT_VERSION:
        raise BadRequest(f"{name} has cursor format version {version}; this server reads {FORMAT_VERSION}")
    if cursor.project_id != project_id:
        raise BadRequest(f"{name} belongs to project {cursor.project_id}, not to project {project_id}")
    return cursor


def apply_cursor(plan: ExportPlan, request: CursorRequest, store: PositionSource) -> tuple[ExportPlan, str]:
    """The plan limited to (after, upto], and the cursor to send back (the upper bound).

    Without `upto_cursor` the upper bound is the store's position when the export starts: every
    event at or below it is committed, so the answer is exactly the slice up to it."""
    after, upto, bound = cursor_bounds(request, plan.project_id, store)
    return replace(plan, after_position=after, upto_position=upto), bound


def cursor_bounds(request: CursorRequest, project_id: int, store: PositionSource) -> tuple[int, int, str]:
    """The positions (after, upto] a request's cursors select, and the cursor of the upper bound."""
    now = store.ingest_position()
    for name, cursor in (("after_cursor", request.after), ("upto_cursor", request.upto)):
        if cursor is None:
            continue
        if cursor.kind != store.cursor_kind:
            raise BadRequest(f"{name} is a {cursor.kind!r} cursor; this store issues {store.cursor_kind!r}")
        if cursor.position > now:
            raise BadRequest(f"{name} is ahead of this server's store (was the store replaced?)")
    after = request.after.position if request.after is not None else 0
    upto = request.upto.position if request.upto is not None else now
    if upto < after:
        raise BadRequest("upto_cursor is before after_cursor")
    return after, upto, Cursor(store.cursor_kind, project_id, upto).encode()
