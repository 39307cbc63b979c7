"""Project time zones: calendar days to half-open UTC instants, and UTC instants to local time.

Mixpanel's exported `time` is project-local wall-clock seconds (UTC epoch plus the UTC offset in
force at that instant). Internally everything is UTC epoch milliseconds; days map to half-open
[start, end) instants computed by one function, so adjacent ranges neither overlap nor leave gaps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class TimeSegment:
    """A half-open UTC range [start_ms, end_ms) over which the project's UTC offset is constant."""

    start_ms: int
    end_ms: int
    offset_ms: int


UTC = dt.UTC
_DAY_MS = 86_400_000


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def offset_ms_at(tz: ZoneInfo, utc_ms: int) -> int:
    """UTC offset in force at instant `utc_ms`, in milliseconds."""
    if tz.key == "UTC":
        return 0
    instant = dt.datetime.fromtimestamp(utc_ms / 1000, UTC)
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() * 1000)


def local_seconds(tz: ZoneInfo, utc_ms: int) -> int:
    """The exported `time`: project-local wall-clock seconds since the epoch (floored)."""
    return (utc_ms + offset_ms_at(tz, utc_ms)) // 1000


def day_start_ms(tz: ZoneInfo, day: dt.date) -> int:
    """The UTC instant of local midnight starting `day` (the first instant of the day when
    midnight itself falls in a DST gap)."""
    naive = dt.datetime.combine(day, dt.time())
    aware = naive.replace(tzinfo=tz)
    utc = aware.astimezone(UTC)
    # In a gap, zoneinfo maps the nonexistent wall time with the pre-transition offset, which
    # lands after the gap; the day really starts at the transition itself, the earlier of the two.
    other = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    start = min(utc, other)
    if start.astimezone(tz).date() != day:
        start = max(utc, other)
    return int(start.timestamp() * 1000)


def day_range_ms(tz: ZoneInfo, from_date: dt.date, to_date: dt.date) -> tuple[int, int]:
    """Inclusive calendar days [from_date, to_date] in `tz` as half-open UTC [start_ms, end_ms)."""
    return day_start_ms(tz, from_date), day_start_ms(tz, to_date + dt.timedelta(days=1))


def first_offset_change(tz: ZoneInfo, low: int, high: int) -> int:
    """The first instant in (low, high] whose UTC offset differs from the one at `low`, found by
    bisection; the offset at `high` must differ."""
    offset = offset_ms_at(tz, low)
    while high - low > 1:
        mid = (low + high) // 2
        if offset_ms_at(tz, mid) == offset:
            low = mid
        else:
            high = mid
    return high


def offset_segments(tz: ZoneInfo, start_ms: int, end_ms: int) -> list[TimeSegment]:
    """Split [start_ms, end_ms) where the UTC offset changes, to the millisecond."""
    segments: list[TimeSegment] = []
    cursor = start_ms
    offset = offset_ms_at(tz, cursor)
    while cursor < end_ms:
        probe = min(cursor + _DAY_MS, end_ms)
        while probe < end_ms and offset_ms_at(tz, probe) == offset:
            probe = min(probe + _DAY_MS, end_ms)
        if probe >= end_ms and offset_ms_at(tz, end_ms - 1) == offset:
            segments.append(TimeSegment(cursor, end_ms, offset))
            break
        high = first_offset_change(tz, cursor, min(probe, end_ms - 1))
        segments.append(TimeSegment(cursor, high, offset))
        cursor = high
        offset = offset_ms_at(tz, cursor)
    return segments


def today(tz: ZoneInfo, now_ms: int | None = None) -> dt.date:
    now = dt.datetime.now(UTC) if now_ms is None else dt.datetime.fromtimestamp(now_ms / 1000, UTC)
    return now.astimezone(tz).date()
