"""The §4.9 worked examples through the live export endpoint: /import, then /api/2.0/export with
`where`, checked against the reference evaluator over the same exported events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from rawevents.where import evaluate
from tests.live_server import LiveServer
from tests.where.cases import T0, WORKED_EXAMPLES

DAY = "2024-01-25"
DECOYS: list[dict[str, Any]] = [
    {},
    {"plan": "free", "n": 2, "ref": "google", "id": 4, "ids": "P2", "f": True},
]


def _import(server: LiveServer, secret: str, events: list[dict[str, Any]]) -> None:
    response = server.post("/import?strict=1", json=events, auth=(secret, ""))
    assert response.status_code == 200, response.text
    assert response.json()["num_records_imported"] == len(events)


def _export(server: LiveServer, secret: str, where: str | None) -> list[dict[str, Any]]:
    params = {"from_date": DAY, "to_date": DAY}
    if where is not None:
        params["where"] = where
    response = server.get("/api/2.0/export", params=params, auth=(secret, ""))
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()]


@pytest.mark.parametrize(("where", "props", "expected"), WORKED_EXAMPLES)
def test_worked_example_through_export(
    server: LiveServer, where: str, props: dict[str, Any], expected: bool
) -> None:
    project = server.create_project(f"where {where}")
    events = [
        {
            "event": "e",
            "properties": {"time": T0 // 1000 + i, "distinct_id": "u1", "$insert_id": f"w{i}", **p},
        }
        for i, p in enumerate([props, *DECOYS])
    ]
    _import(server, project.api_secret, events)
    every = _export(server, project.api_secret, None)
    assert len(every) == len(events)
    reference = [
        row
        for row in every
        if evaluate(
            where,
            {
                "event": row["event"],
                "properties": {k: v for k, v in row["properties"].items() if k != "time"},
                "time_ms": row["properties"]["time"] * 1000,
                "local_time": row["properties"]["time"],
            },
            project.timezone,
        )
    ]
    selected = _export(server, project.api_secret, where)
    assert selected == reference
    assert (every[0] in selected) is expected


def test_bad_where_is_a_400_naming_the_column(server: LiveServer) -> None:
    project = server.create_project("where errors")
    query = f"from_date={DAY}&to_date={DAY}&where=properties%5B%22plan%22%20%3D%3D%20%22pro%22"
    response = server.get(f"/api/2.0/export?{query}", auth=(project.api_secret, ""))
    assert response.status_code == 400
    body = response.json()
    assert body == {
        "request": f"/api/2.0/export?{query}",
        "error": """where: expected ']' at column 19: properties["plan" == "pro\"""",
    }


def test_escaped_and_unicode_values_through_ingest(server: LiveServer) -> None:
    """The substring prefilter assumes the stored line encodes strings like orjson does; this
    checks it against the real ingest path with quotes, escapes, control and non-ASCII text."""
    project = server.create_project("where unicode")
    values = ['pró "q" \\ \n\t 😀', "\u2028x\u0001", "a/b", "ünï"]
    events = [
        {
            "event": "é",
            "properties": {"time": T0 // 1000 + i, "distinct_id": "u", "$insert_id": f"u{i}", "v": v},
        }
        for i, v in enumerate(values)
    ]
    _import(server, project.api_secret, events)
    for i, value in enumerate(values):
        literal = orjson.dumps(value).decode()
        rows = _export(server, project.api_secret, f'properties["v"] == {literal}')
        assert [row["properties"]["$insert_id"] for row in rows] == [f"u{i}"]
        rows = _export(server, project.api_secret, f'{orjson.dumps(value[1:3]).decode()} in properties["v"]')
        assert f"u{i}" in [row["properties"]["$insert_id"] for row in rows]
    rows = _export(server, project.api_secret, 'event["name"] == "é"')
    assert len(rows) == len(values)
