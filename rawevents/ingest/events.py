"""Event normalisation and validation (compat §5.2, §5.3, §5.5): decoded JSON items in, the
stored columns (with the export line assembled once) and per-record failures out.

This is the hot path of ingestion, so each event is handled in one pass over its own parsed dict:
the dict is mutated in place (never copied), checks are `type(x) is …` comparisons, and the
result is kept as columns, which become the Arrow table the store inserts without a per-row step.
The line is assembled as UTF-8 bytes straight from orjson's output: decoding each body to `str`,
concatenating and encoding again for Arrow cost about as much as serialising it (profile in
docs/performance.md). The line head (`{"event":…,"properties":{"time":`) is built once per event
name of a batch.
"""

from __future__ import annotations

import array
import hashlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

from rawevents import identity
from rawevents.eventline import line_head
from rawevents.ingest.responses import FailedRecord
from rawevents.projects import Project
from rawevents.storage.base import INCOMING_SCHEMA, StoredEvent
from rawevents.timeutil import local_seconds, offset_ms_at, zone

MIN_TIME_MS = 31_536_000_000  # 1971-01-01T00:00:00Z: strict /import rejects anything earlier
MAX_FUTURE_MS = 3_600_000  # strict /import rejects events more than an hour ahead
MS_THRESHOLD = 1e10  # `time` at or above this is milliseconds (unambiguous given the 1971 floor)
MAX_STRING_BYTES = 255  # strings are truncated to 255 UTF-8 bytes, on a code-point boundary
INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}", re.ASCII)
DISALLOWED_IDS = frozenset(
    {
        "00000000-0000-0000-0000-000000000000",
        "anon",
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "<nil>",
        "0",
        "-1",
        "true",
        "false",
        "[]",
        "{}",
    }
)
_HOUR_MS = 3_600_000
TOO_OLD = "'properties.time' is invalid: too old for /track, send it to /import"
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TO_LETTER = bytes(_LETTERS[i % len(_LETTERS)] for i in range(256))


def new_insert_id() -> str:
    """36 random ASCII letters, the shape of Mixpanel's generated `$insert_id`s."""
    return os.urandom(36).translate(_TO_LETTER).decode("ascii")


def ip_distinct_id(ip: str) -> str:
    """A stable distinct_id for events without one, derived from the client IP (not reversible)."""
    return "$ip:" + hashlib.sha256(ip.encode("utf-8", "replace")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class EventContext:
    """What the request contributes to every event in it."""

    endpoint: str  # "track" or "import"
    strict: bool  # strict /import validation (compat §5.3)
    received_ms: int  # `$mp_api_timestamp_ms`: when the request arrived
    processed_ms: int  # `mp_processing_time_ms`, and the server time for events without `time`
    host: str  # `$mp_api_endpoint`
    ip_fallback: bool  # derive a missing distinct_id from the IP (/track ip=1, non-strict /import)
    client_ip: str | None
    max_age_ms: int = 0  # /track only: drop events older than this (0: keep every age)
    # /import?restore=1 (a rawevents extension): the events are an export being restored, so the
    # server adds none of its own properties and the rows export again byte for byte.
    restore: bool = False


@dataclass(slots=True)
class EventBatch:
    """The normalised events as columns (one entry per stored event, INCOMING_SCHEMA's order)."""

    project_ids: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    distinct_ids: list[str | None] = field(default_factory=list)
    insert_ids: list[str] = field(default_factory=list)
    time_pos: list[int] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)  # UTF-8, newline included
    # The identity links the events make (rawevents.identity), by row: most events make none
    links: dict[int, identity.Link] = field(default_factory=dict)
    failed: list[FailedRecord] = field(default_factory=list)
    dropped: int = 0  # valid but discarded: `$ignore`, or a token no project has
    unknown_token: int = 0  # of `dropped`: events whose token no project has

    @property
    def stored(self) -> int:
        return len(self.lines)

    @property
    def accepted(self) -> int:
        return len(self.lines) + self.dropped

    @property
    def rows(self) -> list[StoredEvent]:
        """The events as rows (for callers that look at single events)."""
        no_link = (identity.NO_LINK, None, None)
        return [
            StoredEvent(
                project_id,
                time_ms,
                event,
                distinct_id,
                insert_id,
                time_pos,
                line.decode(),
                *self.links.get(i, no_link),
            )
            for i, (project_id, time_ms, event, distinct_id, insert_id, time_pos, line) in enumerate(
                zip(
                    self.project_ids,
                    self.times,
                    self.events,
                    self.distinct_ids,
                    self.insert_ids,
                    self.time_pos,
                    self.lines,
                    strict=True,
                )
            )
        ]

    def table(self) -> pa.Table:
        """The events as one Arrow table of INCOMING_SCHEMA, what the store inserts. Columns are
        built from their buffers (`pa.array` on Python lists would also import pyarrow's pandas
        shim, a second of CPU in each worker process when pandas is installed)."""
        return pa.Table.from_arrays(
            [
                _int_array(self.project_ids, "i", pa.int32()),
                _int_array(self.times, "q", pa.int64()),
                _text_array(self.events),
                _optional_text_array(self.distinct_ids),
                _text_array(self.insert_ids),
                _int_array(self.time_pos, "i", pa.int32()),
                _string_array(self.lines),
                *self._link_columns(),
            ],
            schema=INCOMING_SCHEMA,
        )

    def _link_columns(self) -> list[pa.Array]:
        """`link_kind`, `link_source`, `link_target`: built from the few linking rows."""
        count = len(self.lines)
        if not self.links:
            return [
                _int_array([0] * count, "b", pa.int8()),
                pa.nulls(count, pa.string()),
                pa.nulls(count, pa.string()),
            ]
        kinds = [identity.NO_LINK] * count
        sources: list[str | None] = [None] * count
        targets: list[str | None] = [None] * count
        for row, (kind, source, target) in self.links.items():
            kinds[row], sources[row], targets[row] = kind, source, target
        return [
            _int_array(kinds, "b", pa.int8()),
            _optional_text_array(sources),
            _optional_text_array(targets),
        ]


