from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawevents.eventline import assemble_line, line_head
from rawevents.ingest.decode import parse_payload
from rawevents.ingest.events import (
    DISALLOWED_IDS,
    EventBatch,
    EventContext,
    LocalClock,
    ip_distinct_id,
    line_bytes,
    new_insert_id,
    normalize_events,
)
from rawevents.projects import Project
from rawevents.timeutil import local_seconds, zone

NOW_MS = 1_800_000_000_000
T = 1_700_000_000  # a valid time in seconds
UTC_PROJECT = Project(7, "p", "tok", "sec", "UTC")


def ctx(endpoint: str = "import", strict: bool = True, **kw: Any) -> EventContext:
    base: dict[str, Any] = {
        "endpoint": endpoint,
        "strict": strict,
        "received_ms": NOW_MS - 5,
        "processed_ms": NOW_MS,
        "host": "api.example.com",
        "ip_fallback": False,
        "client_ip": None,
    }
    base.update(kw)
    return EventContext(**base)


def event(**props: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"time": T, "distinct_id": "u1", "$insert_id": "abc-123"}
    base.update(props)
    return {"event": "Signed Up", "properties": {k: v for k, v in base.items() if v is not _DROP}}


_DROP: Any = object()


def run(items: list[Any], context: EventContext | None = None, **kw: Any) -> EventBatch:
    if "project" not in kw and "resolve" not in kw:
        kw["project"] = UTC_PROJECT
    return normalize_events(items, context or ctx(), **kw)


def line_props(batch: EventBatch, i: int = 0) -> dict[str, Any]:
    return orjson.loads(batch.rows[i].line)["properties"]  # type: ignore[no-any-return]


# -- time --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ms"),
    [
        (T, T * 1000),
        (T + 0.123, T * 1000 + 123),
        (T + 0.1234, T * 1000 + 123),
        (T + 0.1236, T * 1000 + 124),  # rounded to the nearest millisecond
        (T * 1000 + 456, T * 1000 + 456),  # >= 1e10: milliseconds
        (float(T * 1000) + 0.6, T * 1000 + 1),
        (10_000_000_000, 10_000_000_000),  # exactly the threshold: ms
        (9_999_999_999, 9_999_999_999_000),  # just below: seconds (year 2286, future → strict rejects)
    ],
)
def test_time_units(raw: float, ms: int) -> None:
    batch = run([event(time=raw)], ctx(strict=False, processed_ms=10**14))
    assert batch.rows[0].time_ms == ms


def test_exported_time_is_local_seconds_and_time_pos_points_at_it() -> None:
    berlin = Project(8, "b", "t", "s", "Europe/Berlin")
    batch = run([event(time=T + 0.999)], project=berlin)
    row = batch.rows[0]
    local = local_seconds(zone("Europe/Berlin"), T * 1000 + 999)
    assert local == T + 3600
    assert orjson.loads(row.line)["properties"]["time"] == local
    assert row.line[row.time_pos :].startswith(str(local) + ",")


def test_track_without_time_gets_server_time() -> None:
    batch = run([event(time=_DROP)], ctx("track", strict=False))
    assert batch.rows[0].time_ms == NOW_MS


def test_non_strict_import_without_time_is_rejected() -> None:
    batch = run([event(time=_DROP)], ctx("import", strict=False))
    assert batch.rows == [] and batch.failed[0].field == "properties.time"


def test_non_strict_future_time_is_clamped_to_now() -> None:
    batch = run([event(time=NOW_MS + 7_200_000)], ctx(strict=False))
    assert batch.rows[0].time_ms == NOW_MS


def test_non_strict_accepts_numeric_string_time() -> None:
    assert run([event(time=str(T))], ctx(strict=False)).rows[0].time_ms == T * 1000


