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

import orjson

from rawevents.errors import BadRequest
from rawevents.params import int_param
from rawevents.projects import Project
from rawevents.query.cost import DEFAULT_LIMITS, RawJson
from rawevents.query.params import choice_param, day_range, selection
from rawevents.storage.base import EventsPageQuery, EventStore

DEFAULT_PAGE = 50
MAX_PAGE = 1000
ORDERS = ("oldest", "newest")
_CURSOR = re.compile(r"(-?\d{1,19})\.(\d{1,19})")


def events_page(
    store: EventStore,
    project: Project,
    params: Mapping[str, str],
    max_bytes: int = DEFAULT_LIMITS.max_answer_bytes,
) -> RawJson:
    """Up to `limit` rows; fewer when the next row would take the body past `max_bytes` (at least
    one row is always shown): `next_cursor` then resumes right after the last row shown."""
    limit = int_param(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    query = EventsPageQuery(
        selection=selection(params, project, day_range(params, project)),
        limit=limit + 1,  # one more tells whether a next page exists
        newest_first=choice_param(params, "order", ORDERS, "oldest") == "newest",
        cursor=_cursor(params.get("cursor", "")),
    )
    rows = store.events_page(query)
    lines: list[bytes] = []
    size = 96  # the envelope and the longest cursor
    for row in rows[:limit]:
        line = row.line.rstrip("\n").encode()
        size += len(line) + 1
        if lines and size > max_bytes:
            break
        lines.append(line)
    cursor = f"{rows[len(lines) - 1].time_ms}.{rows[len(lines) - 1].seq}" if len(rows) > len(lines) else None
    del rows
    body = b",".join(lines)
    return RawJson(b'{"status":"ok","next_cursor":' + orjson.dumps(cursor) + b',"results":[' + body + b"]}")


def _cursor(raw: str) -> tuple[int, int] | None:
    text = raw.strip()
    if text == "":
        return None
    match = _CURSOR.fullmatch(text)
    if match is None:
        raise BadRequest(f"cursor must be a next_cursor value from a previous page, got {raw!r}")
    return int(match.group(1)), int(match.group(2))
