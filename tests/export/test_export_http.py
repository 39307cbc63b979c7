"""The export endpoint in-process: rows, filters, encodings and every error body, pinned."""

from __future__ import annotations

import datetime as dt
import gzip
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from rawevents.projects import Project
from rawevents.service import Services
from rawevents.storage.base import StoredEvent
from tests.export.helpers import basic, gunzip_strict, lines_of, rows, stored_event

DAY = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
DAY_MS = int(DAY.timestamp() * 1000)
RANGE = "from_date=2024-05-01&to_date=2024-05-02"
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture
def project(services: Services) -> Project:
    return services.registry.create_project("export", "UTC")


@pytest.fixture
def events(services: Services, project: Project) -> list[StoredEvent]:
    """Out-of-order ingestion, equal timestamps, types of every kind, a second day and a row
    just outside the range on each side."""
    made = [
        stored_event(project, "signup", DAY_MS + 5_000, distinct_id="u1", plan="pro", n=1),
        stored_event(project, "purchase", DAY_MS + 1_000, distinct_id="u2", amount=9.5, tags=["a", "b"]),
        stored_event(project, "purchase", DAY_MS + 5_000, distinct_id="u3", amount=10, ok=True, none=None),
        stored_event(
            project, "signup", DAY_MS + 86_400_000 + 1, distinct_id="u4", nested={"k": [1, {"x": "y"}]}
        ),
        stored_event(project, "Ünïcode ✓", DAY_MS + 7_250, distinct_id="ü", text='日本語 "q" \\ \n'),
        stored_event(project, "anon", DAY_MS + 9_999),
    ]
    outside = [
        stored_event(project, "signup", DAY_MS - 1, distinct_id="before"),
        stored_event(project, "signup", DAY_MS + 2 * 86_400_000, distinct_id="after"),
    ]
    services.store.submit_events(made + outside).result()
    return sorted(made, key=lambda e: e.time_ms)  # stable: ingestion order breaks ties


def export(client: TestClient, project: Project, query: str, **headers: str) -> Any:
    return client.get(
        f"/api/2.0/export?{query}", headers={**basic(project.api_secret), **IDENTITY, **headers}
    )


def test_rows_come_back_byte_for_byte_in_time_then_ingestion_order(
    client: TestClient, project: Project, events: list[StoredEvent]
) -> None:
    response = export(client, project, RANGE)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "content-encoding" not in response.headers
    assert "content-length" not in response.headers  # chunked
    assert response.content == lines_of(events)
    first = rows(response.content)[0]
    assert list(first) == ["event", "properties"]
    assert list(first["properties"])[:2] == ["time", "distinct_id"]


def test_gzip_when_accepted_is_one_gzip_member(
    client: TestClient, project: Project, events: list[StoredEvent]
) -> None:
    response = client.get(
        f"/api/2.0/export?{RANGE}", headers={**basic(project.api_secret), "Accept-Encoding": "gzip"}
    )
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == lines_of(events)  # decoded by the client


def test_raw_gzip_bytes_decode_with_a_single_member_decoder(
    client: TestClient, project: Project, events: list[StoredEvent]
) -> None:
    with client.stream(
        "GET", f"/api/2.0/export?{RANGE}", headers={**basic(project.api_secret), "Accept-Encoding": "gzip"}
    ) as response:
        raw = b"".join(response.iter_raw())
    assert raw[:2] == b"\x1f\x8b"
    assert gunzip_strict(raw) == lines_of(events)


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [("gzip", True), ("gzip, deflate, br", True), ("x-gzip", True), ("*", True), ("deflate", False),
     ("gzip;q=0", False), ("*, gzip;q=0", False), ("identity", False), ("br;q=1, gzip;q=0.5", True)],
)  # fmt: skip
def test_accept_encoding_negotiation(
    client: TestClient, project: Project, accept: str, gzipped: bool
) -> None:
    response = export(client, project, RANGE, **{"Accept-Encoding": accept})
    assert response.status_code == 200
    assert (response.headers.get("content-encoding") == "gzip") is gzipped


