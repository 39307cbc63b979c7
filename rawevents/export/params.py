"""Export parameters: parse and validate what the client sent, then build the storage plan.

Every rule here is a 400 with a message that names the parameter and the value received, so a
client author can fix the call from the error alone. Unknown parameters (`format`, `callback`,
`bucket`, `_`, …) are ignored, as Mixpanel does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from rawevents import timeutil
from rawevents.errors import BadRequest
from rawevents.params import FIRST_DAY as _FIRST_DAY
from rawevents.params import parse_date, parse_event_param
from rawevents.projects import Project
from rawevents.storage.base import ExportPlan
from rawevents.where import parse

MAX_LIMIT = 100_000
TIME_HEADER = "x-rawevents-time"  # response header: "utc" when the `time_utc` extension was honoured
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


_CURSOR_PARAMS = ("after_cursor", "upto_cursor", "cursor")


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
