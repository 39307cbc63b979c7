"""Export parameter parsing and plan building, table-driven (no HTTP)."""

from __future__ import annotations

import datetime as dt

import pytest

from rawevents import timeutil
from rawevents.errors import BadRequest
from rawevents.export.params import ExportRequest, build_plan, parse_export_params
from rawevents.params import parse_event_param
from rawevents.projects import Project
from rawevents.where import WhereError
from rawevents.where import parse as parse_where

TODAY = dt.date(2024, 6, 15)
UTC_PROJECT = Project(7, "p", "tok", "sec", "UTC")
NY_PROJECT = Project(8, "ny", "tok2", "sec2", "America/New_York")


def parse(**params: str) -> ExportRequest:
    base = {"from_date": "2024-06-01", "to_date": "2024-06-02"}
    return parse_export_params({**base, **params}, UTC_PROJECT, today=TODAY)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2))),
        ({"to_date": "2024-06-15"}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 15))),
        ({"from_date": "2024-06-02"}, ExportRequest(dt.date(2024, 6, 2), dt.date(2024, 6, 2))),
        ({"from_date": " 2024-06-01 "}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2))),
        ({"event": '["a", "b"]'}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2), events=("a", "b"))),
        ({"limit": "100000"}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2), limit=100000)),
        ({"limit": "1"}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2), limit=1)),
        ({"limit": ""}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2))),
        ({"time_in_ms": "true"}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2), time_in_ms=True)),
        ({"time_in_ms": "TRUE"}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2), time_in_ms=True)),
        ({"time_in_ms": "1"}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2), time_in_ms=True)),
        ({"time_in_ms": "0"}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2))),
        ({"time_in_ms": "false"}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2))),
        ({"where": ' properties["a"] == 1 '},
         ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2), where='properties["a"] == 1')),
        ({"where": "   "}, ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2))),
        # Ignored, as Mixpanel ignores them.
        ({"format": "json", "callback": "cb", "bucket": "x", "_": "1", "project_id": "7"},
         ExportRequest(dt.date(2024, 6, 1), dt.date(2024, 6, 2))),
    ],
)  # fmt: skip
def test_valid_parameters(params: dict[str, str], expected: ExportRequest) -> None:
    assert parse(**params) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from_date": ""}, "'from_date' is a required parameter"),
        ({"to_date": ""}, "'to_date' is a required parameter"),
        ({"from_date": "2024-6-1"}, "from_date must be a date formatted YYYY-MM-DD, got '2024-6-1'"),
        ({"from_date": "2024-02-30"}, "from_date must be a date formatted YYYY-MM-DD, got '2024-02-30'"),
        ({"to_date": "yesterday"}, "to_date must be a date formatted YYYY-MM-DD, got 'yesterday'"),
        ({"to_date": "2024/06/02"}, "to_date must be a date formatted YYYY-MM-DD, got '2024/06/02'"),
        ({"from_date": "2024-06-03"}, "from_date 2024-06-03 is after to_date 2024-06-02"),
        ({"to_date": "2024-06-16"}, "to_date cannot be later than today"),
        ({"limit": "0"}, "limit must be an integer from 1 to 100000, got '0'"),
        ({"limit": "100001"}, "limit must be an integer from 1 to 100000, got '100001'"),
        ({"from_date": "0001-01-01"}, "from_date cannot be earlier than 1970-01-01, got '0001-01-01'"),
        ({"limit": "-5"}, "limit must be an integer from 1 to 100000, got '-5'"),
        ({"limit": "ten"}, "limit must be an integer from 1 to 100000, got 'ten'"),
        ({"limit": "1.5"}, "limit must be an integer from 1 to 100000, got '1.5'"),
        ({"time_in_ms": "yes please"}, "time_in_ms must be true or false, got 'yes please'"),
        ({"event": "[1, 2]"}, "event must be a JSON array of event names (strings), got '[1, 2]'"),
        ({"event": '["a", null]'},
         """event must be a JSON array of event names (strings), got '["a", null]'"""),
        ({"event": '{"a": 1}'}, """event must be a JSON array of event names (strings), got '{"a": 1}'"""),
    ],
)  # fmt: skip
def test_invalid_parameters(params: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse(**params)
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("raw", "events"),
    [
        (None, None),
        ("", None),
        ("[]", None),
        ('["signup"]', ("signup",)),
        ('["a","b","a"]', ("a", "b")),
        ('"signup"', ("signup",)),
        ("signup", ("signup",)),  # not JSON: one name, verbatim (mixpanel-go passes input through)
        ("sign up [beta]", ("sign up [beta]",)),
        ("42", ("42",)),
        ('["Ünïcode ✓"]', ("Ünïcode ✓",)),
    ],
)
def test_event_parameter(raw: str | None, events: tuple[str, ...] | None) -> None:
    assert parse_event_param(raw) == events


def test_to_date_today_is_in_the_project_time_zone() -> None:
    # 2024-06-15 02:00 UTC is still 2024-06-14 in New York: "today" there is the 14th.
    now_ms = int(dt.datetime(2024, 6, 15, 2, tzinfo=dt.UTC).timestamp() * 1000)
    ny_today = timeutil.today(NY_PROJECT.zone, now_ms)
    params = {"from_date": "2024-06-14", "to_date": "2024-06-15"}
    with pytest.raises(BadRequest, match="to_date cannot be later than today"):
        parse_export_params(params, NY_PROJECT, today=ny_today)
    assert parse_export_params(params, UTC_PROJECT, today=timeutil.today(UTC_PROJECT.zone, now_ms))


def test_plan_covers_local_days_split_at_offset_changes() -> None:
    request = ExportRequest(
        dt.date(2024, 3, 9), dt.date(2024, 3, 10), events=("a",), limit=5, time_in_ms=True
    )
    plan = build_plan(request, NY_PROJECT)
    start = int(dt.datetime(2024, 3, 9, 5, tzinfo=dt.UTC).timestamp() * 1000)  # midnight EST
    switch = int(dt.datetime(2024, 3, 10, 7, tzinfo=dt.UTC).timestamp() * 1000)  # 02:00 EST -> 03:00 EDT
    end = int(dt.datetime(2024, 3, 11, 4, tzinfo=dt.UTC).timestamp() * 1000)  # midnight EDT
    assert [(s.start_ms, s.end_ms, s.offset_ms) for s in plan.segments] == [
        (start, switch, -5 * 3600_000),
        (switch, end, -4 * 3600_000),
    ]
    assert (plan.project_id, plan.events, plan.limit, plan.time_in_ms, plan.where) == (
        8,
        ("a",),
        5,
        True,
        None,
    )


def test_plan_carries_the_parsed_where_and_the_project_time_zone() -> None:
    request = ExportRequest(dt.date(2024, 1, 1), dt.date(2024, 1, 1), where='event["name"] == "x"')
    plan = build_plan(request, NY_PROJECT)
    assert plan.where == parse_where('event["name"] == "x"')
    assert plan.timezone == "America/New_York"


def test_plan_refuses_a_where_that_does_not_parse() -> None:
    request = ExportRequest(dt.date(2024, 1, 1), dt.date(2024, 1, 1), where='properties["plan" == "pro"')
    with pytest.raises(WhereError) as raised:
        build_plan(request, NY_PROJECT)
    assert raised.value.column == 19
