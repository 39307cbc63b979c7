"""Request parameters shared by the export and the query endpoints: dates, integers, event lists.

Every rule is a 400 with a message that names the parameter and the value received. Neither
rawevents/export/ nor rawevents/query/ imports the other; both parse their parameters here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

import orjson

from rawevents.errors import BadRequest

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
FIRST_DAY = dt.date(1970, 1, 1)


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
            if day < FIRST_DAY:
                raise BadRequest(f"{name} cannot be earlier than {FIRST_DAY.isoformat()}, got {raw!r}")
            return day
    raise BadRequest(f"{name} must be a date formatted YYYY-MM-DD, got {raw!r}")


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