def _int_array(values: list[int], typecode: str, kind: pa.DataType) -> pa.Array:
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(array.array(typecode, values))])


def _string_array(values: list[bytes], validity: pa.Buffer | None = None) -> pa.Array:
    """UTF-8 values as one string array: one join, offsets from the lengths (orjson's output
    and encoded `str`s are valid UTF-8, so nothing is converted or checked per value)."""
    offsets = array.array("i", accumulate(map(len, values), initial=0))
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def _text_array(values: list[str]) -> pa.Array:
    data = "".join(values).encode()
    if len(data) != sum(map(len, values)):  # non-ASCII: byte lengths differ from lengths
        return _string_array([value.encode() for value in values])
    offsets = array.array("i", accumulate(map(len, values), initial=0))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _optional_text_array(values: list[str | None]) -> pa.Array:
    if None not in values:
        return _text_array(values)  # type: ignore[arg-type]
    bits = bytearray((len(values) + 7) // 8)
    for i, value in enumerate(values):
        if value is not None:
            bits[i >> 3] |= 1 << (i & 7)
    return _string_array([b"" if value is None else value.encode() for value in values], pa.py_buffer(bits))


class _Dropped(Exception):
    """A valid event that is discarded: its token has no project, or it says `$ignore`."""

    def __init__(self, unknown_token: bool) -> None:
        super().__init__()
        self.unknown_token = unknown_token


class Invalid(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class LocalClock:
    """`timeutil.local_seconds` with the UTC offset cached per UTC hour: the offset is looked up
    at both ends of the hour and reused only when they agree (otherwise every event of that hour
    gets the exact per-instant answer), so transitions stay exact to the millisecond."""

    __slots__ = ("_cache", "_tz", "_utc")

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._utc = tz.key == "UTC"
        self._cache: dict[int, int | None] = {}

    def __call__(self, time_ms: int) -> int:
        if self._utc:
            return time_ms // 1000
        hour = time_ms // _HOUR_MS
        cache = self._cache
        if hour in cache:
            offset = cache[hour]
        else:
            start = offset_ms_at(self._tz, hour * _HOUR_MS)
            offset = start if offset_ms_at(self._tz, hour * _HOUR_MS + _HOUR_MS - 1) == start else None
            cache[hour] = offset
        if offset is None:
            return local_seconds(self._tz, time_ms)
        return (time_ms + offset) // 1000


def normalize_events(
    items: list[Any],
    ctx: EventContext,
    *,
    project: Project | None = None,
    resolve: Callable[[str], Project | None] | None = None,
    lenient: bool = False,
) -> EventBatch:
    """Validate and normalise every item. `/import` passes the authenticated `project`; `/track`
    passes `resolve`, mapping each event's `token` to its project (None: discard silently).
    `lenient` says strings may hold lone surrogates (invalid UTF-8) and must be checked."""
    batch = EventBatch()
    server_props: dict[str, Any] = {
        "$mp_api_endpoint": ctx.host,
        "$mp_api_timestamp_ms": ctx.received_ms,
        "mp_processing_time_ms": ctx.processed_ms,
    }
    if ctx.endpoint == "import":
        server_props["$import"] = True
    clocks: dict[int, LocalClock] = {}
    heads: dict[str, tuple[bytes, int]] = {}
    for index, item in enumerate(items):
        try:
            target, row_parts = _normalize_one(item, ctx, project, resolve, lenient, server_props)
        except Invalid as exc:
            batch.failed.append(FailedRecord(index, _insert_id_of(item), exc.path, exc.message))
            continue
        except RecursionError:  # nesting deeper than the walks over values can follow
            batch.failed.append(
                FailedRecord(index, None, "properties", "'properties' is invalid: nested too deeply")
            )
            continue
        except (ArithmeticError, ValueError) as exc:
            # A value no conversion can represent (an integer of thousands of digits as an id,
            # a number past float range): that record fails, never the batch.
            batch.failed.append(
                FailedRecord(index, None, "properties", f"'properties' is invalid: {_out_of_range(exc)}")
            )
            continue
        except _Dropped as drop:
            batch.dropped += 1
            batch.unknown_token += drop.unknown_token
            continue
        time_ms, event, distinct_id, insert_id, props, nested, link = row_parts
        project_id = target.project_id
        clock = clocks.get(project_id)
        if clock is None:
            clock = clocks[project_id] = LocalClock(zone(target.timezone))
        head = heads.get(event)
        if head is None:
            head = heads[event] = line_head(event)
        try:
            line = line_bytes(head[0], props, clock(time_ms), nested)
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError: e.g. an integer over 64 bits
            batch.failed.append(
                FailedRecord(index, _insert_id_of(item), "properties", f"'properties' is invalid: {exc}")
            )
            continue
        batch.project_ids.append(project_id)
        batch.times.append(time_ms)
        batch.events.append(event)
        batch.distinct_ids.append(distinct_id)
        batch.insert_ids.append(insert_id)
        batch.time_pos.append(head[1])
        if link is not None:
            batch.links[len(batch.lines)] = link
        batch.lines.append(line)
    return batch


_Parts = tuple[int, str, str | None, str, dict[str, Any], bool, identity.Link | None]


def _normalize_one(
    item: Any,
    ctx: EventContext,
    project: Project | None,
    resolve: Callable[[str], Project | None] | None,
    lenient: bool,
    server_props: dict[str, Any],
) -> tuple[Project, _Parts]:
    if type(item) is not dict:
        message = getattr(item, "message", None) or "each event must be a JSON object"
        raise Invalid("event", message)
    strict = ctx.strict
    event = item.get("event")
    props = item.get("properties")
    if props is None:
        if strict:
            raise Invalid("properties", "'properties' is required")
        props = {}
    elif type(props) is not dict:
        raise Invalid("properties", "'properties' is invalid: must be a JSON object")
    if type(event) is not str or not event:
        raise Invalid("event", "'event' is invalid: must be a non-empty string")
    if lenient:
        event = _check_utf8(event, props, strict)

    if resolve is not None:
        token = props.pop("token", None)
        if type(token) is not str or not token:
            raise Invalid("properties.token", "token, missing or empty")
        project = resolve(token)
    else:
        props.pop("token", None)
    if project is None:
        raise _Dropped(unknown_token=True)
    ignore = props.get("$ignore")
    if ignore is not None and ignore is not False:
        raise _Dropped(unknown_token=False)

    # time
    raw_time = props.pop("time", None)
    now_ms = ctx.processed_ms
    # Mixpanel documents `$merge`, `$identify` and `$create_alias` payloads without `time` or
    # `$insert_id` (the SDKs' merge helpers send them so, to /import): the server supplies them.
    link_event = event in identity.LINK_EVENTS
    if raw_time is None:
        if (strict or ctx.endpoint == "import") and not link_event:
            raise Invalid("properties.time", "'properties.time' is required")
        time_ms = now_ms
    else:
        time_ms = _time_ms(raw_time, strict)
        if time_ms > now_ms + MAX_FUTURE_MS:
            if strict:
                raise Invalid(
                    "properties.time",
                    "'properties.time' is invalid: must not be more than 1 hour in the future",
                )
            time_ms = now_ms
        elif time_ms < MIN_TIME_MS and (strict or time_ms < 0):
            raise Invalid("properties.time", "'properties.time' is invalid: must be after 1971-01-01")
        if ctx.max_age_ms and ctx.endpoint == "track" and time_ms < now_ms - ctx.max_age_ms:
            raise Invalid("properties.time", TOO_OLD)

    ip = props.pop("ip", None)
    nested = _truncate_strings(props)
    if len(event) > MAX_STRING_BYTES // 4:
        event = _truncate(event)

    # identity: the project's mode may set distinct_id, and the event may link two ids
    if identity.BEFORE_IDENTITY in props:  # a resolved export line (ours or Mixpanel's): as sent
        props["distinct_id"] = props.pop(identity.BEFORE_IDENTITY)
    try:
        link = identity.link_of(event, props, project.id_merge, ctx.endpoint == "import")
    except identity.Refused as exc:
        raise Invalid(exc.path, exc.message) from None

    # distinct_id
    raw_id = props.get("distinct_id")
    distinct_id: str | None
    if raw_id is None:
        if strict:
            raise Invalid("properties.distinct_id", "'properties.distinct_id' is required")
        distinct_id = None
        if ctx.ip_fallback and ip not in ("0", 0):
            source = ip if type(ip) is str and ip else ctx.client_ip
            if source:
                distinct_id = props["distinct_id"] = ip_distinct_id(source)
        if distinct_id is None:
            props.pop("distinct_id", None)
    elif type(raw_id) is str:
        distinct_id = raw_id
        if strict and raw_id.lower() in DISALLOWED_IDS:
            raise Invalid(
                "properties.distinct_id", f"'properties.distinct_id' is invalid: {raw_id!r} is not allowed"
            )
    elif type(raw_id) is int:
        distinct_id = str(raw_id)
        if strict and distinct_id in DISALLOWED_IDS:
            raise Invalid(
                "properties.distinct_id", f"'properties.distinct_id' is invalid: {raw_id!r} is not allowed"
            )
    elif strict:
        raise Invalid("properties.distinct_id", "'properties.distinct_id' is invalid: must be a string")
    else:
        distinct_id = _json_text(raw_id)

    # $insert_id
    raw_insert = props.get("$insert_id")
    if raw_insert is None:
        if strict and not link_event:
            raise Invalid("properties.$insert_id", "'properties.$insert_id' is required")
        insert_id = props["$insert_id"] = new_insert_id()
    elif type(raw_insert) is str:
        insert_id = raw_insert
        if strict and (INSERT_ID.fullmatch(raw_insert) is None or raw_insert.lower() in DISALLOWED_IDS):
            raise Invalid(
                "properties.$insert_id",
                "'properties.$insert_id' is invalid: must be 1 to 36 characters of A-Z, a-z, 0-9 and -",
            )
    elif strict:
        raise Invalid("properties.$insert_id", "'properties.$insert_id' is invalid: must be a string")
    else:
        insert_id = _json_text(raw_insert)

    if not ctx.restore:
        props.update(server_props)
    return project, (time_ms, event, distinct_id, insert_id, props, nested, link)


def _time_ms(raw: Any, strict: bool) -> int:
    kind = type(raw)
    if kind is int:
        return raw if raw >= MS_THRESHOLD else raw * 1000  # type: ignore[no-any-return]
    value: float
    if kind is float:
        value = raw
    elif kind is str and not strict:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
    else:
        value = math.nan
    if not math.isfinite(value):
        raise Invalid(
            "properties.time", "'properties.time' is invalid: must be specified as seconds since epoch"
        )
    # Kept to the millisecond, rounded half up (1700000000.0005 s → …000001 ms). Seconds past
    # ±1.8e305 overflow to infinity once in milliseconds: clamped to the 64-bit range, where the
    # caller's range checks refuse them (before 1971) or bring them to now (future, non-strict).
    ms = value + 0.5 if value >= MS_THRESHOLD else value * 1000 + 0.5
    return math.floor(min(max(ms, _INT64_MIN), _INT64_MAX))


_INT64_MIN = -(2.0**63)
_INT64_MAX = 2.0**63


def _out_of_range(exc: Exception) -> str:
    return "a number is out of range" if isinstance(exc, ArithmeticError) else str(exc)


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _insert_id_of(item: Any) -> str | None:
    if type(item) is dict:
        props = item.get("properties")
        if type(props) is dict:
            value = props.get("$insert_id")
            if type(value) is str:
                return _valid_text(value)
    return None


def _truncate(text: str) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= MAX_STRING_BYTES:
        return text
    return raw[:MAX_STRING_BYTES].decode("utf-8", "ignore")  # drops a split trailing code point


def _truncate_strings(container: dict[str, Any]) -> bool:
    """Truncate every string value in place; True when some value is (or holds) an object."""
    # 255 bytes hold at least 63 code points, so shorter strings need no encoding to check.
    nested = False
    for key, value in container.items():
        kind = type(value)
        if kind is str:
            if len(value) > 63:
                container[key] = _truncate(value)
        elif kind is dict:
            _truncate_strings(value)
            nested = True
        elif kind is list:
            nested |= _truncate_list(value)
    return nested


def _truncate_list(items: list[Any]) -> bool:
    nested = False
    for i, value in enumerate(items):
        kind = type(value)
        if kind is str:
            if len(value) > 63:
                items[i] = _truncate(value)
        elif kind is dict:
            _truncate_strings(value)
            nested = True
        elif kind is list:
            nested |= _truncate_list(value)
    return nested


_MISSING: Any = object()


def line_bytes(head: bytes, props: dict[str, Any], local_time: int, nested: bool) -> bytes:
    """`eventline.assemble_line`'s line as bytes, byte for byte (a property test compares them),
    after `head` from `eventline.line_head`. Flat properties are sorted by orjson natively (in
    code-point order, as `sorted`); `nested` ones are sorted here, because orjson would sort the
    keys of nested objects too, and those keep their order."""
    distinct_id = props.pop("distinct_id", _MISSING)
    try:
        if nested:
            body = orjson.dumps({key: props[key] for key in sorted(props)})
        else:
            body = orjson.dumps(props, option=orjson.OPT_SORT_KEYS)
    finally:
        if distinct_id is not _MISSING:
            props["distinct_id"] = distinct_id
    did = b"" if distinct_id is _MISSING else b',"distinct_id":' + orjson.dumps(distinct_id)
    if body == b"{}":
        return b"%b%d%b}}\n" % (head, local_time, did)
    return b"%b%d%b,%b}\n" % (head, local_time, did, body[1:])


# -- invalid UTF-8 (only reachable through the lenient parser) -----------------------------------------


def _is_valid(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid_text(text: str) -> str:
    """Lone surrogates (invalid UTF-8 bytes, unpaired escapes) replaced by U+FFFD."""
    if _is_valid(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _has_invalid(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return not _is_valid(value)
    if kind is dict:
        return any(not _is_valid(k) or _has_invalid(v) for k, v in value.items())
    if kind is list:
        return any(_has_invalid(v) for v in value)
    return False


def _repair(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return _valid_text(value)
    if kind is dict:
        return {_valid_text(k): _repair(v) for k, v in value.items()}
    if kind is list:
        return [_repair(v) for v in value]
    return value


def _check_utf8(event: str, props: dict[str, Any], strict: bool) -> str:
    """Strict: the first property holding invalid UTF-8 fails the record. Otherwise: repair."""
    if not _is_valid(event):
        if strict:
            raise Invalid("event", "event is invalid: string should be valid utf8")
        event = _valid_text(event)
    bad = [key for key, value in props.items() if not _is_valid(key) or _has_invalid(value)]
    if not bad:
        return event
    if strict:
        name = _valid_text(bad[0])
        raise Invalid(f"properties.{name}", f"properties.{name} is invalid: string should be valid utf8")
    for key in bad:
        value = props.pop(key)
        props[_valid_text(key)] = _repair(value)
    return event
