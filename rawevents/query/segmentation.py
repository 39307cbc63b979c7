"""`/api/query/segmentation` in Mixpanel's shape, from counts the store computes.

The store groups events by (local-time bucket, key) in one scan; this module names the
buckets as Mixpanel does, lists every bucket of the range in `series` and fills the gaps with 0.
Buckets are project-local wall-clock intervals: an event's bucket is its UTC instant plus the
offset in force at that instant, so a 23- or 25-hour DST day is one `day` bucket and the
repeated hour of a fall-back night is one `hour` bucket holding both hours' events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from zoneinfo import ZoneInfo

import orjson

from rawevents.params import int_param
from rawevents.projects import Project
from rawevents.query import cost
from rawevents.query.cost import QueryLimits, RawJson
from rawevents.query.params import DayRange, choice_param, day_range, segment_expression, selection
from rawevents.storage.base import KINDS, UNITS, EventStore, SegmentationQuery, SegmentCount

DEFAULT_LIMIT = 60  # Mixpanel's default number of segments
MAX_LIMIT = 10_000  # Mixpanel's maximum

_LABELS = {
    "minute": "%Y-%m-%d %H:%M:00",
    "hour": "%Y-%m-%d %H:00:00",
    "day": "%Y-%m-%d",
    "week": "%Y-%m-%d",
    "month": "%Y-%m-%d",
}
_STEPS = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
_EPOCH = dt.datetime(1970, 1, 1)


def segmentation(
    store: EventStore, project: Project, params: Mapping[str, str], limits: QueryLimits = cost.DEFAULT_LIMITS
) -> RawJson:
    """The checks of rawevents.query.cost come before anything is listed or read: the bucket
    count is arithmetic, `limit` x buckets bounds the cells, and the body's exact size is known
    (and refused over the cap) before it is written."""
    days = day_range(params, project)
    unit = choice_param(params, "unit", UNITS, "day")
    kind = choice_param(params, "type", KINDS, "general")
    limit = int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cost.check_segmentation(days.from_date, days.to_date, unit, limit, limits.max_cells)
    on_text = params.get("on", "").strip()
    query = SegmentationQuery(
        selection=selection(params, project, days),
        unit=unit,
        on=segment_expression(on_text) if on_text else None,
        limit=limit,
        unique=kind != "general",
    )
    series = list(bucket_starts(days, unit, project.zone))
    return answer(store.segmentation(query), series, unit, kind, limits.max_answer_bytes)


def answer(
    counts: list[SegmentCount], series: list[dt.datetime], unit: str, kind: str, max_bytes: int
) -> RawJson:
    """Mixpanel's body: every bucket label in `series`, one 0-filled map per key in `values`.

    Written as bytes, one key's row at a time, from the sparse counts: no keys x buckets table of
    Python objects is ever built, and the body's size is computed first, so an answer over
    `max_bytes` is a 400 before any of it exists."""
    fmt = _LABELS[unit]
    labels = {_epoch_ms(start): start.strftime(fmt) for start in series}
    for row in counts:
        if row.bucket_ms not in labels:  # a bucket the range listing did not expect: keep it
            labels[row.bucket_ms] = (_EPOCH + dt.timedelta(milliseconds=row.bucket_ms)).strftime(fmt)
    order = sorted(labels)
    position = {ms: i for i, ms in enumerate(order)}
    prefixes = [orjson.dumps(labels[ms]) + b":" for ms in order]
    rows: dict[str, dict[int, bytes]] = {}  # key -> {bucket position: rendered count}, first seen first
    for row in counts:
        rows.setdefault(row.key, {})[position[row.bucket_ms]] = orjson.dumps(_measure(row, kind))
    series_bytes = b"[" + b",".join(orjson.dumps(labels[ms]) for ms in order) + b"]"
    legend = str(len(rows)).encode()
    zero_row = sum(map(len, prefixes)) + 2 * len(prefixes) + 1  # {"label":0,...}
    size = 47 + len(series_bytes) + len(legend) + max(0, len(rows) - 1)  # the body's exact length
    for key, cells in rows.items():
        size += len(orjson.dumps(key)) + 1 + zero_row + sum(len(value) - 1 for value in cells.values())
    cost.check_answer(size, max_bytes, "use a smaller limit, a coarser unit or a shorter range")
    parts = [b'{"data":{"series":', series_bytes, b',"values":{']
    for n, (key, cells) in enumerate(rows.items()):
        line = b",".join(prefix + cells.get(i, b"0") for i, prefix in enumerate(prefixes))
        parts.append((b"," if n else b"") + orjson.dumps(key) + b":{" + line + b"}")
    parts.append(b'}},"legend_size":' + legend + b"}")
    return RawJson(b"".join(parts))


def _epoch_ms(wall: dt.datetime) -> int:
    return (wall - _EPOCH) // dt.timedelta(milliseconds=1)


def _measure(row: SegmentCount, kind: str) -> float:
    if kind == "unique":
        return row.users
    if kind == "average":
        return row.events / row.users if row.users else 0
    return row.events


def bucket_starts(days: DayRange, unit: str, tz: ZoneInfo) -> Iterator[dt.datetime]:
    """Local wall-clock starts of every bucket overlapping the days (naive datetimes); minutes
    and hours that a spring-forward gap skips are left out."""
    first = dt.datetime.combine(days.from_date, dt.time())
    end = dt.datetime.combine(days.to_date + dt.timedelta(days=1), dt.time())
    if unit == "week":
        first -= dt.timedelta(days=first.weekday())
    elif unit == "month":
        first = first.replace(day=1)
    current = first
    while current < end:
        if unit not in ("minute", "hour") or _exists(current, unit, tz):
            yield current
        current = _next(current, unit)


def _next(start: dt.datetime, unit: str) -> dt.datetime:
    if unit == "week":
        return start + dt.timedelta(days=7)
    if unit == "month":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start + _STEPS[unit]


def _exists(start: dt.datetime, unit: str, tz: ZoneInfo) -> bool:
    """Whether some instant falls in the local bucket [start, start + unit): its start or its
    last minute is a wall time that round-trips through UTC (gaps are at least 30 minutes)."""
    last = start + _STEPS[unit] - dt.timedelta(minutes=1)
    return any(_round_trips(wall, tz) for wall in (start, last))


def _round_trips(wall: dt.datetime, tz: ZoneInfo) -> bool:
    if tz.key == "UTC":
        return True
    back = wall.replace(tzinfo=tz).astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None)
    return back == wall
