"""`events/properties/values`, `engage/properties` on a project without profiles, and the paged
raw-event list (`/api/query/events/page`): complete, ordered, resumable, equal to the export."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from rawevents.projects import Project
from rawevents.service import Services
from tests.export.helpers import basic, rows, stored_event

DAY = dt.date(2024, 6, 3)
START = int(dt.datetime(2024, 6, 3, 4, tzinfo=dt.UTC).timestamp() * 1000)  # midnight in New York
SAME_MS = START + 3_600_000  # several events share this instant: the cursor must tell them apart
BROWSERS = ["Chrome"] * 5 + ["Firefox"] * 3 + [7] * 2 + [None]


@pytest.fixture(scope="module")
def project(services: Services) -> Project:
    found = services.registry.create_project("values-and-pages", "America/New_York")
    events = []
    for n in range(230):
        time_ms = SAME_MS if n % 10 == 0 else START + n * 97_000
        props: dict[str, Any] = {"distinct_id": f"u{n % 4}", "$insert_id": f"i{n}", "n": n}
        browser = BROWSERS[n % len(BROWSERS)]
        if browser is not None:
            props["browser"] = browser
        events.append(stored_event(found, "view" if n % 3 else "buy", time_ms, **props))
    services.store.submit_events(events).result()
    return found


def _get(client: TestClient, project: Project, path: str, **params: str) -> Any:
    response = client.get(path, params=params, headers=basic(project.api_secret))
    assert response.status_code == 200, response.text
    return response.json()


def test_property_values_most_frequent_first(client: TestClient, project: Project) -> None:
    values = _get(
        client,
        project,
        "/api/query/events/properties/values",
        name="browser",
        from_date="2024-06-03",
        to_date="2024-06-03",
    )
    assert values == ["Chrome", "Firefox", "7"]  # numbers as string() renders them; null left out
    assert _get(
        client,
        project,
        "/api/2.0/events/properties/values",
        name="browser",
        limit="1",
        from_date="2024-06-03",
        to_date="2024-06-03",
        event="buy",
        where='properties["n"] < 100',
    ) == ["Chrome"]


def test_property_values_needs_a_name(client: TestClient, project: Project) -> None:
    response = client.get("/api/query/events/properties/values", headers=basic(project.api_secret))
    assert response.status_code == 400
    assert response.json()["error"] == "'name' is a required parameter"


def test_engage_properties_is_never_empty(client: TestClient, services: Services) -> None:
    empty = services.registry.create_project("no-profiles", "UTC")
    for path in ("/api/query/engage/properties", "/api/2.0/engage/properties"):
        body = _get(client, empty, path)
        assert body["status"] == "ok"
        for name in ("$email", "$name", "$created", "$last_seen", "$city", "$region", "$country_code"):
            assert name in body["results"]
        assert body["results"]["$created"] == {"count": 0, "type": "datetime"}


def _all_pages(client: TestClient, project: Project, order: str, limit: int, **params: str) -> list[Any]:
    seen: list[Any] = []
    cursor = ""
    while True:
        query = {
            "from_date": "2024-06-03",
            "to_date": "2024-06-03",
            "order": order,
            "limit": str(limit),
            **params,
        }
        if cursor:
            query["cursor"] = cursor
        body = _get(client, project, "/api/query/events/page", **query)
        assert body["status"] == "ok" and len(body["results"]) <= limit
        seen += body["results"]
        if body["next_cursor"] is None:
            return seen
        cursor = body["next_cursor"]


@pytest.mark.parametrize("limit", [1, 7, 50, 1000])
def test_pages_hold_exactly_the_export_in_both_orders(
    client: TestClient, project: Project, limit: int
) -> None:
    export = rows(
        client.get(
            "/api/2.0/export",
            params={"from_date": "2024-06-03", "to_date": "2024-06-03"},
            headers=basic(project.api_secret),
        ).content
    )
    assert len(export) == 230
    assert _all_pages(client, project, "oldest", limit) == export
    assert _all_pages(client, project, "newest", limit) == export[::-1]


def test_pages_with_event_and_where_match_the_export(client: TestClient, project: Project) -> None:
    params = {"event": '["buy"]', "where": 'properties["browser"] == "Chrome"'}
    export = rows(
        client.get(
            "/api/2.0/export",
            params={"from_date": "2024-06-03", "to_date": "2024-06-03", **params},
            headers=basic(project.api_secret),
        ).content
    )
    assert export and all(r["event"] == "buy" and r["properties"]["browser"] == "Chrome" for r in export)
    assert _all_pages(client, project, "newest", 4, **params) == export[::-1]


def test_page_rows_are_the_stored_lines(client: TestClient, project: Project) -> None:
    response = client.get(
        "/api/query/events/page",
        params={"from_date": "2024-06-03", "to_date": "2024-06-03", "limit": "3"},
        headers=basic(project.api_secret),
    )
    body = orjson.loads(response.content)
    assert response.headers["content-type"] == "application/json"
    assert [r["properties"]["$insert_id"] for r in body["results"]] == [
        "i1",
        "i2",
        "i3",
    ]  # i0 is at SAME_MS, later


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cursor": "abc"}, "cursor must be a next_cursor value from a previous page, got 'abc'"),
        ({"order": "sideways"}, "order must be one of oldest, newest, got 'sideways'"),
        ({"limit": "1001"}, "limit must be an integer from 1 to 1000, got '1001'"),
        ({"where": 'properties["a" =='}, "where: "),
    ],
)
def test_bad_page_parameters(
    client: TestClient, project: Project, params: dict[str, str], message: str
) -> None:
    query = {"from_date": "2024-06-03", "to_date": "2024-06-03", **params}
    response = client.get("/api/query/events/page", params=query, headers=basic(project.api_secret))
    assert response.status_code == 400 and message in response.json()["error"]
