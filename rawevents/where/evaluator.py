"""The reference evaluator: the executable definition of what a `where` expression means.

It runs over one decoded event and is deliberately plain Python; the SQL printers must select
exactly the rows for which `evaluate` returns True (tests/where/test_agreement.py checks this).
docs/where.md explains every rule with examples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, assert_never

from rawevents.where import ast
from rawevents.where.ast import flatten
from rawevents.where.parser import parse
from rawevents.where.values import (
    MOD_LIMIT,
    UNDEFINED,
    DateTime,
    c_ceil,
    c_floor,
    c_round,
    datetime_from_number,
    finite,
    format_datetime,
    format_number,
    from_json,
    parse_datetime,
    parse_number,
    type_name,
)

EVENT_TIME_NAMES = {"properties": ("$time",), "event": ("$time", "time")}
EVENT_NAME_NAMES = ("name", "$event_name")


def evaluate(expr: ast.Node | str, event: Mapping[str, Any], timezone: str = "UTC") -> bool:
    """Whether the event is selected: only a final `true` selects.

    `event` has "event" (name), "properties" (decoded JSON, without `time`), "time_ms" (UTC epoch
    ms) and "local_time" (the exported numeric `time`, project-local seconds).
    """
    return value_of(expr, event, timezone) is True


def value_of(expr: ast.Node | str, event: Mapping[str, Any] | None, timezone: str = "UTC") -> Any:
    """The value of an expression (UNDEFINED, None for null, float, str, bool, DateTime, list,
    dict). With `event=None` only event-independent expressions can be evaluated."""
    node = parse(expr) if isinstance(expr, str) else expr
    return _Evaluator(event, timezone).eval(node, {})


def is_true(value: Any) -> bool:
    return value is True


def is_absent(value: Any) -> bool:
    return value is UNDEFINED or value is None


class _Evaluator:
    def __init__(self, event: Mapping[str, Any] | None, timezone: str) -> None:
        self.event = event
        self.timezone = timezone

    def eval(self, node: ast.Node, env: dict[str, Any]) -> Any:
        match node:
            case ast.String(value=value):
                return value
            case ast.Number(value=value):
                return value
            case ast.Boolean(value=value):
                return value
            case ast.ListLit(items=items):
                return [self.eval(item, env) for item in items]
            case ast.Access():
                return self.access(node)
            case ast.Var(name=name):
                return env[name]
            case ast.Index(target=target, key=key):
                return index(self.eval(target, env), key)
            case ast.Unary(op=op, operand=operand):
                return self.unary(op, self.eval(operand, env))
            case ast.Binary(op="and" | "or" as op):
                values = (is_true(self.eval(operand, env)) for operand in flatten(node, op))
                return all(values) if op == "and" else any(values)
            case ast.Binary(op=op, left=left, right=right):
                return binary(op, self.eval(left, env), self.eval(right, env), self.timezone)
            case ast.Call(name=name, args=args):
                return self.call(name, [self.eval(arg, env) for arg in args])
            case ast.Quantifier(kind=kind, var=var, source=source, predicate=predicate):
                members = elements(self.eval(source, env))
                if members is None:
                    return False
                results = (is_true(self.eval(predicate, {**env, var: item})) for item in members)
                return any(results) if kind == "any" else all(results)
            case _:
                assert_never(node)

    def access(self, node: ast.Access) -> Any:
        if node.scope == "user":
            return UNDEFINED  # export has no profile join
        if self.event is None:
            raise ValueError("this expression needs an event")
        if node.name in EVENT_TIME_NAMES[node.scope]:
            return DateTime(float(self.event["time_ms"]))
        if node.scope == "event":
            return self.event["event"] if node.name in EVENT_NAME_NAMES else UNDEFINED
        if node.name == "time":
            return float(self.event["local_time"])
        name = "distinct_id" if node.name == "$distinct_id" else node.name
        return from_json(self.event["properties"].get(name, UNDEFINED))

    def unary(self, op: str, value: Any) -> Any:
        if op == "not":
            if isinstance(value, bool):
                return not value
            return True if is_absent(value) else UNDEFINED
        if op == "-":
            return -value if type_name(value) == "number" else UNDEFINED
        assert op == "defined"
        return not is_absent(value)

    def call(self, name: str, args: list[Any]) -> Any:
        value = args[0]
        kind = type_name(value)
        if name in ("number", "string", "boolean") and len(args) == 2:
            if name == "boolean":
                return args[1] if is_absent(value) else to_boolean(value)
            result = to_number(value) if name == "number" else to_string(value)
            return args[1] if is_absent(result) else result
        if name == "number":
            return to_number(value)
        if name == "string":
            return to_string(value)
        if name == "boolean":
            return to_boolean(value)
        if name == "datetime":
            if kind == "number":
                return datetime_from_number(value)
            if kind == "string":
                return parse_datetime(value, self.timezone)
            return value if kind == "datetime" else UNDEFINED
        if name == "list":
            return value if kind == "list" else UNDEFINED
        if kind != "number":
            return UNDEFINED
        if name == "floor":
            return c_floor(value)
        if name == "ceil":
            return c_ceil(value)
        assert name == "round"
        return c_round(value)


def index(value: Any, key: str | int) -> Any:
    if isinstance(key, str):
        return from_json(value.get(key, UNDEFINED)) if isinstance(value, dict) else UNDEFINED
    if isinstance(value, list) and key < len(value):
        return from_json(value[key])
    return UNDEFINED


def elements(value: Any) -> list[Any] | None:
    """What any()/all() iterate: a list's elements; a scalar is a one-element list; undefined
    and null are no list at all (any → false, all → false)."""
    if isinstance(value, list):
        return [from_json(item) for item in value]
    return None if is_absent(value) else [value]


def equal(left: Any, right: Any) -> bool:
    """Type-strict equality; lists, objects and undefined are never equal to anything."""
    kind = type_name(left)
    if kind != type_name(right) or kind in ("list", "object", "undefined"):
        return False
    return bool(left == right)


def binary(op: str, left: Any, right: Any, timezone: str = "UTC") -> Any:
    if op == "==":
        return equal(left, right)
    if op == "!=":
        return not equal(left, right)
    if op in (">", ">=", "<", "<="):
        return compare(op, left, right, timezone)
    if op == "in":
        return contains(left, right)
    left_kind, right_kind = type_name(left), type_name(right)
    if op == "+" and left_kind == right_kind == "string":
        return left + right
    if left_kind != "number" or right_kind != "number":
        return UNDEFINED
    if op == "+":
        return finite(left + right)
    if op == "-":
        return finite(left - right)
    if op == "*":
        return finite(left * right)
    if right == 0:
        return UNDEFINED
    if op == "/":
        return finite(left / right)
    assert op == "%"
    if abs(left) >= MOD_LIMIT or abs(right) >= MOD_LIMIT:
        return UNDEFINED
    return math.fmod(left, right)


def compare(op: str, left: Any, right: Any, timezone: str = "UTC") -> Any:
    """Ordering: number/number, string/string (code points), datetime/datetime, and datetime
    against a string parsed as a datetime; anything else is undefined."""
    kinds = (type_name(left), type_name(right))
    if kinds == ("datetime", "string"):
        right = parse_datetime(right, timezone)
    elif kinds == ("string", "datetime"):
        left = parse_datetime(left, timezone)
    kinds = (type_name(left), type_name(right))
    if kinds in (("number", "number"), ("string", "string")):
        a, b = left, right
    elif kinds == ("datetime", "datetime"):
        a, b = left.ms, right.ms
    else:
        return UNDEFINED
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    return bool(a <= b)


def contains(needle: Any, haystack: Any) -> Any:
    if isinstance(haystack, str):
        return needle in haystack if isinstance(needle, str) else UNDEFINED
    if isinstance(haystack, list):
        return any(equal(needle, from_json(item)) for item in haystack)
    return UNDEFINED


def to_number(value: Any) -> Any:
    kind = type_name(value)
    if kind == "number":
        return value
    if kind == "string":
        return parse_number(value)
    if kind == "boolean":
        return 1.0 if value else 0.0
    return UNDEFINED


def to_string(value: Any) -> Any:
    kind = type_name(value)
    if kind in ("string", "null", "undefined"):
        return value
    if kind == "number":
        return format_number(value)
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "datetime":
        return format_datetime(value)
    return UNDEFINED  # lists and objects have no string form


def to_boolean(value: Any) -> bool:
    kind = type_name(value)
    if kind == "boolean":
        return bool(value)
    if kind == "string":
        return value not in ("", "false")
    if kind == "number":
        return bool(value != 0)
    if kind == "list":
        return len(value) > 0
    return kind in ("datetime", "object")
