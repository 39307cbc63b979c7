"""`/api/query/segmentation` against counts computed independently in Python from the generated
events: every unit, `on`, `where`, `type` and `limit`, in a New York project across both DST
changes (a 23-hour and a 25-hour day)."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter, defaultdict
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from rawevents.projects import Project
from rawevents.service import Services
from tests.export.helpers import basic, stored_event

ZONE = ZoneInfo("America/New_York")
UTC = dt.UTC
PLANS: list[Any] = ["free", "pro", 3, 2.5, True, None, "<absent>"]
# (from_date, to_date) around the fall-back night (2024-11-03) and the spring-forward night (2024-03-10).
FALL = (dt.date(2024, 10, 28), dt.date(2024, 11, 8))
SPRING = (dt.date(2024, 3, 9), dt.date(2024, 3, 11))


def _instant(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), ZONE).timestamp() * 1000)


def _events(start: dt.date, end: dt.date, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    low, high = _instant(start) - 7_200_000, _instant(end + dt.timedelta(days=1)) + 7_200_000
    found = []
    for n in range(count):
        plan = rng.choice(PLANS)
        props: dict[str, Any] = {"distinct_id": f"u{rng.randrange(25):02d}", "n": rng.randrange(10)}
        if plan != "<absent>":
            props["plan"] = plan
        props["$insert_id"] = f"i{seed}-{n}"
        found.append({"event": rng.choice("abc"), "time_ms": rng.randrange(low, high), "props": props})
    return found


def _dst_nights() -> list[dict[str, Any]]:
    """Extra events every 3 minutes through both DST nights (01:00-04:00 local, roughly)."""
    found = []
    for day in (dt.date(2024, 11, 3), dt.date(2024, 3, 10)):
        base = int(dt.datetime(day.year, day.month, day.day, 5, tzinfo=UTC).timestamp() * 1000)
        for minute in range(0, 180, 3):
            props = {
                "distinct_id": f"u{minute % 7:02d}",
                "n": minute % 10,
                "plan": "pro",
                "$insert_id": f"d{day}{minute}",
            }
            found.append({"event": "a", "time_ms": base + minute * 60_000 + 1234, "props": props})
    return found


@pytest.fixture(scope="module")
def data(services: Services) -> tuple[Project, list[dict[str, Any]]]:
    project = services.registry.create_project("segmentation", "America/New_York")
    events = _events(*FALL, 6000, 1) + _events(*SPRING, 2500, 2) + _dst_nights()
    rows = [stored_event(project, e["event"], e["time_ms"], **e["props"]) for e in events]
    services.store.submit_events(rows).result()
    return project, events


# ---- the independent model -----------------------------------------------------------------------


def _local(time_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(time_ms / 1000, UTC).astimezone(ZONE).replace(tzinfo=None)


def _label(local: dt.datetime, unit: str) -> str:
    if unit == "minute":
        return f"{local:%Y-%m-%d %H:%M}:00"
    if unit == "hour":
        return f"{local:%Y-%m-%d %H}:00:00"
    if unit == "day":
        return f"{local:%Y-%m-%d}"
    if unit == "week":
        return f"{local.date() - dt.timedelta(days=local.weekday()):%Y-%m-%d}"
    return f"{local:%Y-%m}-01"


def _series(start: dt.date, end: dt.date, unit: str) -> list[str]:
    """Every bucket some instant of the range falls in, found by walking the range in UTC minutes."""
    labels = {
        _label(_local(t), unit) for t in range(_instant(start), _instant(end + dt.timedelta(days=1)), 60_000)
    }
    return sorted(labels)


def _rendered(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _expected(
    events: list[dict[str, Any]],
    days: tuple[dt.date, dt.date],
    unit: str,
    kind: str,
    on: str | None,
    min_n: int | None,
    limit: int = 60,
) -> dict[str, Any]:
    low, high = _instant(days[0]), _instant(days[1] + dt.timedelta(days=1))
    counts: Counter[tuple[str, str]] = Counter()
    users: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in events:
        props = e["props"]
        if not low <= e["time_ms"] < high or (min_n is not None and props["n"] < min_n):
            continue
        key = e["event"] if on is None else _rendered(props.get(on))
        if key is None:
            continue
        label = _label(_local(e["time_ms"]), unit)
        counts[label, key] += 1
        users[label, key].add(props["distinct_id"])
    totals: Counter[str] = Counter()
    for (_, key), n in counts.items():
        totals[key] += n
    keys = sorted(totals, key=lambda k: (-totals[k], k))[:limit]
    series = _series(*days, unit)
    values: dict[str, dict[str, float]] = {key: dict.fromkeys(series, 0) for key in keys}
    for (label, key), n in counts.items():
        if key in values:
            unique = len(users[label, key])
            values[key][label] = {"general": n, "unique": unique, "average": n / unique}[kind]
    return {"data": {"series": series, "values": values}, "legend_size": len(values)}


def _rounded(body: dict[str, Any]) -> dict[str, Any]:
    """The body with averages rounded (the engine divides in floating point too)."""
    values = {
        k: {label: round(v, 9) for label, v in row.items()} for k, row in body["data"]["values"].items()
    }
    return {**body, "data": {**body["data"], "values": values}}


def _ask(client: TestClient, project: Project, **params: str) -> dict[str, Any]:
    response = client.get("/api/query/segmentation", params=params, headers=basic(project.api_secret))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ---- tests --------------------------------------------------------------------------------------

UNITS_AND_RANGES = [
    ("minute", (dt.date(2024, 11, 3), dt.date(2024, 11, 3))),
    ("minute", (dt.date(2024, 3, 10), dt.date(2024, 3, 10))),
    ("hour", FALL),
    ("hour", SPRING),
    ("day", FALL),
    ("day", SPRING),
    ("week", FALL),
    ("month", FALL),
]


@pytest.mark.parametrize(("unit", "days"), UNITS_AND_RANGES)
@pytest.mark.parametrize("kind", ["general", "unique", "average"])
def test_counts_per_unit_by_event_name(
    client: TestClient,
    data: tuple[Project, list[dict[str, Any]]],
    unit: str,
    days: tuple[dt.date, dt.date],
    kind: str,
) -> None:
    project, events = data
    got = _ask(client, project, from_date=str(days[0]), to_date=str(days[1]), unit=unit, type=kind)
    assert _rounded(got) == _rounded(_expected(events, days, unit, kind, None, None))


@pytest.mark.parametrize(("unit", "days"), UNITS_AND_RANGES)
def test_on_and_where(
    client: TestClient, data: tuple[Project, list[dict[str, Any]]], unit: str, days: tuple[dt.date, dt.date]
) -> None:
    project, events = data
    got = _ask(
        client,
        project,
        from_date=str(days[0]),
        to_date=str(days[1]),
        unit=unit,
        on='properties["plan"]',
        where='properties["n"] >= 5',
    )
    assert got == _expected(events, days, unit, "general", "plan", 5)
    assert set(got["data"]["values"]) == {"free", "pro", "3", "2.5", "true"}


@pytest.mark.parametrize("kind", ["general", "unique"])
def test_limit_keeps_the_segments_with_most_events(
    client: TestClient, data: tuple[Project, list[dict[str, Any]]], kind: str
) -> None:
    project, events = data
    got = _ask(
        client,
        project,
        from_date=str(FALL[0]),
        to_date=str(FALL[1]),
        unit="day",
        type=kind,
        on='properties["distinct_id"]',
        limit="4",
    )
    assert got == _expected(events, FALL, "day", kind, "distinct_id", None, limit=4)
    assert got["legend_size"] == 4


def test_the_dst_days_have_23_and_25_hours(
    client: TestClient, data: tuple[Project, list[dict[str, Any]]]
) -> None:
    project, _ = data
    spring = _ask(client, project, from_date="2024-03-10", to_date="2024-03-10", unit="hour")
    fall = _ask(client, project, from_date="2024-11-03", to_date="2024-11-03", unit="hour")
    assert len(spring["data"]["series"]) == 23 and "2024-03-10 02:00:00" not in spring["data"]["series"]
    # The repeated hour is one local bucket holding both hours' events.
    assert len(fall["data"]["series"]) == 24


def test_one_event_and_an_unknown_event(
    client: TestClient, data: tuple[Project, list[dict[str, Any]]]
) -> None:
    project, events = data
    got = _ask(client, project, from_date=str(FALL[0]), to_date=str(FALL[1]), unit="day", event="b")
    expected = _expected([e for e in events if e["event"] == "b"], FALL, "day", "general", None, None)
    assert got == expected and list(got["data"]["values"]) == ["b"]
    empty = _ask(client, project, from_date=str(FALL[0]), to_date=str(FALL[1]), unit="day", event="nope")
    assert empty["data"]["values"] == {} and empty["legend_size"] == 0
    assert empty["data"]["series"] == _series(*FALL, "day")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"unit": "year"}, "unit must be one of minute, hour, day, week, month, got 'year'"),
        ({"type": "sum"}, "type must be one of general, unique, average, got 'sum'"),
        ({"limit": "0"}, "limit must be an integer from 1 to 10000, got '0'"),
        ({"on": 'properties["x"'}, "on: expected ']' at column 15: properties[\"x\""),
        ({"where": "1 +"}, "where: "),
        (
            {"unit": "minute", "to_date": "2024-11-08"},
            "11520 buckets; at most 10000: use a coarser unit (hour) or a shorter range",
        ),
        ({"from_date": ""}, "'from_date' is a required parameter"),
    ],
)
def test_bad_parameters_are_400_in_the_query_api_shape(
    client: TestClient, data: tuple[Project, list[dict[str, Any]]], params: dict[str, str], message: str
) -> None:
    project, _ = data
    query = {"from_date": "2024-11-01", "to_date": "2024-11-02", **params}
    response = client.get("/api/query/segmentation", params=query, headers=basic(project.api_secret))
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"request", "error"} and message in body["error"]


def test_projects_never_see_each_other(
    client: TestClient, services: Services, data: tuple[Project, list[dict[str, Any]]]
) -> None:
    other = services.registry.create_project("segmentation-other", "America/New_York")
    got = _ask(client, other, from_date=str(FALL[0]), to_date=str(FALL[1]), unit="day")
    assert got["data"]["values"] == {}
    assert (
        client.get(
            "/api/query/segmentation", params={"from_date": "2024-11-01", "to_date": "2024-11-01"}
        ).status_code
        == 401
    )
