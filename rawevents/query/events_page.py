"""`/api/query/events/page` (a rawevents extension): the raw events of a selection, one page at a
time, oldest or newest first, for the explorer's event list.

Paging is by keyset: the response's `next_cursor` names the last row's (instant, ingestion
order), and the next request reads only rows after it, so a page costs the same on page 1 and
page 1000 and nothing loads the whole selection. The rows are the export's lines, spliced into
the body as they are stored (no per-row JSON decoding), so each one is exactly what
`/api/2.0/export` returns for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import orjson

from rawevents.errors import BadRequest
from rawevents.export.params import int_param
from rawevents.projects import Project
from rawevents.query.params import choice_param, day_range, selection
from rawevents.storage.base import EventsPageQuery, EventStore

DEFAULT_PAGE = 50
MAX_PAGE = 1000
ORDERS = ("oldest", "newest")
_CURSOR = re.compile(r"(-?\d{1,19})\.(\d{1,19})")


class RawJson(NamedTuple):
    """A response body already serialised as JSON."""

    body: bytes


def events_page(store: EventStore, project: Project, params: Mapping[str, str]) -> RawJson:
    limit = int_param(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    query = EventsPageQuery(
        selection=selection(params, project, day_range(params, project)),
        limit=limit + 1,  # one more tells whether a next page exists
        newest_first=choice_param(params, "order", ORDERS, "oldest") == "newest",
        cursor=_cursor(params.get("cursor", "")),
    )
    rows = store.events_page(query)
    shown = rows[:limit]
    cursor = f"{shown[-1].time_ms}.{shown[-1].seq}" if len(rows) > limit else None
    lines = b",".join(row.line.rstrip("\n").encode() for row in shown)
    return RawJson(b'{"status":"ok","next_cursor":' + orjson.dumps(cursor) + b',"results":[' + lines + b"]}")


def _cursor(raw: str) -> tuple[int, int] | None:
    text = raw.strip()
    if text == "":
        return None
    match = _CURSOR.fullmatch(text)
    if match is None:
        raise BadRequest(f"cursor must be a next_cursor value from a previous page, got {raw!r}")
    return int(match.group(1)), int(match.group(2))
