"""SQL injection through every literal kind and through property names: values are always bound
parameters, the query returns the right rows and the table survives."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawevents.where import parse
from rawevents.where.printer import compile_predicate
from rawevents.where.printer.clickhouse import ClickHousePrinter
from tests.where.harness import Ev, Harness, duckdb_where, reference_selected

PAYLOADS = [
    "'); DROP TABLE events; --",
    "' OR '1'='1",
    '" OR "1"="1',
    "\\'; DELETE FROM events; --",
    "a\x00b",
    "\\",
    "?",
    "$1",
    "%s",
    "{}",
    "/properties/x",
    "~0~1",
    "$.properties.x",
    "') IS NOT NULL OR ('",
    "*/ SELECT 1 /*",
    "ünï©ødé 🔥",
    "\u2028\u2029",
    "line\nbreak",
]


def _placeholders(sql: str) -> int:
    """`?` outside SQL string literals (the printer's own regex constants contain `?`)."""
    return re.sub(r"'(?:[^']|'')*'", "", sql).count("?")


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, store_kind: str) -> Iterator[Harness]:
    h = Harness(Path(tmp_path_factory.mktemp("where-injection")), store_kind)
    yield h
    h.close()


def _table_intact(harness: Harness, expected_rows: int) -> None:
    assert harness.store.query("SELECT count(*) FROM events")[0][0] == expected_rows


@pytest.mark.parametrize("payload", PAYLOADS)
def test_string_literal(harness: Harness, payload: str) -> None:
    before = harness.store.query("SELECT count(*) FROM events")[0][0]
    project, _ = harness.load([Ev({"k": payload}), Ev({"k": "other"}), Ev({})], "UTC")
    where = f'properties["k"] == {_lit(payload)}'
    assert harness.sql_selected(project, where, "UTC") == [0]
    assert harness.sql_selected(project, f'{_lit(payload)} in properties["k"]', "UTC") == [0]
    assert harness.sql_selected(project, f"properties[\"k\"] in [{_lit(payload)}, 'x']", "UTC") == [0]
    assert harness.sql_selected(
        project, f'string(properties["z"], {_lit(payload)}) == properties["k"]', "UTC"
    ) == [0]
    _table_intact(harness, before + 3)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_property_name(harness: Harness, payload: str) -> None:
    before = harness.store.query("SELECT count(*) FROM events")[0][0]
    project, _ = harness.load([Ev({payload: 1}), Ev({payload: 2}), Ev({"k": 1})], "UTC")
    assert harness.sql_selected(project, f"properties[{_lit(payload)}] == 1", "UTC") == [0]
    assert harness.sql_selected(project, f"properties['o'][{_lit(payload)}] == 1", "UTC") == []
    assert harness.sql_selected(project, f"any(X, [properties[{_lit(payload)}]], X > 1)", "UTC") == [1]
    _table_intact(harness, before + 3)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_sql_text_never_contains_user_values(payload: str) -> None:
    payload = f"ZQ{payload}XJ"  # distinctive, so the printer's own constants cannot match
    for where in (
        f"properties[{_lit(payload)}] == {_lit(payload)}",
        f"properties['x'] in [{_lit(payload)}, 12345.678]",
        f"properties['x'][{_lit(payload)}] > 98765",
        f"any(X, properties['l'], X[{_lit(payload)}] == {_lit(payload)})",
        f"datetime(properties['d']) > datetime({_lit(payload)}) or number(properties['n'], 4242.5) == 4242.5",
    ):
        compiled = duckdb_where(where, timezone="UTC")
        assert payload not in compiled.text
        for number in ("12345.678", "98765", "4242.5"):
            assert number not in compiled.text
        assert _placeholders(compiled.text) == len(compiled.params)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_clickhouse_sql_text_never_contains_user_values(payload: str) -> None:
    payload = f"ZQ{payload}XJ"
    where = (
        f"properties[{_lit(payload)}] == {_lit(payload)} or properties['x'] in [{_lit(payload)}, 12345.678]"
        f" or any(X, properties['l'], X[{_lit(payload)}] == {_lit(payload)})"
    )
    compiled = compile_predicate(ClickHousePrinter("UTC"), parse(where))
    assert payload not in compiled.text and "12345.678" not in compiled.text
    names = re.findall(r"\{(w[0-9]+):[A-Za-z0-9()]+\}", compiled.text)
    assert sorted(set(names)) == sorted(name for name, _ in compiled.params)
    values = [value for _, value in compiled.params]
    assert payload in values and any(isinstance(v, list) and 12345.678 in v for v in values)


def test_numbers_and_booleans_are_bound() -> None:
    compiled = duckdb_where("properties['n'] == 31337 and properties['b'] == true", timezone="UTC")
    assert "31337" not in compiled.text
    # By type as well as value: `True in params` would also hold for a parameter equal to 1.
    typed = [(type(p), p) for p in compiled.params]
    assert (float, 31337.0) in typed
    assert (bool, True) in typed


KEYS_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(
    key=KEYS_TEXT.filter(lambda k: k not in ("time", "$time", "$distinct_id", "$insert_id")), value=KEYS_TEXT
)
def test_any_key_and_value_round_trip(harness: Harness, key: str, value: str) -> None:
    project, decoded = harness.load([Ev({key: value}), Ev({key: value + "x"}), Ev({})], "UTC")
    where = f"properties[{_lit(key)}] == {_lit(value)}"
    assert harness.sql_selected(project, where, "UTC") == reference_selected(decoded, where, "UTC") == [0]
    compiled = duckdb_where(where, timezone="UTC")
    assert _placeholders(compiled.text) == len(compiled.params)
