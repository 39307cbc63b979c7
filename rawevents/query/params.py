"""Parameters shared by the query endpoints, validated into a storage `EventSelection`.

Dates, `event` and `where` mean exactly what they mean for the export (same parser, same
compiler, same calendar days in the project's time zone), so a selection made in the explorer
and downloaded through `/api/2.0/export` is the same set of events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from rawevents import timeutil
from rawevents.errors import BadRequest
from rawevents.params import parse_date, parse_event_param
from rawevents.projects import Project
from rawevents.query import cost
from rawevents.storage.base import EventSelection
from rawevents.timeutil import TimeSegment
from rawevents.where import Node, WhereError, parse

DEFAULT_DAYS = 30  # range of the endpoints whose Mixpanel form takes no dates


@dataclass(frozen=True, slots=True)
class DayRange:
    from_date: dt.date
    to_date: dt.date


def choice_param(params: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = params.get(name, "")
    value = raw.strip().lower() or default
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def day_range(params: Mapping[str, str], project: Project, *, required: bool = True) -> DayRange:
    """`from_date`/`to_date` as the export reads them, up to cost.LAST_DAY (the export stops at
    today); when optional and both absent, the DEFAULT_DAYS days ending today in the project's
    time zone."""
    if not required and not params.get("from_date", "").strip() and not params.get("to_date", "").strip():
        today = timeutil.today(project.zone)
        return DayRange(today - dt.timedelta(days=DEFAULT_DAYS - 1), today)
    from_date = parse_date(params, "from_date")
    to_date = parse_date(params, "to_date")
    if from_date > to_date:
        raise BadRequest(f"from_date {from_date.isoformat()} is after to_date {to_date.isoformat()}")
    cost.check_day("to_date", to_date)
    return DayRange(from_date, to_date)


def segments(project: Project, days: DayRange) -> tuple[TimeSegment, ...]:
    tz = project.zone
    start_ms, end_ms = timeutil.day_range_ms(tz, days.from_date, days.to_date)
    return tuple(timeutil.offset_segments(tz, start_ms, end_ms))


def selection(params: Mapping[str, str], project: Project, days: DayRange) -> EventSelection:
    where_text = params.get("where", "").strip()
    return EventSelection(
        project_id=project.project_id,
        segments=segments(project, days),
        timezone=project.timezone,
        events=parse_event_param(params.get("event")),
        where=parse(where_text) if where_text else None,
    )


def segment_expression(text: str, name: str = "on") -> Node:
    """An `on` expression (the `where` language), with errors naming the parameter."""
    try:
        return parse(text)
    except WhereError as error:
        raise BadRequest(f"{name}: {error.detail} at column {error.column}: {text}") from None
