"""Against a live server: the official SDK ingests, mixpanel-utils and plain requests export."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
import requests
from mixpanel import Consumer, Mixpanel
from mixpanel_utils import MixpanelUtils

from rawevents import timeutil
from rawevents.projects import Project
from tests.export.bigdata import build
from tests.export.helpers import basic, rows
from tests.live_server import LiveServer
from tests.stores import store_setting

NY = "America/New_York"
# Local day 2024-05-01 in New York is [04:00Z on May 1, 04:00Z on May 2).
MAY_1_NY_MS = int(dt.datetime(2024, 5, 1, 4, tzinfo=dt.UTC).timestamp() * 1000)


def sdk(server: LiveServer, project: Project) -> Mixpanel:
    base = server.base_url
    consumer = Consumer(
        events_url=f"{base}/track",
        people_url=f"{base}/engage",
        import_url=f"{base}/import",
        groups_url=f"{base}/groups",
    )
    return Mixpanel(project.token, consumer=consumer)


def utils(server: LiveServer, secret: str, **kwargs: Any) -> MixpanelUtils:
    client = MixpanelUtils(secret, **kwargs)
    client.raw_api = client.formatted_api = f"{server.base_url}/api"  # what data-eu etc. users change
    return client


SENT: list[tuple[str, str, int, dict[str, Any]]] = [
    # (distinct_id, event, UTC ms, properties) in ingestion order; times out of order on purpose
    ("u1", "signup", MAY_1_NY_MS + 3_600_000, {"plan": "pro", "n": 3, "ok": True}),
    ("u2", "purchase", MAY_1_NY_MS + 1_000, {"amount": 9.99, "items": ["a", "b"], "meta": {"k": None}}),
    ("u3", "purchase", MAY_1_NY_MS + 3_600_000, {"amount": 10, "currency": "EUR", "ünï": "日本"}),
    ("u1", "page view", MAY_1_NY_MS + 86_399_999, {"url": 'https://x.test/?q=1&r="2"'}),
    ("u9", "next day", MAY_1_NY_MS + 86_400_000, {}),
    ("u0", "day before", MAY_1_NY_MS - 1, {}),
]


@pytest.fixture(scope="module")
def ny_project(server: LiveServer) -> Project:
    """A New York project filled through the official SDK's /import (one call per event)."""
    project = server.create_project("live-ny", NY)
    mp = sdk(server, project)
    logging.getLogger("mixpanel").setLevel(logging.ERROR)
    for distinct_id, event, time_ms, props in SENT:
        # import_data sends `time` in seconds; a millisecond `time` property overrides it.
        mp.import_data(
            None,
            distinct_id,
            event,
            time_ms // 1000,
            {**props, "time": time_ms},
            api_secret=project.api_secret,
        )
    return project


def expected_rows(
    project: Project, wanted: list[tuple[str, str, int, dict[str, Any]]]
) -> list[tuple[Any, ...]]:
    ordered = sorted(wanted, key=lambda item: item[2])  # stable: ingestion order breaks ties
    return [
        (event, distinct_id, timeutil.local_seconds(project.zone, time_ms), props)
        for distinct_id, event, time_ms, props in ordered
    ]