def test_track_max_age() -> None:
    old = (NOW_MS - 6 * 86_400_000) // 1000
    batch = run(
        [event(time=old), event(time=NOW_MS // 1000)], ctx("track", strict=False, max_age_ms=5 * 86_400_000)
    )
    assert [f.index for f in batch.failed] == [0]


# -- server-added properties, stripped properties ------------------------------------------------------


def test_server_properties_and_stripping() -> None:
    batch = run([event(token="tok", ip="1.2.3.4", **{"$mp_api_endpoint": "spoofed"})])
    props = line_props(batch)
    assert "token" not in props and "ip" not in props
    assert props["$mp_api_endpoint"] == "api.example.com"
    assert props["$mp_api_timestamp_ms"] == NOW_MS - 5
    assert props["mp_processing_time_ms"] == NOW_MS
    assert props["$import"] is True


def test_track_has_no_import_flag() -> None:
    batch = run([event(token="tok")], ctx("track", strict=False), resolve=lambda t: UTC_PROJECT)
    assert "$import" not in line_props(batch)


def test_line_key_order() -> None:
    batch = run([event(zeta=1, alpha="a")])
    assert batch.rows[0].line == (
        '{"event":"Signed Up","properties":{"time":1700000000,"distinct_id":"u1","$import":true,'
        '"$insert_id":"abc-123","$mp_api_endpoint":"api.example.com","$mp_api_timestamp_ms":1799999999995,'
        '"alpha":"a","mp_processing_time_ms":1800000000000,"zeta":1}}\n'
    )


def test_generated_insert_id() -> None:
    batch = run([event(**{"$insert_id": _DROP})], ctx(strict=False))
    generated = batch.rows[0].insert_id
    assert re.fullmatch(r"[A-Za-z]{36}", generated)
    assert line_props(batch)["$insert_id"] == generated
    assert new_insert_id() != new_insert_id()


def test_ignore_drops_the_event() -> None:
    batch = run([event(**{"$ignore": True}), event(**{"$ignore": False}), event()])
    assert len(batch.rows) == 2 and batch.dropped == 1 and batch.failed == []


def test_explicit_geo_properties_are_kept() -> None:
    props = line_props(run([event(**{"$city": "Paris", "$region": "IDF", "mp_country_code": "FR"})]))
    assert (props["$city"], props["$region"], props["mp_country_code"]) == ("Paris", "IDF", "FR")


# -- distinct_id ---------------------------------------------------------------------------------------


def test_distinct_id_from_ip_when_allowed() -> None:
    context = ctx("track", strict=False, ip_fallback=True, client_ip="10.0.0.1")
    batch = run([event(distinct_id=_DROP), event(distinct_id=_DROP, ip="9.9.9.9")], context)
    assert batch.rows[0].distinct_id == ip_distinct_id("10.0.0.1")
    assert batch.rows[1].distinct_id == ip_distinct_id("9.9.9.9")
    assert line_props(batch)["distinct_id"] == ip_distinct_id("10.0.0.1")


def test_no_distinct_id_without_ip_fallback() -> None:
    batch = run([event(distinct_id=_DROP)], ctx("track", strict=False, client_ip="10.0.0.1"))
    assert batch.rows[0].distinct_id is None and "distinct_id" not in line_props(batch)


def test_ip_property_zero_disables_ip_fallback() -> None:
    context = ctx("import", strict=False, ip_fallback=True, client_ip="10.0.0.1")
    assert run([event(distinct_id=_DROP, ip="0")], context).rows[0].distinct_id is None


def test_numeric_distinct_id() -> None:
    batch = run([event(distinct_id=42)])
    assert batch.rows[0].distinct_id == "42" and line_props(batch)["distinct_id"] == 42


def test_empty_distinct_id_is_allowed() -> None:
    assert run([event(distinct_id="")]).rows[0].distinct_id == ""


@pytest.mark.parametrize("value", [*sorted(DISALLOWED_IDS), "ANON", "Null", "UNDEFINED", "N/A", "None"])
def test_disallowed_distinct_ids_strict(value: str) -> None:
    batch = run([event(distinct_id=value)])
    assert batch.failed[0].field == "properties.distinct_id"
    assert run([event(distinct_id=value)], ctx(strict=False)).rows  # non-strict keeps them


# -- strict validation table ---------------------------------------------------------------------------


def _no_props() -> dict[str, Any]:
    return {"event": "e"}


STRICT_CASES: list[tuple[Any, str, str]] = [
    ([1, 2], "event", "each event must be a JSON object"),
    ("text", "event", "each event must be a JSON object"),
    ({"properties": {"time": T, "distinct_id": "u", "$insert_id": "a"}}, "event", "'event' is invalid"),
    ({"event": 5, "properties": {"time": T, "distinct_id": "u", "$insert_id": "a"}}, "event", "'event'"),
    ({"event": "", "properties": {"time": T, "distinct_id": "u", "$insert_id": "a"}}, "event", "'event'"),
    (_no_props(), "properties", "'properties' is required"),
    ({"event": "e", "properties": [1]}, "properties", "'properties' is invalid: must be a JSON object"),
    (event(time=_DROP), "properties.time", "'properties.time' is required"),
    (event(time="1700000000"), "properties.time", "must be specified as seconds since epoch"),
    (event(time=True), "properties.time", "must be specified as seconds since epoch"),
    (event(time=[T]), "properties.time", "must be specified as seconds since epoch"),
    (event(time=31_535_999), "properties.time", "must be after 1971-01-01"),
    (event(time=-5), "properties.time", "must be after 1971-01-01"),
    (event(time=(NOW_MS + 3_600_001) / 1000), "properties.time", "1 hour in the future"),
    (event(distinct_id=_DROP), "properties.distinct_id", "'properties.distinct_id' is required"),
    (event(distinct_id={"a": 1}), "properties.distinct_id", "must be a string"),
    (event(distinct_id=True), "properties.distinct_id", "must be a string"),
    (event(**{"$insert_id": _DROP}), "properties.$insert_id", "'properties.$insert_id' is required"),
    (event(**{"$insert_id": "x" * 37}), "properties.$insert_id", "1 to 36 characters"),
    (event(**{"$insert_id": "has space"}), "properties.$insert_id", "1 to 36 characters"),
    (event(**{"$insert_id": "under_score"}), "properties.$insert_id", "1 to 36 characters"),
    (event(**{"$insert_id": ""}), "properties.$insert_id", "1 to 36 characters"),
    (event(**{"$insert_id": "Undefined"}), "properties.$insert_id", "1 to 36 characters"),
    (event(**{"$insert_id": 123}), "properties.$insert_id", "must be a string"),
]


@pytest.mark.parametrize(("item", "path", "message"), STRICT_CASES)
def test_strict_rules(item: Any, path: str, message: str) -> None:
    batch = run([event(), item, event(**{"$insert_id": "other"})])
    assert len(batch.rows) == 2  # partial success: the valid neighbours are kept
    [failure] = batch.failed
    assert (failure.index, failure.field) == (1, path)
    assert message in failure.message


def test_strict_boundaries_are_accepted() -> None:
    batch = run(
        [
            event(time=31_536_000),
            event(time=(NOW_MS + 3_600_000) / 1000),
            event(**{"$insert_id": "A" * 36}),
            event(**{"$insert_id": "a-1"}),
        ]
    )
    assert batch.failed == [] and len(batch.rows) == 4


def test_failed_record_carries_the_insert_id() -> None:
    batch = run([event(time="bad", **{"$insert_id": "keep-me"})])
    assert batch.failed[0].insert_id == "keep-me"


# -- strings: truncation and UTF-8 ----------------------------------------------------------------------


def test_strings_truncated_to_255_utf8_bytes_on_code_point_boundary() -> None:
    props = line_props(
        run(
            [
                event(
                    ascii="a" * 300,
                    euro="€" * 100,
                    mixed="a" + "€" * 100,
                    nested={"x": "b" * 300},
                    lst=["c" * 300],
                )
            ]
        )
    )
    assert props["ascii"] == "a" * 255
    assert props["euro"] == "€" * 85  # 3 bytes each: 255 bytes exactly
    assert props["mixed"] == "a" + "€" * 84  # 253 bytes: the 85th euro would split
    assert props["nested"] == {"x": "b" * 255}
    assert props["lst"] == ["c" * 255]


def test_short_strings_untouched() -> None:
    assert line_props(run([event(s="é" * 127)]))["s"] == "é" * 127  # 254 bytes


def _lenient(text: bytes, context: EventContext) -> EventBatch:
    payload = parse_payload(text)
    return normalize_events(payload.items, context, project=UTC_PROJECT, lenient=payload.lenient)


def test_invalid_utf8_strict_fails_the_record_with_mixpanels_message() -> None:
    body = (
        b'[{"event":"e","properties":{"time":1700000000,"distinct_id":"u","$insert_id":"a","name":"\xff"}},'
        + (
            b'{"event":"e","properties":{"time":1700000000,"distinct_id":"u","$insert_id":"b","ok":"\xc3\xa9"}}]'
        )
    )
    batch = _lenient(body, ctx())
    [failure] = batch.failed
    assert failure.field == "properties.name"
    assert failure.message == "properties.name is invalid: string should be valid utf8"
    assert len(batch.rows) == 1 and line_props(batch)["ok"] == "é"


def test_lone_surrogate_escape_strict() -> None:
    body = (
        b'[{"event":"e","properties":{"time":1700000000,"distinct_id":"u","$insert_id":"a","s":["\\udc00"]}}]'
    )
    assert _lenient(body, ctx()).failed[0].message == "properties.s is invalid: string should be valid utf8"


def test_invalid_utf8_non_strict_is_replaced() -> None:
    body = b'[{"event":"e\xff","properties":{"time":1700000000,"distinct_id":"u","bad\xfe":"x\xffy"}}]'
    batch = _lenient(body, ctx(strict=False))
    assert batch.failed == []
    assert orjson.loads(batch.rows[0].line)["event"] == "e\ufffd"
    assert line_props(batch)["bad\ufffd"] == "x\ufffdy"


def test_unencodable_value_fails_instead_of_crashing() -> None:
    # The lenient parser (used here because of the invalid byte) reads integers of any size; one
    # that does not fit 64 bits cannot be stored and fails its record, never the request.
    body = (
        b'[{"event":"e","properties":{"time":1700000000,"distinct_id":"u","s":"\xff","n":'
        + b"9" * 30
        + b"}}]"
    )
    batch = _lenient(body, ctx(strict=False))
    assert batch.rows == [] and batch.failed[0].field == "properties"


# -- tokens ----------------------------------------------------------------------------------------------


def test_track_tokens_resolve_per_event() -> None:
    other = Project(9, "o", "tok9", "s", "UTC")
    projects = {"tok": UTC_PROJECT, "tok9": other}
    batch = run(
        [event(token="tok"), event(token="tok9"), event(token="unknown"), event()],
        ctx("track", strict=False),
        resolve=projects.get,
    )
    assert [r.project_id for r in batch.rows] == [7, 9]
    assert batch.dropped == 1  # unknown token: discarded, still "accepted"
    assert batch.failed[0].index == 3 and batch.failed[0].message == "token, missing or empty"


def test_table_holds_the_rows() -> None:
    """The Arrow table the store inserts is built from buffers: it must hold exactly the rows,
    with non-ASCII text and missing distinct_ids (nulls) in place."""
    items = [
        {"event": "Kauf ✓", "properties": {"time": T, "distinct_id": "ü-1", "$insert_id": "a1"}},
        {"event": "e", "properties": {"time": T + 1, "$insert_id": "a2"}},
        {"event": "é", "properties": {"time": T + 2, "distinct_id": 42, "nested": {"b": 1, "a": "ß"}}},
    ]
    batch = run(items, ctx(strict=False))
    table = batch.table()
    table.validate(full=True)
    assert table.to_pylist() == [row._asdict() for row in batch.rows]
    assert [row["distinct_id"] for row in table.to_pylist()] == ["ü-1", None, "42"]
    assert run([], ctx()).table().num_rows == 0


# -- equivalences that keep the hot path honest ----------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_flat_values = st.one_of(_scalars, st.lists(_scalars, max_size=4))


_values = st.recursive(
    _flat_values, lambda inner: st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=6
)


@given(
    event_name=st.text(min_size=1, max_size=10),
    props=st.dictionaries(st.text(max_size=8), _values, max_size=8),
    local_time=st.integers(0, 2**40),
)
def test_line_bytes_matches_assemble_line(event_name: str, props: dict[str, Any], local_time: int) -> None:
    props.pop("time", None)
    before = dict(props)
    nested = any(type(value) is dict for value in props.values())
    head, time_pos = line_head(event_name)
    line = line_bytes(head, props, local_time, nested)
    assert (time_pos, line.decode()) == assemble_line(event_name, dict(props), local_time)
    assert props == before and list(props) == list(before)  # restored, distinct_id included


@given(
    tz=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]),
    instants=st.lists(st.integers(0, 4_000_000_000_000), min_size=1, max_size=20),
)
def test_local_clock_matches_local_seconds(tz: str, instants: list[int]) -> None:
    clock = LocalClock(zone(tz))
    for ms in instants:
        assert clock(ms) == local_seconds(zone(tz), ms)


def test_local_clock_around_a_dst_transition() -> None:
    tz = zone("Europe/Berlin")
    switch = int(dt.datetime(2024, 3, 31, 1, 0, tzinfo=dt.UTC).timestamp() * 1000)
    clock = LocalClock(tz)
    for ms in range(switch - 5_000, switch + 5_000, 7):
        assert clock(ms) == local_seconds(tz, ms)
