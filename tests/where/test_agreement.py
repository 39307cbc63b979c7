"""The compiled SQL selects exactly the rows the reference evaluator selects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawevents.storage.base import ExportPlan
from rawevents.timeutil import TimeSegment
from rawevents.where import parse
from tests.where.cases import NEW_YORK, T0, TRICKY, WORKED_EXAMPLES
from tests.where.harness import Ev, Harness, reference_selected


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, store_kind: str) -> Iterator[Harness]:
    h = Harness(Path(tmp_path_factory.mktemp("where-agreement")), store_kind)
    yield h
    h.close()


@pytest.mark.parametrize(("where", "props", "expected"), WORKED_EXAMPLES + TRICKY)
def test_fixed_case(harness: Harness, where: str, props: dict[str, Any], expected: bool) -> None:
    project, decoded = harness.load([Ev(props, T0)], "UTC")
    assert reference_selected(decoded, where, "UTC") == ([0] if expected else [])
    assert harness.sql_selected(project, where, "UTC") == ([0] if expected else [])


@pytest.mark.parametrize(("where", "props", "time_ms", "expected"), NEW_YORK)
def test_naive_datetimes_in_project_timezone(
    harness: Harness, where: str, props: dict[str, Any], time_ms: int, expected: bool
) -> None:
    project, decoded = harness.load([Ev(props, time_ms)], "America/New_York")
    assert reference_selected(decoded, where, "America/New_York") == ([0] if expected else [])
    assert harness.sql_selected(project, where, "America/New_York") == ([0] if expected else [])


# -- generated expressions over generated events --------------------------------------------------


KEYS = ["a", "b", "n", "s", "l", "o", 'we"ird.[0]', "é 🔑"]
MEMBER_KEYS = ["k", "0", "a b"]
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
STRING_POOL = [
    "",
    "a",
    "B",
    "pro",
    "5",
    "5.0",
    "-1e3",
    " 7",
    "0x10",
    "false",
    "true",
    "null",
    "é",
    "日本",
    "2024-01-25",
    "2024-01-25T12:00:00Z",
    "2024-01-25T13:30:00+01:30",
    "2024-03-10T02:30:00",
    "2014-09-9",
    "2024-02-30",
    "k",
    "fb",
    "m.fb.com",
]
SURROGATE_FREE = st.characters(blacklist_categories=("Cs",))


def as_ingested(number: int | float) -> int | float:
    """A number as ingestion stores it: orjson reads an integer past 64 bits as the nearest
    double (2**64 is stored as 1.8446744073709552e+19)."""
    return orjson.loads(orjson.dumps(number)) if -(2**63) <= number < 2**64 else float(number)


# Issue 26: numbers at every limit the stores must read alike (past int64/uint64, -0.0, the
# ends of the double range), and numbers written as strings.
limit_numbers = st.one_of(
    st.sampled_from(
        [2**63, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 2**53 + 1, 10**30, -(10**30), 2**96,
         123456789012345678, -0.0, 1e308, -1e308, 5e-324, 1.8446744073709552e19, 9.223372036854776e18]
    ),
    st.integers(-(2**100), 2**100),
).map(as_ingested)  # fmt: skip
number_strings = st.sampled_from(
    ["123", "-0", "0", "1e400", "18446744073709551616", "-9223372036854775809", "1e308", "0.1", " 1", "1_0"]
)
json_scalars = st.one_of(
    limit_numbers,
    number_strings,
    st.sampled_from(STRING_POOL),
    st.sampled_from(STRING_POOL),
    st.integers(-3, 6),
    st.text(SURROGATE_FREE, max_size=6),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 0.5, 2.5, -2.5, 1e16, 1e-7, 1706184000.0, 1706184000000.0]),
    st.booleans(),
    st.none(),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(MEMBER_KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)
events = st.lists(
    st.builds(
        Ev,
        st.dictionaries(st.sampled_from(KEYS), st.one_of(json_scalars, json_values), min_size=3, max_size=8),
        st.integers(1_577_836_800_000, 1_798_761_600_000),  # 2020–2027
        st.sampled_from(["e", "signup", "é"]),
    ),
    min_size=8,
    max_size=16,
)


def _lit_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


number_texts = st.one_of(
    st.integers(0, 6).map(str),
    st.integers(0, 6).map(str),
    st.integers(0, 6).map(str),
    st.sampled_from(["0.5", "2.5", "1e16", "1706184000", "1706184000000", "9007199254740993", "1e308"]),
    st.sampled_from(["18446744073709551616", "9223372036854775808", "9223372036854775807", "1e30", "5e-324"]),
    st.floats(0, 1e6, allow_nan=False).map(repr),
)
literals = st.one_of(
    st.sampled_from(STRING_POOL).map(_lit_string),
    number_texts,
    number_texts.map(lambda n: f"-{n}"),
    st.sampled_from(["true", "false", "TRUE"]),
    st.sampled_from(
        [
            "datetime(1706184000)",
            "datetime(1706184000000)",
            'datetime("2024-01-25")',
            'datetime("2024-03-10T02:30:00")',
            'datetime("2024-01-25T12:00:00.5+05:30")',
        ]
    ),
)
accesses = st.one_of(
    st.sampled_from(KEYS).map(lambda k: f"properties[{_lit_string(k)}]"),
    st.sampled_from(KEYS).map(lambda k: f"properties[{_lit_string(k)}]"),
    st.sampled_from(KEYS).map(lambda k: f"properties[{_lit_string(k)}]"),
    st.sampled_from(
        [
            'properties["$time"]',
            'properties["time"]',
            'properties["distinct_id"]',
            'event["name"]',
            'event["$time"]',
            'user["a"]',
        ]
    ),
    st.tuples(st.sampled_from(["o", "l", "a"]), st.sampled_from(['["k"]', '["0"]', "[0]", "[1]"])).map(
        lambda t: f"properties[{_lit_string(t[0])}]{t[1]}"
    ),
)
atoms = st.one_of(literals, accesses, accesses)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(
        inner,
        st.sampled_from(["==", "=", "!=", ">", ">=", "<", "<=", "in", "not in", "+", "-", "*", "/", "%"]),
        inner,
    ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    logic = st.tuples(inner, st.sampled_from(["and", "or", "AND", "OR"]), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    )
    unary = st.tuples(st.sampled_from(["not ", "-", "defined ", "not defined "]), inner).map(
        lambda t: f"({t[0]}{t[1]})"
    )
    calls = st.tuples(
        st.sampled_from(["number", "string", "boolean", "datetime", "list", "floor", "round", "ceil"]), inner
    ).map(lambda t: f"{t[0]}({t[1]})")
    defaults = st.tuples(st.sampled_from(["number", "string", "boolean"]), inner, inner).map(
        lambda t: f"{t[0]}({t[1]}, {t[2]})"
    )
    membership = st.tuples(inner, st.lists(inner, max_size=3)).map(
        lambda t: f"({t[0]} in [{', '.join(t[1])}])"
    )
    predicates = st.one_of(
        st.tuples(st.sampled_from(["==", ">", "<=", "!="]), literals).map(lambda t: f"X {t[0]} {t[1]}"),
        st.sampled_from(
            [
                'X["k"] == "k"',
                'X["0"] > 0',
                "X[0] == 1",
                "defined(X)",
                "not defined(X)",
                '"a" in X',
                "boolean(X)",
                "X",
                'X in [1, "5", null_free]'.replace(", null_free", ""),
                'any(Y, X, Y == "a")',
            ]
        ),
        inner.map(lambda e: f"(X == {e})"),
    )
    quantifiers = st.tuples(
        st.sampled_from(["any", "all"]),
        st.one_of(
            accesses,
            accesses.map(lambda a: f"list({a})"),
            st.lists(st.one_of(literals, accesses), max_size=3).map(lambda items: f"[{', '.join(items)}]"),
        ),
        predicates,
    ).map(lambda t: f"{t[0]}(X, {t[1]}, {t[2]})")
    return st.one_of(binary, binary, logic, unary, calls, defaults, membership, quantifiers)


terms = st.recursive(atoms, _extend, max_leaves=3)
comparisons = st.tuples(
    terms, st.sampled_from(["==", "!=", ">", ">=", "<", "<=", "in", "not in"]), terms
).map(lambda t: f"{t[0]} {t[1]} {t[2]}")
filters = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        inner.map(lambda e: f"not ({e})"),
    ),
    max_leaves=3,
)
casts = st.tuples(
    st.sampled_from(["", "", "", "", "number", "string", "boolean", "datetime", "list", "round"]), accesses
).map(lambda t: f"{t[0]}({t[1]})" if t[0] else t[1])
simple = st.one_of(
    st.tuples(casts, st.sampled_from(["==", "!=", ">", ">=", "<", "<=", "in", "not in"]), literals).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}"
    ),
    st.tuples(literals, st.sampled_from(["==", ">", "<", "in", "not in"]), casts).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}"
    ),
    st.tuples(st.sampled_from(["defined ", "not defined ", "not ", "", "defined(-"]), casts).map(
        lambda t: f"{t[0]}{t[1]})" if t[0].endswith("(-") else f"{t[0]}{t[1]}"
    ),
    st.tuples(st.sampled_from(["any", "all"]), accesses, st.sampled_from(["==", ">", "!="]), literals).map(
        lambda t: f"{t[0]}(X, {t[1]}, X {t[2]} {t[3]})"
    ),
    st.tuples(casts, st.lists(literals, max_size=4)).map(lambda t: f"{t[0]} in [{', '.join(t[1])}]"),
)
sensible = st.recursive(
    simple,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or", "AND"]), inner).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
        inner.map(lambda e: f"not ({e})"),
    ),
    max_leaves=3,
)
expressions = st.one_of(st.recursive(atoms, _extend, max_leaves=8), filters, sensible, sensible, sensible)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(evs=events, wheres=st.lists(expressions, min_size=1, max_size=3), timezone=st.sampled_from(ZONES))
def test_sql_agrees_with_reference(harness: Harness, evs: list[Ev], wheres: list[str], timezone: str) -> None:
    project, decoded = harness.load(evs, timezone)
    for where in wheres:
        expected = reference_selected(decoded, where, timezone)
        assert harness.sql_selected(project, where, timezone) == expected, where


def test_properties_time_is_seconds_even_when_exporting_milliseconds(harness: Harness) -> None:
    project, _ = harness.load([Ev({}, T0 + 123), Ev({}, T0 + 1000)], "UTC")
    where = parse(f'properties["time"] == {T0 // 1000}')
    for in_ms in (False, True):
        plan = ExportPlan(project, [TimeSegment(T0, T0 + 2000, 0)], where=where, time_in_ms=in_ms)
        body = b"".join(bytes(chunk) for chunk in harness.store.export_chunks(plan))
        assert body.count(b"\n") == 1
        assert (b'"time":1706184000123' in body) is in_ms


def test_export_chunks_path_agrees(harness: Harness) -> None:
    evs = [Ev({"plan": p}, T0 + i * 3_600_000) for i, p in enumerate(["pro", "free", "pro", None] * 10)]
    project, decoded = harness.load(evs, "UTC")
    where = 'properties["plan"] == "pro" or not defined(properties["plan"])'
    got = harness.export_selected(project, where, "UTC", T0, T0 + 40 * 3_600_000)
    assert got == reference_selected(decoded, where, "UTC") == [i for i in range(40) if i % 4 != 1]