def summarize(exported: list[dict[str, Any]], sent: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """(event, distinct_id, time, the sent properties as exported) per row, checking the shape."""
    out = []
    for row, (_, _, _, props) in zip(exported, sent, strict=True):
        assert list(row) == ["event", "properties"]
        properties = row["properties"]
        assert list(properties)[:2] == ["time", "distinct_id"]
        assert properties["$import"] is True and "token" not in properties
        out.append(
            (row["event"], properties["distinct_id"], properties["time"], {k: properties[k] for k in props})
        )
    return out


def test_mixpanel_utils_exports_what_the_sdk_sent(server: LiveServer, ny_project: Project) -> None:
    client = utils(server, ny_project.api_secret)
    want = expected_rows(ny_project, SENT[:4])
    for gzip_header in (False, True):
        exported = client.query_export(
            {"from_date": "2024-05-01", "to_date": "2024-05-01"}, add_gzip_header=gzip_header
        )
        assert summarize(exported, want) == want
    # Types survive exactly: ints stay ints, floats floats, lists, nested objects, null, unicode.
    by_user = {r["properties"]["distinct_id"]: r["properties"] for r in exported if r["event"] != "page view"}
    assert type(by_user["u1"]["n"]) is int and by_user["u1"]["ok"] is True
    assert by_user["u2"]["meta"] == {"k": None} and type(by_user["u2"]["amount"]) is float
    assert type(by_user["u3"]["amount"]) is int and by_user["u3"]["ünï"] == "日本"


def test_mixpanel_utils_filters(server: LiveServer, ny_project: Project) -> None:
    client = utils(server, ny_project.api_secret)
    params = {"from_date": "2024-04-30", "to_date": "2024-05-02", "event": ["purchase", "day before"]}
    exported = client.query_export(params)
    assert [(r["event"], r["properties"]["distinct_id"]) for r in exported] == [
        ("day before", "u0"),
        ("purchase", "u2"),
        ("purchase", "u3"),
    ]
    assert (
        client.query_export({"from_date": "2024-05-01", "to_date": "2024-05-01", "limit": 1}) == exported[1:2]
    )
    assert (
        client.query_export({"from_date": "2024-05-01", "to_date": "2024-05-01", "event": ["nothing"]}) == []
    )
    # mixpanel-utils URL-encodes `where` itself; the quoting users find confusing just works.
    where = {"from_date": "2024-05-01", "to_date": "2024-05-01", "where": 'properties["amount"] >= 9.99'}
    assert [r["properties"]["distinct_id"] for r in client.query_export(where)] == ["u2", "u3"]
    where["where"] = 'properties["url"] == "https://x.test/?q=1&r=\\"2\\""'
    assert [r["event"] for r in client.query_export(where)] == ["page view"]


def test_mixpanel_utils_with_a_service_account(server: LiveServer, ny_project: Project) -> None:
    account = server.registry.create_service_account(ny_project.project_id, "etl")
    client = utils(
        server, account.secret, service_account_username=account.username, project_id=ny_project.project_id
    )
    exported = client.query_export({"from_date": "2024-05-01", "to_date": "2024-05-01"}, add_gzip_header=True)
    assert [r["event"] for r in exported] == ["purchase", "signup", "purchase", "page view"]


def test_mixpanel_utils_raw_stream_to_gzip_files_per_day(
    server: LiveServer, ny_project: Project, tmp_path: Path
) -> None:
    client = utils(server, ny_project.api_secret)
    target = tmp_path / "events.json"
    params = {"from_date": "2024-04-30", "to_date": "2024-05-02"}
    client.export_events(str(target), params, add_gzip_header=True, raw_stream=True, request_per_day=True)
    days = {
        day: rows(gzip.decompress((tmp_path / f"events_{day}.json.gz").read_bytes()))
        for day in ("2024-04-30", "2024-05-01", "2024-05-02")
    }
    assert [r["event"] for r in days["2024-04-30"]] == ["day before"]
    assert len(days["2024-05-01"]) == 4
    assert [r["event"] for r in days["2024-05-02"]] == ["next day"]


def test_requests_gzip_stream(server: LiveServer, ny_project: Project) -> None:
    url = f"{server.base_url}/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01&time_in_ms=true"
    with requests.get(
        url, headers={**basic(ny_project.api_secret), "Accept-Encoding": "gzip"}, stream=True, timeout=30
    ) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Transfer-Encoding"] == "chunked"
        lines = [orjson.loads(line) for line in response.iter_lines()]
    offset = timeutil.offset_ms_at(ny_project.zone, MAY_1_NY_MS)
    assert [r["properties"]["time"] for r in lines] == sorted(t + offset for _, _, t, _ in SENT[:4])


def test_adjacent_days_concatenate_to_the_range(server: LiveServer, ny_project: Project) -> None:
    def export(first: str, last: str) -> bytes:
        return server.get(
            f"/api/2.0/export?from_date={first}&to_date={last}", headers=basic(ny_project.api_secret)
        ).content

    days = [export(d, d) for d in ("2024-04-30", "2024-05-01", "2024-05-02")]
    assert b"".join(days) == export("2024-04-30", "2024-05-02")
    assert len(rows(b"".join(days))) == len(SENT)


def test_an_acknowledged_event_is_in_the_next_export(server: LiveServer) -> None:
    project = server.create_project("realtime", "Asia/Kathmandu")
    mp = sdk(server, project)
    today = timeutil.today(project.zone).isoformat()
    url = f"/api/2.0/export?from_date={today}&to_date={today}"
    for i in range(5):
        mp.track(f"rt-{i}", "live", {"i": i})  # returns once /track answered
        exported = rows(server.get(url, headers=basic(project.api_secret)).content)
        assert [r["properties"]["i"] for r in exported] == list(range(i + 1))
    response = server.post(
        "/import?strict=1",
        json=[
            {
                "event": "imp",
                "properties": {"distinct_id": "x", "time": int(time.time() * 1000), "$insert_id": "i1"},
            }
        ],
        headers=basic(project.api_secret),
    )
    assert response.status_code == 200, response.text
    assert rows(server.get(url, headers=basic(project.api_secret)).content)[-1]["event"] == "imp"


def test_profiles_and_metadata_endpoints(server: LiveServer) -> None:
    project = server.create_project("people", "UTC")
    mp = sdk(server, project)
    for i in range(25):
        mp.people_set(f"p{i:02d}", {"name": f"N{i}", "age": i, "vip": i % 2 == 0, "tags": ["a"]})
    mp.track("p00", "clicked", {"button": "buy", "price": 3})
    client = utils(server, project.api_secret)
    people = client.query_engage({"page_size": 10})
    assert [p["$distinct_id"] for p in people] == [f"p{i:02d}" for i in range(25)]
    assert people[3]["$properties"]["age"] == 3
    auth = basic(project.api_secret)
    for path in ("/api/2.0/engage", "/api/2.0/engage/"):
        page = server.get(f"{path}?page=2&page_size=10", headers=auth).json()
        assert {k: page[k] for k in ("page", "page_size", "total", "status")} == {
            "page": 2,
            "page_size": 10,
            "total": 25,
            "status": "ok",
        }
        assert [r["$distinct_id"] for r in page["results"]] == ["p20", "p21", "p22", "p23", "p24"]
    posted = server.post("/api/2.0/engage", data={"distinct_ids": '["p01", "p02"]'}, headers=auth).json()
    assert [r["$distinct_id"] for r in posted["results"]] == ["p01", "p02"]
    for path in ("/api/2.0/events/properties/top", "/api/query/events/properties/top/"):
        top = server.get(f"{path}?event=clicked", headers=auth).json()
        assert top["button"] == {"count": 1} and top["price"] == {"count": 1} and "time" not in top
    props = server.get("/api/query/engage/properties", headers=auth).json()
    assert props["status"] == "ok"
    assert {k: props["results"][k] for k in ("name", "age", "vip", "tags")} == {
        "name": {"count": 25, "type": "string"},
        "age": {"count": 25, "type": "number"},
        "vip": {"count": 25, "type": "boolean"},
        "tags": {"count": 25, "type": "list"},
    }
    for path in ("/api/query/cohorts/list", "/api/2.0/cohorts/list/"):
        assert server.get(path, headers=auth).json() == []
    refused = server.get("/api/2.0/engage?page_size=0", headers=auth)
    assert refused.status_code == 400
    assert refused.json() == {
        "request": "/api/2.0/engage?page_size=0",
        "error": "page_size must be an integer from 1 to 100000, got '0'",
    }
    assert server.get("/api/query/cohorts/list").status_code == 401


# -- big exports on a server of their own ------------------------------------------------------

BIG_DAY_MS = int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp() * 1000)
BIG_COUNT = 200_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, store_kind: str) -> Iterator[tuple[LiveServer, Project]]:
    data_dir = tmp_path_factory.mktemp("big") / "data"
    store = store_setting(store_kind)
    project = build(data_dir, BIG_COUNT, BIG_DAY_MS, step_ms=400, store=store)
    live = LiveServer(data_dir, store=store).start()
    yield live, project
    live.stop()


