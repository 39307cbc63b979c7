"""Issue 26, findings 1-3: what one query may cost is checked before any work, on every store.

- a range of minutes from 1970 to 9999 (which grew the server without limit) or to today (191 s
  of CPU, 1.8 GB) is a 400 at once, from a bucket count computed arithmetically;
- `limit` x buckets over the cell cap (a 1.7 GB answer of zeros) is a 400 naming the cap and
  what to change; the body is written from the sparse counts, its exact size known first;
- days past what the stores and zones represent are a 400 on every endpoint that takes dates
  (9999-12-31 was a 500 OverflowError);
- queries take the export's admission slots: none free in time is a 503 with Retry-After.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import tracemalloc
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from rawevents.errors import BadRequest
from rawevents.export.admission import ExportAdmission
from rawevents.export.ratelimit import ExportRateLimiter
from rawevents.projects import Project
from rawevents.query import cost, segmentation
from rawevents.query.cost import QueryLimits
from rawevents.service import Services
from rawevents.settings import Config
from tests.export.helpers import basic, stored_event

DAY_MS = 86_400_000
START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
EVENTS = 3000  # over 5 days, each with its own $insert_id


@pytest.fixture(scope="module")
def project(services: Services) -> Project:
    created = services.registry.create_project("cost", "UTC")
    base = int(START.timestamp() * 1000)
    step = 5 * DAY_MS // EVENTS
    rows = [
        stored_event(created, "e", base + i * step, distinct_id=f"u{i % 40}", **{"$insert_id": f"c{i}"})
        for i in range(EVENTS)
    ]
    services.store.submit_events(rows).result()
    return created


def _get(client: TestClient, project: Project, path: str, timeout: float = 10.0, **params: str) -> Any:
    """The response, or a failure when the server has not answered within `timeout` seconds (the
    old code spent minutes, or grew without end, before answering)."""
    found: list[Any] = []

    def ask() -> None:
        found.append(client.get(path, params=params, headers=basic(project.api_secret)))

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout)
    assert found, f"{path} {params} not answered within {timeout} s"
    return found[0]


def _refused(response: Any, *fragments: str) -> None:
    assert response.status_code == 400, response.text[:300]
    body = response.json()
    assert set(body) == {"request", "error"}
    for fragment in fragments:
        assert fragment in body["error"], body["error"]


# ---- finding 1: the bucket count is arithmetic, checked before anything is listed ---------------


@pytest.mark.parametrize("to_date", ["2299-12-31", "today"])
def test_minutes_over_centuries_are_refused_at_once(
    client: TestClient, project: Project, to_date: str
) -> None:
    if to_date == "today":
        to_date = dt.date.today().isoformat()
    started = time.monotonic()
    response = _get(
        client, project, "/api/query/segmentation", from_date="1970-01-01", to_date=to_date, unit="minute"
    )
    _refused(response, "buckets; at most 10000: use a coarser unit (hour) or a shorter range")
    assert time.monotonic() - started < 2


def test_bucket_count_is_arithmetic_and_bounds_the_series() -> None:
    first, last = dt.date(1970, 1, 1), cost.LAST_DAY
    assert cost.bucket_count(first, last, "minute") == ((last - first).days + 1) * 1440
    assert cost.bucket_count(first, last, "month") == (2299 - 1970 + 1) * 12
    new_york = Project(1, "p", "t", "s", "America/New_York").zone
    for unit in ("minute", "hour", "day", "week", "month"):
        for start, end in [
            (dt.date(2024, 3, 9), dt.date(2024, 3, 11)),
            (dt.date(2024, 10, 30), dt.date(2024, 11, 4)),
        ]:
            listed = list(segmentation.bucket_starts(segmentation.DayRange(start, end), unit, new_york))
            counted = cost.bucket_count(start, end, unit)
            assert len(listed) <= counted <= len(listed) + 60  # only a spring-forward gap is left out


# ---- finding 2: cells and bytes --------------------------------------------------------------------


def test_a_dense_table_over_the_cell_cap_is_refused(client: TestClient, project: Project) -> None:
    # The 1.7 GB answer: minutes over 5 days keyed by a property unique per event.
    params = {"from_date": "2024-05-01", "to_date": "2024-05-05", "unit": "minute", "limit": "10000"}
    response = _get(client, project, "/api/query/segmentation", on='properties["$insert_id"]', **params)
    _refused(
        response,
        "limit=10000 x 7200 buckets",
        "72000000 cells; at most 1000000",
        "use a smaller limit (at most 138 here), a coarser unit (hour) or a shorter range",
    )
    within = _get(
        client,
        project,
        "/api/query/segmentation",
        on='properties["$insert_id"]',
        **{**params, "limit": "138"},
    )
    assert within.status_code == 200
    values = within.json()["data"]["values"]
    assert len(values) == 138 and all(len(row) == 7200 for row in values.values())


def test_the_answer_is_written_from_sparse_counts_within_its_byte_cap(
    services: Services, project: Project
) -> None:
    params = {"from_date": "2024-05-01", "to_date": "2024-05-05", "unit": "hour", "limit": "2000"}
    params["on"] = 'properties["$insert_id"]'
    tracemalloc.start()
    try:
        body = segmentation.segmentation(services.store, project, params).body
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    answer = orjson.loads(body)
    assert answer["legend_size"] == 2000 and all(
        sum(row.values()) == 1 for row in answer["data"]["values"].values()
    )
    # A keys x buckets table of Python objects (dicts of 120 zeros per key) would take several
    # times the body; bytes written row by row stay near two bodies.
    assert peak < 3 * len(body) + 4_000_000, (peak, len(body))
    exact = QueryLimits(max_answer_bytes=len(body))
    assert segmentation.segmentation(services.store, project, params, exact).body == body
    with pytest.raises(
        BadRequest, match=f"the answer would be {len(body)} bytes; at most {len(body) - 1}: use a"
    ):
        segmentation.segmentation(
            services.store, project, params, QueryLimits(max_answer_bytes=len(body) - 1)
        )


def test_every_answer_is_within_the_byte_cap(config: Config, services: Services, project: Project) -> None:
    small = Config(**{**_fields(config), "export_memory_budget_mb": 1, "export_max_running": 1})
    assert QueryLimits.from_config(small).max_answer_bytes == 1024 * 1024
    with TestClient(_app(small, services)) as client:
        days = {"from_date": "2024-05-01", "to_date": "2024-05-05"}
        values = _get(client, project, "/api/query/events/properties/values", name="$insert_id", **days)
        assert values.status_code == 200  # 3,000 short values
        page = _get(client, project, "/api/query/events/page", from_date="2024-05-01", to_date="2024-05-05",
                    limit="1000")  # fmt: skip
        assert page.status_code == 200
    tiny = QueryLimits(max_answer_bytes=20_000)
    from rawevents.query import events_page

    params = {"from_date": "2024-05-01", "to_date": "2024-05-05", "limit": "1000"}
    shown: list[Any] = []
    cursor = ""
    while True:
        body = events_page.events_page(
            services.store, project, {**params, "cursor": cursor}, tiny.max_answer_bytes
        )
        assert len(body.body) <= tiny.max_answer_bytes
        page_body = orjson.loads(body.body)
        shown += page_body["results"]
        if page_body["next_cursor"] is None:
            break
        cursor = page_body["next_cursor"]
    # Shorter pages, nothing skipped or repeated.
    assert [e["properties"]["$insert_id"] for e in shown] == [f"c{i}" for i in range(EVENTS)]


# ---- finding 3: dates past what the stores and zones represent --------------------------------------

ENDPOINTS = ["/api/query/segmentation", "/api/query/events/properties/values", "/api/query/events/page"]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    ("zone", "to_date"),
    [("UTC", "9999-12-31"), ("America/New_York", "9999-12-30"), ("Pacific/Kiritimati", "2300-01-01")],
)
def test_days_past_the_stores_are_400(
    client: TestClient, services: Services, path: str, zone: str, to_date: str
) -> None:
    project = _zone_project(services, zone)
    params = {"from_date": "2299-12-01", "to_date": to_date, "unit": "month", "name": "x"}
    _refused(
        _get(client, project, path, **params), "to_date cannot be later than 2299-12-31", f"got {to_date}"
    )


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("zone", ["America/New_York", "Pacific/Kiritimati", "Etc/GMT+12"])
def test_the_last_day_is_answered(client: TestClient, services: Services, path: str, zone: str) -> None:
    project = _zone_project(services, zone)
    params = {"from_date": "1970-01-01", "to_date": "2299-12-31", "unit": "month", "name": "x"}
    response = _get(client, project, path, **params)
    assert response.status_code == 200, response.text[:300]
    if path.endswith("segmentation"):
        assert len(response.json()["data"]["series"]) == (2299 - 1970 + 1) * 12


# ---- admission: queries share the export's slots ----------------------------------------------------


def test_queries_wait_for_an_export_slot_then_503(client: TestClient, project: Project) -> None:
    gate = ExportAdmission(1, 0, ExportRateLimiter(0, 0, 0))
    app: Any = client.app
    previous = getattr(app.state, "export_admission", None)
    app.state.export_admission = gate
    try:
        gate.running = 1  # an export streams
        busy = _get(client, project, "/api/query/segmentation", from_date="2024-05-01", to_date="2024-05-05")
        assert busy.status_code == 503 and busy.headers["Retry-After"].isdigit()
        assert set(busy.json()) == {"request", "error"} and "1/1" in busy.json()["error"]
        light = _get(client, project, "/api/rawevents/project")
        assert light.status_code == 200  # reads no events: no slot
        gate.running = 0
        done = _get(client, project, "/api/query/segmentation", from_date="2024-05-01", to_date="2024-05-05")
        assert done.status_code == 200 and gate.running == 0  # the slot was given back
    finally:
        app.state.export_admission = previous


# ---- helpers -------------------------------------------------------------------------------------


_ZONES: dict[tuple[int, str], Project] = {}


def _zone_project(services: Services, zone: str) -> Project:
    key = (id(services), zone)
    if key not in _ZONES:
        _ZONES[key] = services.registry.create_project(f"cost-{zone}", zone)
    return _ZONES[key]


def _fields(config: Config) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def _app(config: Config, services: Services) -> Any:
    from rawevents.http.app import create_app

    return create_app(config, services)