def test_no_rows_is_an_empty_body(client: TestClient, project: Project) -> None:
    response = export(client, project, RANGE)
    assert (response.status_code, response.content) == (200, b"")
    gz = client.get(
        f"/api/2.0/export?{RANGE}", headers={**basic(project.api_secret), "Accept-Encoding": "gzip"}
    )
    assert (gz.status_code, gz.headers["content-encoding"], gz.content) == (200, "gzip", b"")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('event=["purchase"]', ["purchase", "purchase"]),
        ('event=["purchase", "signup"]', ["purchase", "signup", "purchase", "signup"]),
        ("event=signup", ["signup", "signup"]),
        ('event="anon"', ["anon"]),
        ('event=["Ünïcode ✓"]', ["Ünïcode ✓"]),
        ('event=["nothing"]', []),
        ("limit=2", ["purchase", "signup"]),
        ('limit=1&event=["signup"]', ["signup"]),
        ("from_date=2024-05-02&to_date=2024-05-02", ["signup"]),
        ("from_date=2024-04-30&to_date=2024-04-30", ["signup"]),
    ],
)
def test_filters(
    client: TestClient, project: Project, events: list[StoredEvent], query: str, expected: list[str]
) -> None:
    if "from_date" not in query:
        query = f"{RANGE}&{query}"
    response = export(client, project, query)
    assert response.status_code == 200, response.text
    assert [row["event"] for row in rows(response.content)] == expected


def test_limit_applies_after_filters_in_order(
    client: TestClient, project: Project, events: list[StoredEvent]
) -> None:
    response = export(client, project, f'{RANGE}&event=["purchase","signup"]&limit=3')
    assert [r["properties"]["distinct_id"] for r in rows(response.content)] == ["u2", "u1", "u3"]


