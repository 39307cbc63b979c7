"""The explorer's page load, 30 requests at a time, against 200k events over 30 days under the
default memory settings: every request is answered, none with a 5xx (queries wait for a slot of
the shared admission control instead of running the engine out of memory)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from rawevents.projects import Project
from tests.export.bigdata import build
from tests.export.helpers import basic
from tests.live_server import LiveServer
from tests.stores import store_setting

DAYS = 30
EVENTS = 200_000
FIRST_DAY = dt.date(2024, 5, 1)
START_MS = int(dt.datetime.combine(FIRST_DAY, dt.time(), dt.UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, store_kind: str) -> Iterator[tuple[LiveServer, Project]]:
    data_dir = tmp_path_factory.mktemp("page-load") / "data"
    store = store_setting(store_kind)
    project = build(data_dir, EVENTS, START_MS, step_ms=DAYS * 86_400_000 // EVENTS, store=store)
    live = LiveServer(data_dir, store=store).start()
    yield live, project
    live.stop()


def _page_requests() -> list[tuple[str, dict[str, str]]]:
    """What the explorer asks for on a page load (rawevents/explore/static/app.js)."""
    days = {
        "from_date": FIRST_DAY.isoformat(),
        "to_date": (FIRST_DAY + dt.timedelta(days=DAYS - 1)).isoformat(),
    }
    return [
        ("/api/rawevents/project", {}),
        ("/api/query/events/properties/top", {"limit": "200"}),
        ("/api/query/segmentation", {**days, "unit": "hour", "on": '"all events"', "type": "unique"}),
        ("/api/query/segmentation", {**days, "unit": "hour", "limit": "11"}),
        (
            "/api/query/segmentation",
            {**days, "unit": "day", "on": 'properties["distinct_id"]', "limit": "20"},
        ),
        ("/api/query/events/properties/values", {**days, "name": "$browser", "limit": "20"}),
        ("/api/query/events/page", {**days, "limit": "50"}),
    ]


def test_thirty_page_requests_at_once_get_no_5xx(loaded: tuple[LiveServer, Project]) -> None:
    live, project = loaded
    headers = basic(project.api_secret)
    wanted = _page_requests() * 5  # five page loads at once: 35 requests, 30 in flight

    def ask(request: tuple[str, dict[str, str]]) -> tuple[str, int, str]:
        path, params = request
        reply = requests.get(live.base_url + path, params=params, headers=headers, timeout=120)
        return path, reply.status_code, reply.text[:200]

    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(ask, wanted))
    assert [answer for answer in answers if answer[1] >= 500] == []
    assert {status for _, status, _ in answers} == {200}