def test_big_gzip_export_round_trips(big: tuple[LiveServer, Project]) -> None:
    live, project = big
    url = f"{live.base_url}/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01"
    with requests.get(
        url, headers={**basic(project.api_secret), "Accept-Encoding": "gzip"}, stream=True, timeout=60
    ) as response:
        count = 0
        last = -1
        for line in response.iter_lines():
            seq = orjson.loads(line)["properties"]["seq"]
            assert seq == last + 1
            last = seq
            count += 1
    assert count == BIG_COUNT


def test_client_disconnect_stops_the_scan_and_the_server_stays_healthy(
    big: tuple[LiveServer, Project],
) -> None:
    live, project = big
    assert live.process is not None
    url = f"{live.base_url}/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01"
    for encoding in ("gzip", "identity"):
        response = requests.get(
            url, headers={**basic(project.api_secret), "Accept-Encoding": encoding}, stream=True, timeout=30
        )
        first = response.raw.read(4096, decode_content=False)
        assert len(first) == 4096
        response.close()  # drops the connection mid-body
    # The scans stop: the store closes them (polled; no timing is asserted).
    deadline = time.monotonic() + 60
    while live.export_scans() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live.export_scans() == 0
    # And the next request is answered in full.
    small = live.get(
        "/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01&limit=3", headers=basic(project.api_secret)
    )
    assert [r["properties"]["seq"] for r in rows(small.content)] == [0, 1, 2]


