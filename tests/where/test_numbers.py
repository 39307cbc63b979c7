"""Issue 26, finding 4: one meaning for every JSON number, on every store.

With v = 2**64, -(2**63) - 1 or 2**63, `properties["v"] > 1` matched 21 events on duckdb and 18
on chdb, `== 18446744073709551616` 3 against 0, `< 0` 3 against 0, and `string(properties["v"])`
gave `1.8446744073709552e+19` on duckdb but `18446744073709552000` on chdb (ClickHouse reads back
the stored double as an integer text past 64 bits, which its JSON parser calls a string).

Here: the reference's definitions, then the same events and queries on duckdb and chdb through
every query endpoint and the export, answers compared byte for byte and with the reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from rawevents.http.app import create_app
from rawevents.service import Services
from rawevents.settings import load_config
from rawevents.where import value_of
from rawevents.where.values import UNDEFINED
from tests.export.helpers import basic, stored_event
from tests.where.test_agreement import as_ingested

T0 = 1_714_521_600_000  # 2024-05-01
LIMITS: list[Any] = [
    2**64, -(2**63) - 1, 2**63, 2**63 - 1, -(2**63), 2**64 - 1, 10**30, 2**96, 2**53 + 1,
    123456789012345678, -0.0, 0, 1e308, -1e308, 5e-324, 0.1, 1.5, -7, 3,
    "123", "-0", "1e400", "18446744073709551616", "0.1", " 1", True, None, [2**63], {"k": float(2**64)},
]  # fmt: skip
WHERES = [
    'properties["v"] > 1',
    'properties["v"] == 18446744073709551616',
    'properties["v"] < 0',
    'properties["v"] == 0',
    'properties["v"] == -0',
    'properties["v"] == 9223372036854775808',
    'properties["v"] >= 1e308',
    'properties["v"] % 7 == 1',
    'properties["v"] % 7 == -1',
    'properties["v"] / 3 > 1e18',
    'properties["v"] * 2 > 1e308',
    'number(properties["v"]) > 100',
    'number(properties["v"]) == 18446744073709551616',
    'string(properties["v"]) == "1.8446744073709552e+19"',
    'string(properties["v"]) == "-0"',
    'properties["v"] == "123"',
    'boolean(properties["v"])',
    'floor(properties["v"]) == properties["v"]',
    'round(properties["v"]) > 1e18',
    'any(x, properties["v"], x > 1)',
    'properties["v"]["k"] > 1',
    'properties["v"] in [18446744073709551616, -0, "123"]',
    'datetime(properties["v"]) > datetime(0)',
]


# ---- the reference ---------------------------------------------------------------------------------


def _string_of(value: Any) -> Any:
    return value_of('string(properties["v"])', {"properties": {"v": value}, "time_ms": T0, "local_time": 0})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2**64, "1.8446744073709552e+19"),
        (1.8446744073709552e19, "1.8446744073709552e+19"),
        (-(2**63) - 1, "-9.223372036854776e+18"),
        (2**63, "9.223372036854776e+18"),
        (2**53 + 1, "9007199254740992"),
        (10**30, "1e+30"),
        (-0.0, "-0"),
        (0, "0"),
        (1e308, "1e+308"),
        (5e-324, "5e-324"),
        (10**400, UNDEFINED),  # past the double range: undefined, as 1e400 is (not an OverflowError)
        ("1e400", "1e400"),  # a string stays itself
        ("18446744073709551616", "18446744073709551616"),
    ],
)
def test_the_reference_defines_every_number(value: Any, text: Any) -> None:
    assert _string_of(value) == text


def test_integers_read_as_their_nearest_double() -> None:
    event = {"properties": {"a": 2**64, "b": float(2**64), "c": 10**400}, "time_ms": T0, "local_time": 0}
    assert value_of('properties["a"] == properties["b"]', event) is True
    assert value_of('properties["a"] == 18446744073709551616', event) is True
    assert value_of('defined(properties["c"])', event) is False
    assert value_of('number("18446744073709551616") == properties["a"]', event) is True
    assert value_of('"123" == 123', None) is False  # a number written as a string is a string
    assert value_of('number("123") == 123', None) is True
    assert value_of("9223372036854775808 % 7", None) == 1.0  # exact fmod
    assert value_of("79228162514264337593543950336 % 7", None) is UNDEFINED  # 2**96: past MOD_LIMIT


# ---- the stores: same events, same queries, same bytes ----------------------------------------------


@pytest.fixture(scope="module")
def clients(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[TestClient, str, list[Any]]]]:
    opened: list[tuple[Services, TestClient]] = []
    found: dict[str, tuple[TestClient, str, list[Any]]] = {}
    try:
        for kind in ("duckdb", "chdb"):
            data_dir = Path(tmp_path_factory.mktemp(f"numbers-{kind}")) / "data"
            config = load_config({}, data_dir=str(data_dir), store=kind, ingest_processes=0)
            services = Services.open(config)
            project = services.registry.create_project("numbers", "UTC")
            assert project.api_secret is not None
            values = [
                as_ingested(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                for v in LIMITS
            ]
            rows = [
                stored_event(
                    project, "e", T0 + i * 60_000, distinct_id=f"u{i % 5}", v=v, **{"$insert_id": f"n{i}"}
                )
                for i, v in enumerate(values)
            ]
            services.store.submit_events(rows).result()
            client = TestClient(create_app(config, services)).__enter__()
            opened.append((services, client))
            found[kind] = (client, project.api_secret, values)
        yield found
    finally:
        for services, client in opened:
            client.__exit__(None, None, None)
            services.close()


DAYS = {"from_date": "2024-05-01", "to_date": "2024-05-01"}
QUERIES: list[tuple[str, dict[str, str]]] = [
    ("/api/query/segmentation", {**DAYS, "on": 'properties["v"]', "limit": "100"}),
    ("/api/query/segmentation", {**DAYS, "on": 'properties["v"]', "type": "unique", "unit": "hour"}),
    ("/api/query/segmentation", {**DAYS, "on": 'string(properties["v"] % 7)', "limit": "100"}),
    ("/api/query/segmentation", {**DAYS, "on": 'number(properties["v"]) + 1', "limit": "100"}),
    ("/api/query/events/properties/values", {**DAYS, "name": "v", "limit": "100"}),
    *[("/api/query/segmentation", {**DAYS, "where": where, "unit": "minute"}) for where in WHERES],
    *[("/api/query/events/page", {**DAYS, "where": where, "limit": "100"}) for where in WHERES],
    *[("/api/2.0/export", {**DAYS, "where": where}) for where in WHERES],
]


@pytest.mark.parametrize(("path", "params"), QUERIES)
def test_duckdb_and_chdb_answer_the_same_bytes(
    clients: dict[str, tuple[TestClient, str, list[Any]]], path: str, params: dict[str, str]
) -> None:
    bodies = {}
    for kind, (client, secret, _) in clients.items():
        response = client.get(path, params=params, headers={**basic(secret), "Accept-Encoding": "identity"})
        assert response.status_code == 200, (kind, response.text[:300])
        bodies[kind] = response.content
    assert bodies["duckdb"] == bodies["chdb"]


@pytest.mark.parametrize("where", WHERES)
def test_the_stores_select_what_the_reference_selects(
    clients: dict[str, tuple[TestClient, str, list[Any]]], where: str
) -> None:
    from rawevents.where import evaluate

    client, secret, values = clients["duckdb"]
    expected = [
        f"n{i}"
        for i, v in enumerate(values)
        if evaluate(
            where, {"event": "e", "properties": {"v": v}, "time_ms": T0 + i * 60_000, "local_time": 0}
        )
    ]
    for kind, (client, secret, _) in clients.items():
        body = client.get("/api/2.0/export", params={**DAYS, "where": where}, headers=basic(secret)).content
        got = [orjson.loads(line)["properties"]["$insert_id"] for line in body.splitlines()]
        assert got == expected, (kind, where)


def test_segment_keys_are_the_references_strings(
    clients: dict[str, tuple[TestClient, str, list[Any]]],
) -> None:
    client, secret, values = clients["chdb"]
    params = {**DAYS, "on": 'properties["v"]', "limit": "100", "unit": "month"}
    keys = set(
        client.get("/api/query/segmentation", params=params, headers=basic(secret)).json()["data"]["values"]
    )
    expected = {text for v in values if isinstance(text := _string_of(v), str)}
    assert keys == expected
    assert "1.8446744073709552e+19" in keys and "18446744073709552000" not in keys
