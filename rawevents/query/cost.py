"""What a query may cost, checked from its parameters before the store is asked anything.

A query endpoint answers one JSON body built in memory, so its size is what bounds the server:
- dates: from 1970-01-01 to LAST_DAY, the last day every store and every zone can represent
  (ClickHouse's DateTime64 ends in 2299; Python's dates and the zone rules end in 9999, where a
  day's end in UTC is already past what `datetime` holds);
- segmentation buckets, counted arithmetically from the range and the unit (never enumerated
  before the check): at most MAX_BUCKETS;
- segmentation cells, `limit` x buckets, the size of Mixpanel's dense `values` table: at most
  the `query_max_cells` setting;
- answer bytes, for every query endpoint: at most the share of `export_memory_budget_mb` one
  running request gets (queries and exports share one budget and one set of slots).

Every refusal is a 400 naming the limit and what to change. docs/explorer.md, "Limits".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

from rawevents.budget import MIB
from rawevents.errors import BadRequest
from rawevents.settings import Config

LAST_DAY = dt.date(2299, 12, 31)  # ClickHouse DateTime64's last day; local days must stay inside it
MAX_BUCKETS = 10_000  # a week of minutes, 27 years of days; more is a chart nobody can read
_MINUTES = {"minute": 1440, "hour": 24, "day": 1}
_COARSER = {"minute": "hour", "hour": "day", "day": "week", "week": "month"}


class RawJson(NamedTuple):
    """A response body already serialised as JSON."""

    body: bytes


@dataclass(frozen=True, slots=True)
class QueryLimits:
    max_cells: int = 1_000_000
    max_answer_bytes: int = 32 * MIB

    @classmethod
    def from_config(cls, config: Config) -> QueryLimits:
        share = config.export_memory_budget_mb * MIB // max(1, config.export_max_running)
        return cls(max_cells=config.query_max_cells, max_answer_bytes=max(MIB, share))


DEFAULT_LIMITS = QueryLimits()


def check_day(name: str, day: dt.date) -> None:
    if day > LAST_DAY:
        raise BadRequest(
            f"{name} cannot be later than {LAST_DAY.isoformat()} (the last day every store represents),"
            f" got {day.isoformat()}"
        )


def bucket_count(from_date: dt.date, to_date: dt.date, unit: str) -> int:
    """Local wall-clock buckets overlapping the inclusive days, by arithmetic: an upper bound of
    what `series` lists (buckets a spring-forward gap skips are counted, then left out)."""
    days = (to_date - from_date).days + 1
    if unit in _MINUTES:
        return days * _MINUTES[unit]
    if unit == "week":
        first_monday = from_date - dt.timedelta(days=from_date.weekday())
        return (to_date - first_monday).days // 7 + 1
    return (to_date.year - from_date.year) * 12 + to_date.month - from_date.month + 1


def check_segmentation(from_date: dt.date, to_date: dt.date, unit: str, limit: int, max_cells: int) -> int:
    """The number of buckets, once the range's buckets and cells are within the caps."""
    buckets = bucket_count(from_date, to_date, unit)
    span = f"unit={unit} from {from_date.isoformat()} to {to_date.isoformat()}"
    if buckets > MAX_BUCKETS:
        raise BadRequest(
            f"{span} gives {buckets} buckets; at most {MAX_BUCKETS}: use a coarser unit"
            f"{_coarser(unit)} or a shorter range"
        )
    if limit * buckets > max_cells:
        most = max(1, max_cells // buckets)
        raise BadRequest(
            f"limit={limit} x {buckets} buckets ({span}) is {limit * buckets} cells; at most {max_cells}:"
            f" use a smaller limit (at most {most} here), a coarser unit{_coarser(unit)} or a shorter range"
        )
    return buckets


def _coarser(unit: str) -> str:
    coarser = _COARSER.get(unit)
    return f" ({coarser})" if coarser else ""


def check_answer(size: int, max_bytes: int, change: str) -> None:
    """A 400 when an answer of `size` bytes is over the cap; `change` says what to ask instead."""
    if size > max_bytes:
        raise BadRequest(f"the answer would be {size} bytes; at most {max_bytes}: {change}")