def test_a_stalled_client_does_not_grow_server_memory(big: tuple[LiveServer, Project]) -> None:
    live, project = big
    assert live.process is not None
    server = psutil.Process(live.process.pid)
    url = f"{live.base_url}/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01"
    live.get(url.removeprefix(live.base_url), headers=basic(project.api_secret))  # warm DuckDB's cache
    before = server.memory_info().rss
    with requests.get(
        url, headers={**basic(project.api_secret), "Accept-Encoding": "identity"}, stream=True, timeout=30
    ) as response:
        response.raw.read(1024)
        time.sleep(1.0)  # the client stalls; the server must wait rather than buffer the 42 MB body
        stalled = server.memory_info().rss
        rest = len(response.raw.read())
    assert rest > 40_000_000
    assert stalled - before < 30_000_000  # well under the body: nothing is buffered


@pytest.mark.server
def test_rate_limits(tmp_path: Path, store_kind: str) -> None:
    env = {
        "RAWEVENTS_EXPORT_RATE_PER_HOUR": "3",
        "RAWEVENTS_EXPORT_MAX_CONCURRENT": "1",
    }
    live = LiveServer(tmp_path / "data", env=env, store=store_setting(store_kind)).start()
    try:
        hourly = live.create_project("hourly", "UTC")
        url = "/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01"
        for _ in range(5):
            head = requests.head(live.base_url + url, headers=basic(hourly.api_secret), timeout=30)
            assert head.status_code == 200  # HEAD is not counted
        assert [live.get(url, headers=basic(hourly.api_secret)).status_code for _ in range(3)] == [
            200,
            200,
            200,
        ]
        refused = live.get(url, headers=basic(hourly.api_secret))
        assert refused.status_code == 429
        assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
        assert refused.json() == {
            "request": url,
            "error": "Export rate limit exceeded for this project: 0/1 running, 3/3 in the last hour",
        }
        other = live.create_project("other", "UTC")
        assert live.get(url, headers=basic(other.api_secret)).status_code == 200  # per project
    finally:
        live.stop()


@pytest.mark.server
def test_concurrency_limit(tmp_path: Path, store_kind: str) -> None:
    data_dir = tmp_path / "data"
    store = store_setting(store_kind)
    project = build(data_dir, 100_000, BIG_DAY_MS, step_ms=800, store=store)
    live = LiveServer(data_dir, env={"RAWEVENTS_EXPORT_MAX_CONCURRENT": "1"}, store=store).start()
    try:
        url = f"{live.base_url}/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01"
        held = requests.get(
            url, headers={**basic(project.api_secret), "Accept-Encoding": "identity"}, stream=True, timeout=30
        )
        held.raw.read(1024)
        refused = requests.get(url, headers=basic(project.api_secret), timeout=30)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"] == "Export rate limit exceeded for this project: 1/1 running"
        held.close()
        deadline = time.monotonic() + 20
        status = 429
        while status == 429 and time.monotonic() < deadline:
            status = requests.get(url + "&limit=1", headers=basic(project.api_secret), timeout=30).status_code
            time.sleep(0.05)
        assert status == 200
    finally:
        live.stop()


def test_error_bodies_over_http(server: LiveServer) -> None:
    project = server.create_project("errors", "UTC")
    response = server.get(
        "/api/2.0/export?from_date=2024-05-01&to_date=2999-01-01", headers=basic(project.api_secret)
    )
    assert (response.status_code, response.headers["Content-Type"]) == (400, "application/json")
    assert json.loads(response.content) == {
        "request": "/api/2.0/export?from_date=2024-05-01&to_date=2999-01-01",
        "error": "to_date cannot be later than today",
    }