def test_time_in_ms(client: TestClient, project: Project, events: list[StoredEvent]) -> None:
    seconds = rows(export(client, project, RANGE).content)
    millis = rows(export(client, project, f"{RANGE}&time_in_ms=true").content)
    assert [r["properties"]["time"] for r in millis] == [e.time_ms for e in events]
    assert [r["properties"]["time"] for r in seconds] == [e.time_ms // 1000 for e in events]
    for s, m in zip(seconds, millis, strict=True):
        s["properties"].pop("time")
        m["properties"].pop("time")
        assert s == m


def test_types_survive(client: TestClient, project: Project, events: list[StoredEvent]) -> None:
    by_id = {
        r["properties"].get("distinct_id"): r["properties"]
        for r in rows(export(client, project, RANGE).content)
    }
    assert by_id["u2"]["amount"] == 9.5 and by_id["u2"]["tags"] == ["a", "b"]
    assert by_id["u3"]["amount"] == 10 and isinstance(by_id["u3"]["amount"], int)
    assert by_id["u3"]["ok"] is True and by_id["u3"]["none"] is None
    assert by_id["u4"]["nested"] == {"k": [1, {"x": "y"}]}
    assert by_id["ü"]["text"] == '日本語 "q" \\ \n'
    assert "distinct_id" not in by_id[None]


@pytest.mark.parametrize("path", ["/api/2.0/export", "/api/2.0/export/"])
def test_post_form_and_trailing_slash(
    client: TestClient, project: Project, events: list[StoredEvent], path: str
) -> None:
    response = client.post(
        path,
        data={"from_date": "2024-05-01", "to_date": "2024-05-02", "event": '["signup"]'},
        headers={**basic(project.api_secret), **IDENTITY},
    )
    assert response.status_code == 200
    assert [r["event"] for r in rows(response.content)] == ["signup", "signup"]
    assert client.get(
        f"{path}?{RANGE}", headers={**basic(project.api_secret), **IDENTITY}
    ).content == lines_of(events)


def test_head_sends_headers_only(client: TestClient, project: Project, events: list[StoredEvent]) -> None:
    response = client.head(
        f"/api/2.0/export?{RANGE}", headers={**basic(project.api_secret), "Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == b""
    bad = client.head("/api/2.0/export?from_date=x", headers=basic(project.api_secret))
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("", 400, "'from_date' is a required parameter"),
        ("from_date=2024-05-01", 400, "'to_date' is a required parameter"),
        (
            "from_date=2024-5-1&to_date=2024-05-02",
            400,
            "from_date must be a date formatted YYYY-MM-DD, got '2024-5-1'",
        ),
        ("from_date=2024-05-03&to_date=2024-05-02", 400, "from_date 2024-05-03 is after to_date 2024-05-02"),
        ("from_date=2024-05-01&to_date=2999-01-01", 400, "to_date cannot be later than today"),
        (f"{RANGE}&limit=0", 400, "limit must be an integer from 1 to 100000, got '0'"),
        (f"{RANGE}&limit=100001", 400, "limit must be an integer from 1 to 100000, got '100001'"),
        (f"{RANGE}&time_in_ms=maybe", 400, "time_in_ms must be true or false, got 'maybe'"),
        (f"{RANGE}&event=%5B1%5D", 400, "event must be a JSON array of event names (strings), got '[1]'"),
    ],
)
def test_error_bodies(client: TestClient, project: Project, query: str, status: int, error: str) -> None:
    response = export(client, project, query)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    path = "/api/2.0/export" + (f"?{query}" if query else "")
    assert response.json() == {"request": path, "error": error}


def test_validation_uses_the_project_time_zone_for_today(client: TestClient, services: Services) -> None:
    # Kiritimati is UTC+14: its today is at least UTC's today, often tomorrow in UTC terms.
    ahead = services.registry.create_project("ahead", "Pacific/Kiritimati")
    behind = services.registry.create_project("behind", "Pacific/Pago_Pago")  # UTC-11
    ahead_today = dt.datetime.now(ahead.zone).date().isoformat()
    ok = export(client, ahead, f"from_date={ahead_today}&to_date={ahead_today}")
    assert ok.status_code == 200
    refused = export(client, behind, f"from_date={ahead_today}&to_date={ahead_today}")
    if dt.datetime.now(behind.zone).date().isoformat() != ahead_today:
        assert refused.json()["error"] == "to_date cannot be later than today"


def test_unknown_parameters_are_ignored(
    client: TestClient, project: Project, events: list[StoredEvent]
) -> None:
    response = export(client, project, f"{RANGE}&format=json&callback=cb&bucket=b&_=123&test=1")
    assert response.content == lines_of(events)


def test_a_project_sees_only_its_own_events(
    client: TestClient, services: Services, events: list[StoredEvent]
) -> None:
    other = services.registry.create_project("other", "UTC")
    services.store.submit_events([stored_event(other, "mine", DAY_MS, distinct_id="o")]).result()
    assert rows(export(client, other, RANGE).content) == [
        {
            "event": "mine",
            "properties": {"time": DAY_MS // 1000, "distinct_id": "o", "$insert_id": f"mine-{DAY_MS}-o"},
        }
    ]


def test_big_export_streams_in_many_pieces_and_round_trips(client: TestClient, services: Services) -> None:
    project = services.registry.create_project("big", "Europe/Berlin")
    made = [
        stored_event(
            project, f"e{i % 7}", DAY_MS + i * 37, distinct_id=f"user-{i % 1000}", i=i, pad="x" * (i % 50)
        )
        for i in range(60_000)
    ]
    for start in range(0, len(made), 20_000):
        services.store.submit_events(made[start : start + 20_000]).result()
    expected = lines_of(made)
    with client.stream(
        "GET", f"/api/2.0/export?{RANGE}", headers={**basic(project.api_secret), "Accept-Encoding": "gzip"}
    ) as response:
        pieces = list(response.iter_raw())
    assert len(pieces) > 1
    raw = b"".join(pieces)
    assert gunzip_strict(raw) == expected
    assert len(raw) < len(expected) / 3
    plain = export(client, project, RANGE)
    assert plain.content == expected
    assert gzip.decompress(raw).count(b"\n") == 60_000
    assert orjson.loads(expected.splitlines()[-1])["properties"]["i"] == 59_999


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ('properties["plan"] == "pro"', ["u1"]),
        ('properties["amount"] >= 10', ["u3"]),
        ('properties["amount"] > 1 and properties["amount"] < 10', ["u2"]),
        ('not defined(properties["distinct_id"])', [None]),
        ('"a" in properties["tags"]', ["u2"]),
        ('properties["ok"] == true or properties["n"] == 1', ["u1", "u3"]),
    ],
)
def test_where(
    client: TestClient, project: Project, events: list[StoredEvent], where: str, expected: list[Any]
) -> None:
    response = client.get(
        "/api/2.0/export",
        params={"from_date": "2024-05-01", "to_date": "2024-05-02", "where": where},
        headers={**basic(project.api_secret), **IDENTITY},
    )
    assert response.status_code == 200, response.text
    assert [r["properties"].get("distinct_id") for r in rows(response.content)] == expected


