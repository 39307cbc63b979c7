"""Export parameters: parse and validate what the client sent, then build the storage plan.

Every rule here is a 400 with a message that names the parameter and the value received, so a
client author can fix the call from the error alone. Unknown parameters (`format`, `callback`,
`bucket`, `_`, …) are ignored, as Mixpanel does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from rawevents import timeutil
from rawevents.errors import BadRequest
from rawevents.projects import Project
from rawevents.storage.base import ExportPlan
from rawevents.where import parse

MAX_LIMIT = 100_000
TIME_HEADER = "x-rawevents-time"  # response header: "utc" when the `time_utc` extension was honoured
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TRUE = {"true", "1"}
_FALSE = {"false", "0", ""}


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """A validated export request: inclusive calendar days in the project's time zone."""

    from_date: dt.date
    to_date: dt.date
    events: tuple[str, ...] | None = None
    where: str | None = None
    limit: int | None = None
    time_in_ms: bool = False
    time_utc: bool = False  # extension: render `time` as the UTC epoch
    as_ingested: bool = False  # extension: `distinct_id` as sent, not resolved (docs/identity.md)


def parse_export_params(
    params: Mapping[str, str], project: Project, *, today: dt.date | None = None
) -> ExportRequest:
    """Validate export parameters; `today` defaults to today in the project's time zone."""
    current = timeutil.today(project.zone) if today is None else today
    # With a cursor (an extension) the days are optional: "everything stored after C".
    incremental = any(params.get(name, "").strip() for name in _CURSOR_PARAMS)
    from_date = parse_date(params, "from_date", _FIRST_DAY if incremental else None)
    to_date = parse_date(params, "to_date", current if incremental else None)
    if from_date > to_date:
        raise BadRequest(f"from_date {from_date.isoformat()} is after to_date {to_date.isoformat()}")
    if to_date > current:
        raise BadRequest("to_date cannot be later than today")
    where = params.get("where", "").strip() or None
    return ExportRequest(
        from_date=from_date,
        to_date=to_date,
        events=parse_event_param(params.get("event")),
        where=where,
        limit=_limit(params.get("limit")),
        time_in_ms=_bool(params, "time_in_ms"),
        time_utc=_bool(params, "time_utc"),
        as_ingested=_bool(params, "as_ingested"),
    )


_FIRST_DAY = dt.date(1970, 1, 1)


_CURSOR_PARAMS = ("after_cursor", "upto_cursor", "cursor")


def parse_date(params: Mapping[str, str], name: str, default: dt.date | None = None) -> dt.date:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        if default is not None:
            return default
        raise BadRequest(f"'{name}' is a required parameter")
    text = raw.strip()
    if _DATE.fullmatch(text):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            pass
        else:
            # No event can be older than the epoch; earlier days would only cost a long empty scan.
            if day < _FIRST_DAY:
                raise BadRequest(f"{name} cannot be earlier than {_FIRST_DAY.isoformat()}, got {raw!r}")
            return day
    raise BadRequest(f"{name} must be a date formatted YYYY-MM-DD, got {raw!r}")


def _limit(raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return value


def _bool(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name, "")
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadRequest(f"{name} must be true or false, got {raw!r}")


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer parameter from `low` to `high` (a 400 naming it otherwise); `default` when absent."""
    raw = params.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


def parse_event_param(raw: str | None) -> tuple[str, ...] | None:
    """`event`: a JSON array of names (`["a", "b"]`). A JSON string, or text that is not JSON at
    all (mixpanel-go passes user input through), is one name. An empty array means every event."""
    if raw is None or raw.strip() == "":
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return (raw,)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        if not all(isinstance(name, str) for name in value):
            raise BadRequest(f"event must be a JSON array of event names (strings), got {raw!r}")
        return tuple(dict.fromkeys(value)) or None
    if isinstance(value, dict):
        raise BadRequest(f"event must be a JSON array of event names (strings), got {raw!r}")
    return (raw,)  # a number, true/false or null: the text itself is the name


def build_plan(request: ExportRequest, project: Project) -> ExportPlan:
    """The storage plan: the days as half-open UTC instants, split where the UTC offset changes,
    and `where` parsed (a syntax error is a 400 here, before any store is asked)."""
    tz = project.zone
    start_ms, end_ms = timeutil.day_range_ms(tz, request.from_date, request.to_date)
    return ExportPlan(
        project_id=project.project_id,
        segments=tuple(timeutil.offset_segments(tz, start_ms, end_ms)),
        events=request.events,
        where=None if request.where is None else parse(request.where),
        timezone=project.timezone,
        limit=request.limit,
        time_in_ms=request.time_in_ms,
        time_utc=request.time_utc,
        resolve_identity=not request.as_ingested,
    )
