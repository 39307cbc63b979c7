"""The value model shared by the reference evaluator and the SQL printers.

Runtime types: string (str), number (float; JSON ints and floats alike), boolean (bool),
datetime (`DateTime`, epoch milliseconds as a float), list, object (dict), null (None) and
`UNDEFINED`. Everything here is defined so that SQL can reproduce it exactly: number text is the
shortest round-trip repr with a trailing ".0" removed, datetime text parsing is one regular
expression plus integer arithmetic, and naive datetimes use a per-zone offset table
(`naive_offsets`) that the printers bind as parameters.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

from rawevents.timeutil import first_offset_change, offset_ms_at


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()


@dataclass(frozen=True, slots=True)
class DateTime:
    ms: float  # UTC epoch milliseconds


MIN_DATETIME_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_DATETIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
DATETIME_MS_THRESHOLD = 1e10  # datetime(n): abs(n) >= 1e10 is milliseconds, else seconds

# Strict decimal syntax for number("…"): no spaces, no "_", no hex, no inf/nan.
NUMBER_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUMBER_RE = re.compile(NUMBER_PATTERN)

# YYYY-MM-DD[(T| )HH:MM[:SS[.f…]][Z|±hh[:]mm]]; non-padded month/day/hour allowed (2014-09-9).
DATETIME_PATTERN = (
    r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?:[T ]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(?:(Z)|([+-])([0-9]{2}):?([0-9]{2}))?)?"
)
DATETIME_GROUPS = ("yy", "mo", "dd", "hh", "mi", "ss", "fr", "zz", "sg", "zh", "zm")
_DATETIME_RE = re.compile(DATETIME_PATTERN)


def type_name(value: Any) -> str:
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, DateTime):
        return "datetime"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a where value: {value!r}")


def from_json(value: Any) -> Any:
    """A decoded JSON value as a where value: every number is the double nearest to it (one
    number type), integers past int64/uint64 included (2**64 is 1.8446744073709552e+19, as
    ingestion stores it); one past the double range, like 1e400, is undefined."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return UNDEFINED
    if isinstance(value, float) and not math.isfinite(value):
        return UNDEFINED
    return value


# `a % b` is C's fmod (exact, the dividend's sign) for operands below 2**96 in magnitude, which
# holds every integer ingestion stores (int64, uint64, and the doubles it writes for larger
# ones); beyond that it is undefined: no store computes an exact remainder of such doubles.
MOD_LIMIT: Final = 2.0**96


def finite(value: float) -> float | _Undefined:
    return value if math.isfinite(value) else UNDEFINED


def format_number(value: float) -> str:
    """string(number): shortest round-trip text, integral values without ".0" (5 → "5",
    0.1 → "0.1", 1e16 → "1e+16", -0.0 → "-0")."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def parse_number(text: str) -> float | _Undefined:
    if not _NUMBER_RE.fullmatch(text):
        return UNDEFINED
    return finite(float(text))


def c_round(value: float) -> float:
    """C round(): halves away from zero (Python's round() would go to even)."""
    magnitude = abs(value)
    whole = math.floor(magnitude)
    rounded = whole + 1.0 if magnitude - whole >= 0.5 else whole
    return math.copysign(rounded, value)


def c_floor(value: float) -> float:
    """C floor(): keeps the sign of zero (floor(-0.0) is -0.0), like SQL engines do."""
    return (
        math.copysign(float(math.floor(value)), value) if math.floor(value) == 0 else float(math.floor(value))
    )


def c_ceil(value: float) -> float:
    """C ceil(): ceil(-0.5) is -0.0."""
    return math.copysign(float(math.ceil(value)), value) if math.ceil(value) == 0 else float(math.ceil(value))


def datetime_from_number(value: float) -> DateTime | _Undefined:
    ms = value if abs(value) >= DATETIME_MS_THRESHOLD else value * 1000.0
    return DateTime(ms) if MIN_DATETIME_MS <= ms <= MAX_DATETIME_MS else UNDEFINED


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (years >= 1), integer arithmetic only."""
    year -= 1 if month <= 2 else 0
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def parse_datetime(text: str, timezone: str) -> DateTime | _Undefined:
    """datetime("…"): ISO-like text to an instant; naive text is read in the project timezone."""
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        return UNDEFINED
    yy, mo, dd, hh, mi, ss, fr, zz, sg, zh, zm = match.groups(default="")
    year, month, day = int(yy), int(mo), int(dd)
    hour = int(hh) if hh else 0
    minute = int(mi) if mi else 0
    second = int(ss) if ss else 0
    millis = int((fr + "000")[:3])
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= days_in_month(year, month)):
        return UNDEFINED
    if hour > 23 or minute > 59 or second > 59:
        return UNDEFINED
    wall = days_from_civil(year, month, day) * 86_400_000 + hour * 3_600_000 + minute * 60_000
    wall += second * 1000 + millis
    if zz:
        utc = wall
    elif sg:
        if int(zh) > 23 or int(zm) > 59:
            return UNDEFINED
        sign = 1 if sg == "+" else -1
        utc = wall - sign * (int(zh) * 3_600_000 + int(zm) * 60_000)
    else:
        utc = wall - naive_offset_ms(timezone, wall)
    if not MIN_DATETIME_MS <= utc <= MAX_DATETIME_MS:
        return UNDEFINED
    return DateTime(float(utc))


def format_datetime(value: DateTime) -> str:
    """string(datetime): `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC (milliseconds floored)."""
    ms = math.floor(value.ms)
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


# -- naive local times ----------------------------------------------------------------------------

_TABLE_FIRST_YEAR = 1900
_TABLE_END_YEAR = 2100
_WEEK_MS = 7 * 86_400_000


@lru_cache(maxsize=64)
def naive_offsets(timezone: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(breaks, offsets): a naive wall time w (epoch ms as if UTC) means UTC w - offsets[i] where
    i = number of breaks <= w. Built from zoneinfo with fold=0 (a time in a gap or a repeated hour
    takes the offset in force before the transition) for 1900–2099; outside those years the
    nearest table entry applies. SQL binds both tuples and looks the offset up the same way."""
    tz = ZoneInfo(timezone)
    start = _utc_ms(dt.datetime(_TABLE_FIRST_YEAR, 1, 1, tzinfo=dt.UTC))
    end = _utc_ms(dt.datetime(_TABLE_END_YEAR, 1, 1, tzinfo=dt.UTC))
    candidates: set[int] = set()
    cursor, offset = start, offset_ms_at(tz, start)
    while cursor < end:
        probe = min(cursor + _WEEK_MS, end)
        after = offset_ms_at(tz, probe)
        if after == offset:
            cursor = probe
            continue
        high = first_offset_change(tz, cursor, probe)
        new = offset_ms_at(tz, high)
        candidates.update((high + offset, high + new))
        cursor, offset = high, new
    breaks: list[int] = []
    offsets: list[int] = [_naive_offset_zoneinfo(tz, start + offset_ms_at(tz, start))]
    for wall in sorted(candidates):
        value = _naive_offset_zoneinfo(tz, wall)
        if value != offsets[-1]:
            breaks.append(wall)
            offsets.append(value)
    return tuple(breaks), tuple(offsets)


def naive_offset_ms(timezone: str, wall_ms: int) -> int:
    if timezone == "UTC":
        return 0
    breaks, offsets = naive_offsets(timezone)
    return offsets[bisect.bisect_right(breaks, wall_ms)]


def _utc_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _naive_offset_zoneinfo(tz: ZoneInfo, wall_ms: int) -> int:
    naive = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=wall_ms)
    offset = naive.replace(tzinfo=tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() * 1000)