def test_where_combines_with_event_and_limit(
    client: TestClient, project: Project, events: list[StoredEvent]
) -> None:
    response = client.get(
        "/api/2.0/export",
        params={"from_date": "2024-05-01", "to_date": "2024-05-02", "event": '["purchase"]',
                "where": 'properties["amount"] > 0', "limit": "1"},
        headers={**basic(project.api_secret), **IDENTITY},
    )  # fmt: skip
    assert [r["properties"]["distinct_id"] for r in rows(response.content)] == ["u2"]


def test_where_syntax_error_is_a_400_with_position(client: TestClient, project: Project) -> None:
    target = (
        "/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01&where=properties%5B%22a%22%5D%20%3D%3D%20%5D"
    )
    response = client.get(target, headers=basic(project.api_secret))
    assert response.status_code == 400
    assert response.json() == {
        "request": target,
        "error": "where: expected an expression, found ']' at column 20: properties[\"a\"] == ]",
    }


def test_legacy_signature_can_be_switched_off(tmp_path: Any) -> None:
    from rawevents.http.app import create_app
    from rawevents.settings import load_config

    config = load_config(
        {"RAWEVENTS_LEGACY_SIGNATURE_AUTH": "false"}, data_dir=str(tmp_path / "off"), ingest_processes=0
    )
    opened = Services.open(config)
    try:
        project = opened.registry.create_project("p", "UTC")
        with TestClient(create_app(config, opened)) as off:
            response = off.get(f"/api/2.0/export?{RANGE}&api_key={project.token}&expire=9999999999&sig=abc")
            assert (response.status_code, response.json()["error"]) == (400, "invalid parameter: sig")
    finally:
        opened.close()


def test_an_oversized_form_body_is_refused(client: TestClient, project: Project) -> None:
    response = client.post(
        "/api/2.0/export",
        content=b"x=" + b"y" * 1_100_000,
        headers={**basic(project.api_secret), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert response.json() == {
        "request": "/api/2.0/export",
        "error": "request body larger than 1048576 bytes",
    }


def test_time_in_ms_with_tricky_event_names(client: TestClient, services: Services) -> None:
    # The milliseconds are spliced into the stored line by character offset: names with
    # multi-code-point graphemes, escapes and astral characters must not shift it.
    project = services.registry.create_project("names", "Asia/Kathmandu")
    names = ["👨‍👩‍👧", "e\u0301", "🇩🇪x", "\U0001f600", 'a"b\\', "日本", "\u2028"]
    services.store.submit_events(
        [stored_event(project, n, DAY_MS + i, distinct_id="d") for i, n in enumerate(names)]
    ).result()
    got = rows(export(client, project, f"{RANGE}&time_in_ms=true").content)
    offset = (5 * 3600 + 45 * 60) * 1000
    assert [(r["event"], r["properties"]["time"]) for r in got] == [
        (n, DAY_MS + i + offset) for i, n in enumerate(names)
    ]
