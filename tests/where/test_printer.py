"""The DuckDB printer's output for a few expressions (golden table), and the prefilter rules."""

from __future__ import annotations

import pytest

from rawevents.where.printer.duckdb import json_pointer
from tests.where.harness import duckdb_where

STRING_ARM = (
    "list_transform([json_extract(line, CAST(? AS VARCHAR))], lambda __w1: "
    "CASE WHEN json_type(__w1) IN ('VARCHAR') THEN (__w1 ->> '$') END)[1]"
)
GOLDEN = [
    (
        'properties["plan"] == "pro"',
        f"contains(line, CAST(? AS VARCHAR)) AND coalesce(({STRING_ARM} = CAST(? AS VARCHAR)), FALSE)",
        ('pro"', "/properties/plan", "pro"),
    ),
    (
        'properties["n"] > 3',
        "coalesce((list_transform([json_extract(line, CAST(? AS VARCHAR))], lambda __w1: CASE WHEN "
        "json_type(__w1) IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT') THEN CAST(__w1 AS DOUBLE) END)[1]"
        " > CAST(? AS DOUBLE)), FALSE)",
        ("/properties/n", 3.0),
    ),
    (
        'not defined(properties["a"])',
        "(NOT (NOT coalesce(json_type(json_extract(line, CAST(? AS VARCHAR))) = 'NULL', TRUE)))",
        ("/properties/a",),
    ),
    ("1 + 1 == 2 and true", "CAST(? AS BOOLEAN)", (True,)),
    ('user["plan"] == "pro"', "FALSE", ()),
    ('event["name"] == "signup"', "coalesce((event = CAST(? AS VARCHAR)), FALSE)", ("signup",)),
    (
        'properties["$time"] >= datetime(1706184000)',
        "coalesce((CAST(time_ms AS DOUBLE) >= CAST(? AS DOUBLE)), FALSE)",
        (1706184000000.0,),
    ),
]


@pytest.mark.parametrize(("where", "sql", "params"), GOLDEN)
def test_golden(where: str, sql: str, params: tuple[object, ...]) -> None:
    compiled = duckdb_where(where, timezone="UTC")
    assert (compiled.text, compiled.params) == (sql, params)


@pytest.mark.parametrize(
    ("where", "needles"),
    [
        ('properties["plan"] == "enterprise"', ['enterprise"']),
        ('"enterprise" == properties["plan"]', ['enterprise"']),
        ('properties["plan"] in ["pro", "team"]', ['pro"', 'team"']),
        ('"facebook" in properties["ref"]', ["facebook"]),
        ('any(X, properties["items"], X["sku"] == "A-1")', ['A-1"']),
        ('properties["a"] == "xyz" and properties["n"] > 1', ['xyz"']),
        ('properties["a"] == "x\\"y"', ['x\\"y"']),
        ('properties["a"] == "ép"', ['ép"']),
        # no prefilter: negation, all(), conversions, short needles, mixed lists, or with a gap
        ('not properties["a"] == "xyz"', []),
        ('all(X, properties["l"], X == "xyz")', []),
        ('string(properties["n"]) == "123"', []),
        ('properties["a"] == "x"', []),
        ('properties["a"] in ["xyz", 1]', []),
        ('properties["a"] == "xyz" or properties["n"] > 1', []),
        ('any(X, ["xyz"], X == "xyz")', []),
    ],
)
def test_prefilter(where: str, needles: list[str]) -> None:
    compiled = duckdb_where(where, timezone="UTC")
    found = compiled.params[: len(needles)]
    assert list(found) == needles
    assert compiled.text.count("contains(line,") == len(needles)


@pytest.mark.parametrize(
    ("keys", "pointer"),
    [
        (["properties", "a"], "/properties/a"),
        (["properties", "a/b"], "/properties/a~1b"),
        (["properties", "~1"], "/properties/~01"),
        (["properties", 'q"uo.t[e]'], '/properties/q"uo.t[e]'),
        (["properties", ""], "/properties/"),
        (["properties", "l", 0], "/properties/l/0"),
    ],
)
def test_json_pointer(keys: list[str | int], pointer: str) -> None:
    assert json_pointer(keys) == pointer
