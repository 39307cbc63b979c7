"""Parser tables: text → canonical printed form, AST shapes and spans, and pinned errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawevents.errors import BadRequest
from rawevents.where import WhereError, evaluate, parse, to_text
from rawevents.where import ast as a
from rawevents.where.ast import flatten
from rawevents.where.errors import WhereSyntaxError
from rawevents.where.parser import MAX_DEPTH, MAX_LENGTH
from tests.where.harness import duckdb_where

PRINTED = [
    ('properties["plan"] == "pro"', '(properties["plan"] == "pro")'),
    ('properties["plan"] = "pro"', '(properties["plan"] == "pro")'),
    ("properties['plan'] != 'pro'", '(properties["plan"] != "pro")'),
    ('not "fb" in properties["ref"]', '(not ("fb" in properties["ref"]))'),
    ('"fb" not in properties["ref"]', '(not ("fb" in properties["ref"]))'),
    ('not defined (properties["a"])', '(not (defined properties["a"]))'),
    ('defined properties["a"] == 1', '((defined properties["a"]) == 1)'),
    (
        'defined(properties["a"]) AND properties["a"] > 1',
        '((defined properties["a"]) and (properties["a"] > 1))',
    ),
    ("a_b == 1 or 2 == 2 and 3 == 3".replace("a_b", "1"), "((1 == 1) or ((2 == 2) and (3 == 3)))"),
    ("not 1 == 1 or 2 == 2", "((not (1 == 1)) or (2 == 2))"),
    ("NOT NOT true", "(not (not true))"),
    ("-7 % 3", "((-7) % 3)"),
    ("1 + 2 * 3 - 4 / 5", "((1 + (2 * 3)) - (4 / 5))"),
    ("-1 - -2", "((-1) - (-2))"),
    ("(1 + 2) * 3", "((1 + 2) * 3)"),
    ("1.5e3 == 1500", "(1500 == 1500)"),
    (".5 == 0.5", "(0.5 == 0.5)"),
    ("TRUE or False", "(true or false)"),
    ('properties["id"] in [1, 2, 3]', '(properties["id"] in [1, 2, 3])'),
    ('properties["id"] in []', '(properties["id"] in [])'),
    ('"P2" in list(properties["ids"])', '("P2" in list(properties["ids"]))'),
    ('string(properties["K"], "undefined") == "V"', '(string(properties["K"], "undefined") == "V")'),
    ('Number(properties["n"]) >= 1', '(number(properties["n"]) >= 1)'),
    ('any(X, properties["K"], X="V")', 'any(X, properties["K"], (X == "V"))'),
    ('all(item, properties["l"], item["k"] > 1)', 'all(item, properties["l"], (item["k"] > 1))'),
    ('any(X, properties["l"], any(Y, X, Y == X))', 'any(X, properties["l"], any(Y, X, (Y == X)))'),
    ('properties["o"]["a"][0]', 'properties["o"]["a"][0]'),
    (
        'event["$time"] >= datetime("2024-01-01T00:00:00")',
        '(event["$time"] >= datetime("2024-01-01T00:00:00"))',
    ),
    ('user["$email"] == "a@b.c"', '(user["$email"] == "a@b.c")'),
    ('"a\\"b\\\\c\\n\\t\\u00e9\\ud83d\\ude00"', '"a\\"b\\\\c\\n\\t\\u00e9😀"'.replace("\\u00e9", "é")),
    ("'it\\'s'", '"it\'s"'),
    ("round(2.5) + floor(1) + ceil(1)", "((round(2.5) + floor(1)) + ceil(1))"),
    (
        '((defined (properties["K"])) AND ((any(X, properties["K"], X="V")) OR (string(properties["K"], '
        '"undefined") == "V"))) AND (number(properties["mp_processing_time_ms"]) < 1700000000000)',
        '((defined properties["K"]) and (any(X, properties["K"], (X == "V")) or (string(properties["K"], '
        '"undefined") == "V")) and (number(properties["mp_processing_time_ms"]) < 1700000000000))',
    ),
]


@pytest.mark.parametrize(("text", "printed"), PRINTED)
def test_printed_form(text: str, printed: str) -> None:
    node = parse(text)
    assert to_text(node) == printed
    assert parse(printed) == node  # the printed form parses back to the same tree


def test_ast_shape_and_spans() -> None:
    node = parse('not "fb" in properties["ref"]')
    assert node == a.Unary(
        op="not",
        operand=a.Binary(op="in", left=a.String(value="fb"), right=a.Access(scope="properties", name="ref")),
    )
    assert isinstance(node, a.Unary) and isinstance(node.operand, a.Binary)
    assert (node.start, node.end) == (0, 29)
    assert (node.operand.left.start, node.operand.left.end) == (4, 8)
    assert (node.operand.right.start, node.operand.right.end) == (12, 29)


def test_nodes_are_immutable() -> None:
    node = parse("1 == 1")
    with pytest.raises(AttributeError):
        node.op = "!="  # type: ignore[misc, union-attr]


def test_long_or_chains_are_not_nesting() -> None:
    text = " or ".join(f'properties["p"] == "v{i}"' for i in range(300))
    assert len(flatten(parse(text), "or")) == 300
    assert parse(to_text(parse(text))) == parse(text)
    # mp-inputs style value lists become one bound list: one test per row, not 300
    compiled = duckdb_where(text, timezone="UTC")
    assert compiled.params[-1] == [f"v{i}" for i in range(300)]
    assert compiled.text.count("json_extract") == 1
    longest = " or ".join(f'properties["p"] == {i}' for i in range(380))
    assert len(longest) <= MAX_LENGTH
    assert duckdb_where(longest, timezone="UTC").params[-1] == [float(i) for i in range(380)]
    assert duckdb_where("1 == 1 or " * 999 + "1 == 2", timezone="UTC").params == (True,)


ERRORS = [
    ('properties["plan" == "pro"', "where_syntax_error", 19, "expected ']'"),
    ('properties["a"] ==', "where_syntax_error", 19, "expected an expression, found end of expression"),
    ('"abc', "where_syntax_error", 1, "unterminated string"),
    ('"\\q"', "where_syntax_error", 2, "invalid escape '\\q'"),
    ('"\\ud800"', "where_syntax_error", 2, "invalid \\u escape (unpaired surrogate)"),
    ("#", "where_syntax_error", 1, "unexpected character '#'"),
    ("", "where_syntax_error", 1, "expected an expression, found end of expression"),
    ("1.2.3", "where_syntax_error", 1, "invalid number"),
    ("1e999", "where_syntax_error", 1, "number out of range"),
    ("1 < 2 < 3", "where_syntax_error", 7, "comparisons cannot be chained; use 'and' or parentheses"),
    ('properties["a"] not 1', "where_syntax_error", 17, "unexpected 'not'"),
    ("properties", "where_syntax_error", 11, "expected '['"),
    ("(1 == 1", "where_syntax_error", 8, "expected ')'"),
    (
        "any(1, [1], true)",
        "where_syntax_error",
        5,
        "any() expects a variable name first, as in any(X, list, predicate)",
    ),
    ("foo(1)", "where_unknown_function", 1, "unknown function 'foo'"),
    ("x == 1", "where_unknown_name", 1, "unknown name 'x' (only any()/all() variables can be used bare)"),
    (
        "[1,2] == [1]",
        "where_type_error",
        1,
        "a list literal can only follow 'in' or be the list of any()/all()",
    ),
    ("properties[1]", "where_type_error", 12, "properties[...] takes a string literal"),
    ("number()", "where_type_error", 1, "number() takes 1 or 2 arguments"),
    ("floor(1, 2)", "where_type_error", 1, "floor() takes 1 argument"),
    (
        'properties["a"][-1]',
        "where_type_error",
        17,
        "an index must be a string or a non-negative integer literal",
    ),
    (
        "(" * 60 + "1" + ")" * 60,
        "where_too_complex",
        MAX_DEPTH + 1,
        f"expression nests deeper than {MAX_DEPTH} levels",
    ),
    ("+".join(["1"] * 200), "where_too_complex", 1, f"expression nests deeper than {MAX_DEPTH} levels"),
]


@pytest.mark.parametrize(("text", "code", "column", "detail"), ERRORS)
def test_errors(text: str, code: str, column: int, detail: str) -> None:
    with pytest.raises(WhereError) as caught:
        parse(text)
    error = caught.value
    assert (error.code, error.column, error.detail) == (code, column, detail)
    assert (
        str(error)
        == error.message
        == f"where: {detail} at column {column}: {text[:200]}" + ("…" if len(text) > 200 else "")
    )
    assert isinstance(error, BadRequest) and error.status == 400


def test_message_format_matches_the_documented_example() -> None:
    with pytest.raises(WhereSyntaxError) as caught:
        parse('properties["plan" == "pro"')
    assert str(caught.value) == """where: expected ']' at column 19: properties["plan" == "pro\""""


def test_too_long() -> None:
    with pytest.raises(WhereError) as caught:
        parse("1" * (MAX_LENGTH + 1))
    assert caught.value.code == "where_too_complex"


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_pathological_nesting_is_a_400_not_a_crash(depth: int) -> None:
    for text in ("(" * depth, "-" * depth + "1", "not " * depth + "true", "[" * depth, "defined " * depth):
        with pytest.raises(WhereError):
            parse(text[:MAX_LENGTH])


TOKENS = [
    'properties["a"]',
    'properties["l"]',
    'event["$time"]',
    "X",
    "X[0]",
    '["k"]',
    "[0]",
    '"s"',
    "'2024-01-01'",
    "1",
    "2.5",
    "true",
    "(",
    ")",
    "[",
    "]",
    ",",
    "==",
    "=",
    "!=",
    "<",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "and",
    "or",
    "not",
    "in",
    "defined",
    "number(",
    "string(",
    "boolean(",
    "datetime(",
    "list(",
    "round(",
    "any(X,",
    "all(X,",
    "\\",
    '"',
    "#",
]


@given(st.lists(st.sampled_from(TOKENS), max_size=14))
def test_token_soup_is_parsed_or_rejected_cleanly(tokens: list[str]) -> None:
    text = " ".join(tokens)
    try:
        node = parse(text)
    except WhereError as error:
        assert error.code.startswith("where_") and 1 <= error.column <= len(text) + 1
        return
    event = {"event": "e", "properties": {"a": 1, "l": [1, "s"]}, "time_ms": 0, "local_time": 0}
    assert evaluate(node, event) in (True, False)
    duckdb_where(text, timezone="Europe/Paris")
