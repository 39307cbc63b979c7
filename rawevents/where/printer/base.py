"""Compiling a `where` AST to SQL that selects exactly the rows `evaluate` selects.

Every expression compiles to a `Value`: for each runtime type it may have, one SQL expression (an
"arm") that holds the value when it has that type and is NULL otherwise. At most one arm of a
value is non-NULL on any row, and all arms NULL means `undefined`. Operators combine arms type by
type, which reproduces the three-valued, type-strict semantics without guessing: `==` ORs the
same-type comparisons, `<` coalesces them (mismatched types leave every arm NULL: undefined).
Arms are built lazily, so `properties["plan"] == "pro"` only ever extracts the string arm.

Sub-expressions that do not read the event are folded in Python by the reference evaluator and
bound as parameters. The backend-specific spelling (JSON access, lambdas, regular expressions,
number formatting) lives in small hooks that each backend printer implements.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, assert_never

import orjson

from rawevents.where import ast
from rawevents.where.ast import flatten
from rawevents.where.evaluator import EVENT_NAME_NAMES, EVENT_TIME_NAMES, value_of
from rawevents.where.printer.sql import FALSE, TRUE, Sql, atom, join, sql
from rawevents.where.values import (
    DATETIME_MS_THRESHOLD,
    MAX_DATETIME_MS,
    MIN_DATETIME_MS,
    MOD_LIMIT,
    UNDEFINED,
    DateTime,
    naive_offsets,
)

MIN_NEEDLE = 3
MAX_NEEDLES = 8
# The parameter kind each constant type is bound as (a dialect's `_param` spells the type).
_LISTABLE = {"string": "string", "number": "number", "boolean": "boolean", "datetime": "number"}
JSON_TYPES = ("string", "number", "boolean", "null", "list", "object")


@dataclass(frozen=True)
class Value:
    """A compiled expression: the set of runtime types it may have and a builder for each arm.

    `total` means the value is never undefined (so a total value with one type never has a NULL
    arm). `json` is set when the value is a raw JSON
    expression (a property or a JSON list element); `items` when it is a list literal, which
    only `in` and any()/all() consume (the parser guarantees it appears nowhere else).
    """

    types: frozenset[str]
    build: Callable[[str], Sql] = field(repr=False)
    total: bool = False
    json: Sql | None = None
    items: tuple[Value, ...] | None = None
    constant: tuple[str, Any] | None = None  # (kind, python value) of a folded literal

    def arm(self, kind: str) -> Sql | None:
        return self.build(kind) if kind in self.types and self.items is None else None


def _no_arm(kind: str) -> Sql:
    raise AssertionError(f"no {kind} arm")


UNDEFINED_VALUE = Value(frozenset(), _no_arm)


def boolean_value(expr: Sql, *, total: bool) -> Value:
    return Value(frozenset({"boolean"}), lambda _: expr, total=total)


def arms_value(arms: dict[str, Sql], *, total: bool = False) -> Value:
    return Value(frozenset(arms), lambda kind: arms[kind], total=total)


class Printer(ABC):
    """Generic compiler; a backend subclass spells the hooks (`_json_*`, `_list_*`, …)."""

    def __init__(self, timezone: str) -> None:
        self.timezone = timezone
        self._lambdas = 0
        self._impure: set[int] = set()

    # -- entry point ----------------------------------------------------------------------------

    def predicate(self, node: ast.Node) -> Sql:
        """SQL that is TRUE exactly for the rows the expression selects (never NULL)."""
        return self.truth(self.value(node))

    def value(self, node: ast.Node) -> Value:
        """The compiled value of a whole expression (the entry point for every compile)."""
        self._impure = ast.impure_nodes(node)
        return self.compile(node, {})

    def segment_key(self, node: ast.Node) -> Sql:
        """The expression as text, as `string()` converts it, for a segmentation `on`: a string
        per row, NULL when undefined or null (such rows belong to no segment)."""
        text = self.call("string", [self.value(node)]).arm("string")
        return self._param(None, "string") if text is None else text

    def prefilter(self, node: ast.Node, line_vars: frozenset[str] = frozenset()) -> Sql | None:
        """A cheap condition that every selected row satisfies, or None.

        The stored line is compact JSON whose strings are escaped character by character, so a
        raw value equal to the string "v" puts the JSON text `"v"` in the line, and a string
        containing "v" puts the escaped `v` there. A substring test on the raw line (vectorised,
        no JSON parsing) then discards most rows before the exact predicate runs on the rest.
        Only necessary conditions are derived (never under `not` or `all`), so the selection is
        unchanged; tests/where/test_agreement.py runs with it.
        """
        match node:
            case ast.Binary(op="and"):
                found = [c for o in flatten(node, "and") if (c := self.prefilter(o, line_vars)) is not None]
                return sql("({})", join(" AND ", found)) if found else None
            case ast.Binary(op="or"):
                either = [self.prefilter(o, line_vars) for o in flatten(node, "or")]
                if any(c is None for c in either) or len(either) > MAX_NEEDLES:
                    return None
                return sql("({})", join(" OR ", [c for c in either if c is not None]))
            case ast.Binary(op="==", left=left, right=right):
                for lit, other in ((left, right), (right, left)):
                    if isinstance(lit, ast.String) and _raw(other, line_vars):
                        return self._contains_any([_equal_needle(lit.value)])
                return None
            case ast.Binary(op="in", left=left, right=right):
                if isinstance(left, ast.String) and _raw(right, line_vars):
                    return self._contains_any([_json_text(left.value)[1:-1]])
                if isinstance(right, ast.ListLit) and right.items and _raw(left, line_vars):
                    needles = [_equal_needle(i.value) for i in right.items if isinstance(i, ast.String)]
                    if len(needles) == len(right.items):
                        return self._contains_any(needles)
                return None
            case ast.Quantifier(kind="any", var=var, source=source, predicate=predicate):
                if _raw(source, line_vars):
                    return self.prefilter(predicate, line_vars | {var})
                return None
            case _:
                return None

    def _contains_any(self, needles: list[str]) -> Sql | None:
        # Needles shorter than MIN_NEEDLE match most lines: scanning for them costs more than the
        # JSON work they would save.
        if not needles or len(needles) > MAX_NEEDLES or any(len(n) < MIN_NEEDLE for n in needles):
            return None
        tests = [self._line_contains(needle) for needle in needles]
        return tests[0] if len(tests) == 1 else sql("({})", join(" OR ", tests))

    # -- hooks ----------------------------------------------------------------------------------

    @abstractmethod
    def _line_contains(self, text: str) -> Sql:
        """TRUE when the stored export line contains `text` (bound as a parameter)."""

    @abstractmethod
    def _property_json(self, pointer: list[str | int]) -> Sql:
        """The JSON value at `pointer` under the export line's `properties` (NULL if missing)."""

    @abstractmethod
    def _json_at(self, base: Sql, key: str | int) -> Sql:
        """`base` is JSON; its member `key` (objects) or element `key` (lists), else NULL."""

    @abstractmethod
    def _json_arm(self, json: Sql, kind: str) -> Sql:
        """The arm of a JSON value (NULL unless it has that type)."""

    @abstractmethod
    def _json_type_in(self, json: Sql, kinds: tuple[str, ...]) -> Sql:
        """Whether the JSON value has one of these types (NULL when the value is missing)."""

    @abstractmethod
    def _json_absent(self, json: Sql) -> Sql:
        """TRUE when the JSON value is missing or null."""

    @abstractmethod
    def _list_quantify(self, kind: str, json_list: Sql, body: Callable[[Value], Sql]) -> Sql:
        """any/all of `body(element)` (a never-NULL boolean) over a JSON array; empty: FALSE/TRUE."""

    @abstractmethod
    def _list_has(self, values: list[Any], kind: str, needle: Sql) -> Sql:
        """Whether `needle` equals one of `values` (bound as one list parameter); NULL needle: NULL."""

    @abstractmethod
    def _let(self, value: Sql, body: Callable[[Sql], Sql]) -> Sql:
        """`body(v)` with `v` standing for `value` evaluated once per row."""

    @abstractmethod
    def _when_list(self, json: Sql, then: Callable[[Sql], Sql]) -> Sql:
        """`then(json)` when the JSON value (or NULL) is an array, else NULL."""

    @abstractmethod
    def _event_time(self) -> Sql: ...

    def _event_name(self) -> Sql:
        return atom("event")

    @abstractmethod
    def _parse_number(self, text: Sql) -> Sql: ...

    @abstractmethod
    def _parse_datetime(self, text: Sql) -> Sql: ...

    @abstractmethod
    def _group_text(self, groups: Sql, name: str) -> str:
        """The text of DATETIME_PATTERN's group `name` ('' when it did not match) in `groups`."""

    @abstractmethod
    def _integer_or_zero(self, text: str) -> str:
        """The text as a 64-bit integer, 0 when it is not one."""

    @abstractmethod
    def _leading_millis(self, fraction: str) -> str:
        """The first three digits of a fraction of a second, right-padded with 0, as an integer."""

    @abstractmethod
    def _int_div(self, dividend: str, divisor: str) -> str:
        """Integer division rounding down (operands here are never negative)."""

    def _datetime_from_groups(self, g: Sql) -> Sql:
        """Milliseconds since the epoch of a matched DATETIME_PATTERN (`_parse_datetime`'s groups):
        a civil date checked field by field (days_from_civil), its offset or the project's zone."""

        def num(name: str) -> str:
            return self._integer_or_zero(self._group_text(g, name))

        def group(name: str) -> str:
            return self._group_text(g, name)

        div = self._int_div
        y, mo, d = num("yy"), num("mo"), num("dd")
        hh, mi, ss = num("hh"), num("mi"), num("ss")
        zh, zm = num("zh"), num("zm")
        millis = self._leading_millis(group("fr"))
        dim = (
            f"CASE WHEN {mo} = 2 THEN CASE WHEN ({y} % 4 = 0 AND {y} % 100 <> 0) OR {y} % 400 = 0 "
            f"THEN 29 ELSE 28 END WHEN {mo} IN (4, 6, 9, 11) THEN 30 ELSE 31 END"
        )
        yy = f"({y} - CASE WHEN {mo} <= 2 THEN 1 ELSE 0 END)"
        yoe = f"({yy} - {div(yy, '400')} * 400)"
        doy = f"({div(f'153 * ({mo} + CASE WHEN {mo} > 2 THEN -3 ELSE 9 END) + 2', '5')} + {d} - 1)"
        doe = f"({yoe} * 365 + {div(yoe, '4')} - {div(yoe, '100')} + {doy})"
        days = f"({div(yy, '400')} * 146097 + {doe} - 719468)"
        wall = f"({days} * 86400000 + {hh} * 3600000 + {mi} * 60000 + {ss} * 1000 + {millis})"
        valid = (
            f"{group('yy')} <> '' AND {y} >= 1 AND {mo} BETWEEN 1 AND 12 AND {d} BETWEEN 1 AND {dim}"
            f" AND {hh} <= 23 AND {mi} <= 59 AND {ss} <= 59 AND {zh} <= 23 AND {zm} <= 59"
        )
        shift = f"(CASE WHEN {group('sg')} = '+' THEN 1 ELSE -1 END) * ({zh} * 3600000 + {zm} * 60000)"
        naive = self._naive_to_utc(Sql(wall))
        utc = sql(
            f"CASE WHEN {group('zz')} <> '' THEN {wall}"
            f" WHEN {group('sg')} <> '' THEN {wall} - {shift} ELSE {{}} END",
            naive,
        )
        return self._in_datetime_range(sql(f"CASE WHEN {valid} THEN CAST({{}} AS DOUBLE) END", utc))

    def _naive_to_utc(self, wall: Sql) -> Sql:
        """Project-local wall-clock milliseconds as UTC milliseconds (the zone's offset then)."""
        if self.timezone == "UTC":
            return wall
        breaks, offsets = naive_offsets(self.timezone)
        if not breaks:
            return sql("({} - {})", wall, self._param(offsets[0], "integer"))
        return sql("({} - {})", wall, self._offset_in_force(wall, list(breaks), list(offsets)))

    @abstractmethod
    def _offset_in_force(self, wall: Sql, breaks: list[int], offsets: list[int]) -> Sql:
        """`offsets[i]`, i the number of `breaks` (sorted wall-clock milliseconds) at or before
        `wall`: the zone's offset in force then."""

    def _fresh(self) -> str:
        """A new lambda variable name."""
        self._lambdas += 1
        return f"__w{self._lambdas}"

    @abstractmethod
    def _format_number(self, number: Sql) -> Sql: ...

    @abstractmethod
    def _format_datetime(self, ms: Sql) -> Sql: ...

    def _datetime_from_number(self, number: Sql) -> Sql:
        """Seconds, or milliseconds from DATETIME_MS_THRESHOLD on, as in-range milliseconds."""

        def body(n: Sql) -> Sql:
            ms = sql(
                f"CASE WHEN abs({{}}) >= {DATETIME_MS_THRESHOLD!r} THEN {{}} ELSE {{}} * 1000.0 END", n, n, n
            )
            return self._in_datetime_range(ms)

        return self._let(number, body)

    def _in_datetime_range(self, ms: Sql) -> Sql:
        """The milliseconds when a datetime can hold them (years 1-9999), else NULL."""
        return self._let(
            ms,
            lambda m: sql(
                f"CASE WHEN {{}} BETWEEN {MIN_DATETIME_MS} AND {MAX_DATETIME_MS} THEN {{}} END", m, m
            ),
        )

    @abstractmethod
    def _finite(self, number: Sql) -> Sql:
        """NULL when the number is ±inf (operations on finite numbers never yield NaN)."""

    @abstractmethod
    def _string_contains(self, haystack: Sql, needle: Sql) -> Sql: ...

    @abstractmethod
    def _list_length(self, json_list: Sql) -> Sql: ...

    def _modulo(self, a: Sql, b: Sql) -> Sql:
        """`a % b`: fmod for operands below MOD_LIMIT in magnitude, NULL beyond and for b = 0."""
        limit = self._param(MOD_LIMIT, "number")

        def guarded(x: Sql, y: Sql) -> Sql:
            return sql(
                "CASE WHEN abs({}) < {} AND abs({}) < {} THEN {} END",
                x,
                limit,
                y,
                limit,
                self._remainder(x, y),
            )

        return self._let(a, lambda x: self._let(b, lambda y: guarded(x, y)))

    def _remainder(self, a: Sql, b: Sql) -> Sql:
        """fmod(a, b) (the dividend's sign), NULL when b = 0."""
        return sql("({} % nullif({}, 0))", a, b)

    @abstractmethod
    def _param(self, value: Any, kind: str) -> Sql:
        """A bound parameter of `kind` (string, number, boolean, integer, or a list of one: `string[]`)."""

    @abstractmethod
    def _boolean_to_number(self, flag: Sql) -> Sql: ...

    @abstractmethod
    def _boolean_to_string(self, flag: Sql) -> Sql:
        """`true` / `false`, as the reference evaluator spells them."""

    @abstractmethod
    def _rounding(self, name: str, number: Sql) -> Sql:
        """`floor`, `round` or `ceil` of a number, as the reference evaluator rounds it."""

    def _literal(self, value: Any) -> Value:
        found = literal_arms(value)
        arms = {kind: self._param(v, param_kind) for kind, (v, param_kind) in found.items()}
        constant = next(((kind, v) for kind, (v, _) in found.items()), None)
        return Value(frozenset(arms), lambda kind: arms[kind], total=bool(arms), constant=constant)

    # -- compiling ------------------------------------------------------------------------------

    def compile(self, node: ast.Node, env: dict[str, Value]) -> Value:
        if not isinstance(node, ast.ListLit) and id(node) not in self._impure:
            folded = value_of(node, None, self.timezone)
            if not isinstance(folded, list):
                return self._literal(folded)
        match node:
            case ast.String() | ast.Number() | ast.Boolean():
                return self._literal(node.value)
            case ast.ListLit(items=items):
                values = tuple(self.compile(item, env) for item in items)
                return Value(frozenset({"list"}), _no_arm, total=True, items=values)
            case ast.Access():
                return self.access(node)
            case ast.Var(name=name):
                return env[name]
            case ast.Index(target=target, key=key):
                return self.index(self.compile(target, env), key)
            case ast.Unary(op=op, operand=operand):
                return self.unary(op, self.compile(operand, env))
            case ast.Binary(op="or"):
                parts = [self.truth(value) for value in self.disjuncts(flatten(node, "or"), env)]
                return boolean_value(sql("({})", join(" OR ", parts)), total=True)
            case ast.Binary(op="and"):
                parts = [self.truth(self.compile(operand, env)) for operand in flatten(node, "and")]
                return boolean_value(sql("({})", join(" AND ", parts)), total=True)
            case ast.Binary(op=op, left=left, right=right):
                return self.binary(op, self.compile(left, env), self.compile(right, env))
            case ast.Call(name=name, args=args):
                return self.call(name, [self.compile(arg, env) for arg in args])
            case ast.Quantifier(kind=kind, var=var, source=source, predicate=predicate):
                return self.quantifier(kind, var, self.compile(source, env), predicate, env)
            case _:
                assert_never(node)

    def disjuncts(self, operands: list[ast.Node], env: dict[str, Value]) -> list[Value]:
        """The operands of an `or` chain, with `P == "a" or P == "b" or …` (Mixpanel's UI writes
        one term per selected value) merged into one membership test per P. `or` of total
        booleans is commutative, so regrouping changes nothing but the cost."""
        groups: dict[ast.Node, list[ast.Node]] = {}
        rest: list[ast.Node] = []
        for operand in operands:
            split = _equality_with_literal(operand, self._impure)
            if split is None:
                rest.append(operand)
            else:
                groups.setdefault(split[0], []).append(split[1])
        values = [self.compile(operand, env) for operand in rest]
        for subject, literals in groups.items():
            items = tuple(self.compile(literal, env) for literal in literals)
            values.append(boolean_value(self.member(self.compile(subject, env), items), total=True))
        return values

    def json_value(self, json: Sql) -> Value:
        return Value(frozenset(JSON_TYPES), lambda kind: self._json_arm(json, kind), total=False, json=json)

    def access(self, node: ast.Access) -> Value:
        if node.scope == "user":
            return UNDEFINED_VALUE
        if node.name in EVENT_TIME_NAMES[node.scope]:
            return arms_value({"datetime": self._event_time()}, total=True)
        if node.scope == "event":
            if node.name in EVENT_NAME_NAMES:
                return arms_value({"string": self._event_name()}, total=True)
            return UNDEFINED_VALUE
        name = "distinct_id" if node.name == "$distinct_id" else node.name
        return self.json_value(self._property_json([name]))

    def index(self, target: Value, key: str | int) -> Value:
        if target.items is not None:
            if isinstance(key, int) and key < len(target.items):
                return target.items[key]
            return UNDEFINED_VALUE
        if target.json is not None:
            return self.json_value(self._json_at(target.json, key))
        container = target.arm("object" if isinstance(key, str) else "list")
        if container is None:
            return UNDEFINED_VALUE
        return self.json_value(self._json_at(container, key))

    def absent(self, value: Value) -> Sql:
        """TRUE when undefined or null (never NULL)."""
        if value.json is not None:
            return self._json_absent(value.json)
        if value.items is not None:
            return FALSE
        present = [kind for kind in value.types if kind != "null"]
        if not present:
            return TRUE
        return sql("({})", join(" AND ", [sql("{} IS NULL", self.arm(value, kind)) for kind in present]))

    @staticmethod
    def arm(value: Value, kind: str) -> Sql:
        expr = value.arm(kind)
        assert expr is not None
        return expr

    def truth(self, value: Value) -> Sql:
        """Whether the value is `true` (never NULL): how and/or/any/all read their operands."""
        expr = value.arm("boolean")
        if expr is None:
            return FALSE
        if value.total and value.types == {"boolean"}:
            return expr
        return sql("coalesce({}, FALSE)", expr)

    def unary(self, op: str, value: Value) -> Value:
        if op == "defined":
            return boolean_value(sql("(NOT {})", self.absent(value)), total=True)
        if op == "-":
            number = value.arm("number")
            return UNDEFINED_VALUE if number is None else arms_value({"number": sql("(-{})", number)})
        assert op == "not"
        expr = value.arm("boolean")
        if expr is not None and value.total and value.types == {"boolean"}:
            return boolean_value(sql("(NOT {})", expr), total=True)
        if expr is not None and value.types == {"boolean"}:
            # Boolean or undefined: `not undefined` is true.
            return boolean_value(sql("coalesce(NOT {}, TRUE)", expr), total=True)
        absent = sql("CASE WHEN {} THEN TRUE END", self.absent(value))
        if expr is None:
            return boolean_value(absent, total=False)
        return boolean_value(sql("coalesce(NOT {}, {})", expr, absent), total=False)

    def equal(self, left: Value, right: Value) -> Sql:
        terms: list[Sql] = []
        for kind in ("string", "number", "boolean", "datetime", "null"):
            a, b = left.arm(kind), right.arm(kind)
            if a is None or b is None:
                continue
            terms.append(sql("({} AND {})" if kind == "null" else "({} = {})", a, b))
        if not terms:
            return FALSE
        return sql("coalesce({}, FALSE)", join(" OR ", terms))

    def binary(self, op: str, left: Value, right: Value) -> Value:
        if op == "==":
            return boolean_value(self.equal(left, right), total=True)
        if op == "!=":
            return boolean_value(sql("(NOT {})", self.equal(left, right)), total=True)
        if op in (">", ">=", "<", "<="):
            return self.compare(op, left, right)
        if op == "in":
            return self.contains(left, right)
        arms: dict[str, Sql] = {}
        a, b = left.arm("number"), right.arm("number")
        if a is not None and b is not None:
            if op == "%":
                arms["number"] = self._modulo(a, b)
            elif op == "/":
                arms["number"] = self._finite(sql("({} / nullif({}, 0))", a, b))
            else:
                arms["number"] = self._finite(sql(f"({{}} {op} {{}})", a, b))
        a, b = left.arm("string"), right.arm("string")
        if op == "+" and a is not None and b is not None:
            arms["string"] = sql("({} || {})", a, b)
        return arms_value(arms)

    def compare(self, op: str, left: Value, right: Value) -> Value:
        terms: list[Sql] = []
        template = f"({{}} {op} {{}})"
        for kind in ("number", "string", "datetime"):
            a, b = left.arm(kind), right.arm(kind)
            if a is not None and b is not None:
                terms.append(sql(template, a, b))
        a_time, b_text = left.arm("datetime"), right.arm("string")
        if a_time is not None and b_text is not None:
            terms.append(sql(template, a_time, self._parse_datetime(b_text)))
        a_text, b_time = left.arm("string"), right.arm("datetime")
        if a_text is not None and b_time is not None:
            terms.append(sql(template, self._parse_datetime(a_text), b_time))
        if not terms:
            return UNDEFINED_VALUE
        expr = terms[0] if len(terms) == 1 else sql("coalesce({})", join(", ", terms))
        return boolean_value(expr, total=False)

    def contains(self, needle: Value, haystack: Value) -> Value:
        if haystack.items is not None:
            return boolean_value(self.member(needle, haystack.items), total=True)
        terms = []
        text, pattern = haystack.arm("string"), needle.arm("string")
        if text is not None and pattern is not None:
            terms.append(self._string_contains(text, pattern))
        json_list = haystack.json if haystack.json is not None else haystack.arm("list")
        if json_list is not None:
            terms.append(
                self._when_list(
                    json_list,
                    lambda items: self._list_quantify("any", items, lambda item: self.equal(needle, item)),
                )
            )
        if not terms:
            return UNDEFINED_VALUE
        expr = terms[0] if len(terms) == 1 else sql("coalesce({})", join(", ", terms))
        return boolean_value(expr, total=False)

    def member(self, needle: Value, items: tuple[Value, ...]) -> Sql:
        """`needle == item` for some item (never NULL). Constant items of one type become one
        bound list (`list_contains`), so `P in [300 values]` is one test, not 300."""
        if needle.json is not None and not needle.json.atomic and len(items) > 1:
            return self._let(needle.json, lambda bound: self.member(self.json_value(bound), items))
        terms: list[Sql] = []
        constants: dict[str, list[Any]] = {}
        for item in items:
            if item.constant is not None and item.constant[0] in _LISTABLE:
                constants.setdefault(item.constant[0], []).append(item.constant[1])
            else:
                terms.append(self.equal(needle, item))
        for kind, values in constants.items():
            arm = needle.arm(kind)
            if arm is not None:
                terms.append(self._list_has(values, _LISTABLE[kind], arm))
        if not terms:
            return FALSE
        return sql("coalesce({}, FALSE)", join(" OR ", terms))

    def call(self, name: str, args: list[Value]) -> Value:
        value = args[0]
        if value.json is not None and name != "list" and not value.json.atomic:
            # Conversions read several arms of a property: extract it once per row.
            return self.let_value(value.json, lambda item: self.call(name, [item, *args[1:]]))
        if name == "boolean":
            result = self.to_boolean(value)
            return result if len(args) == 1 else self.default_when_absent(value, result, args[1])
        if name in ("number", "string"):
            result = self.to_number(value) if name == "number" else self.to_string(value)
            return result if len(args) == 1 else self.default_when_absent(result, result, args[1])
        if name == "list":
            if value.items is not None:
                return value
            json_list = value.arm("list")
            return UNDEFINED_VALUE if json_list is None else arms_value({"list": json_list})
        if name == "datetime":
            return self.to_datetime(value)
        number = value.arm("number")
        if number is None:
            return UNDEFINED_VALUE
        return arms_value({"number": self._rounding(name, number)})

    def let_value(self, json: Sql, compute: Callable[[Value], Value]) -> Value:
        """`compute` over a JSON value that is evaluated once per row (one let per result arm)."""
        shape = compute(self.json_value(atom("__shape")))
        arms = {
            kind: self._let(json, lambda bound, k=kind: self.arm(compute(self.json_value(bound)), k))  # type: ignore[misc]
            for kind in shape.types
        }
        return arms_value(arms, total=shape.total)

    def default_when_absent(self, tested: Value, result: Value, default: Value) -> Value:
        """Two-argument casts: `default` when `tested` is undefined or null, else `result`."""
        absent = self.absent(tested)
        arms: dict[str, Sql] = {}
        for kind in sorted(set(result.types) | set(default.types)):
            if default.items is not None:
                continue
            mine, theirs = result.arm(kind), default.arm(kind)
            if mine is None and theirs is None:
                continue
            arms[kind] = sql(
                "CASE WHEN {} THEN {} ELSE {} END", absent, theirs or Sql("NULL"), mine or Sql("NULL")
            )
        return arms_value(arms, total=result.total and default.total)

    def to_number(self, value: Value) -> Value:
        parts: list[Sql] = []
        if (number := value.arm("number")) is not None:
            parts.append(number)
        if (text := value.arm("string")) is not None:
            parts.append(self._parse_number(text))
        if (flag := value.arm("boolean")) is not None:
            parts.append(self._boolean_to_number(flag))
        return self._coalesced("number", parts)

    def to_string(self, value: Value) -> Value:
        parts: list[Sql] = []
        if (text := value.arm("string")) is not None:
            parts.append(text)
        if (number := value.arm("number")) is not None:
            parts.append(self._format_number(number))
        if (flag := value.arm("boolean")) is not None:
            parts.append(self._boolean_to_string(flag))
        if (moment := value.arm("datetime")) is not None:
            parts.append(self._format_datetime(moment))
        result = self._coalesced("string", parts)
        null = value.arm("null")
        if null is None:
            return result
        arms = {"null": null}
        if "string" in result.types:
            arms["string"] = self.arm(result, "string")
        return arms_value(arms)

    def to_boolean(self, value: Value) -> Value:
        if value.items is not None:
            return self._literal(bool(value.items))
        parts: list[Sql] = []
        if (flag := value.arm("boolean")) is not None:
            parts.append(flag)
        if (text := value.arm("string")) is not None:
            parts.append(sql("({} NOT IN ('', 'false'))", text))
        if (number := value.arm("number")) is not None:
            parts.append(sql("({} <> 0)", number))
        if (json_list := value.arm("list")) is not None:
            parts.append(sql("({} > 0)", self._list_length(json_list)))
        for kind in ("datetime", "object"):
            if (other := value.arm(kind)) is not None:
                parts.append(sql("CASE WHEN {} IS NOT NULL THEN TRUE END", other))
        parts.append(FALSE)
        expr = parts[0] if len(parts) == 1 else sql("coalesce({})", join(", ", parts))
        return boolean_value(expr, total=True)

    def to_datetime(self, value: Value) -> Value:
        parts: list[Sql] = []
        if (moment := value.arm("datetime")) is not None:
            parts.append(moment)
        if (number := value.arm("number")) is not None:
            parts.append(self._datetime_from_number(number))
        if (text := value.arm("string")) is not None:
            parts.append(self._parse_datetime(text))
        return self._coalesced("datetime", parts)

    @staticmethod
    def _coalesced(kind: str, parts: list[Sql]) -> Value:
        if not parts:
            return UNDEFINED_VALUE
        expr = parts[0] if len(parts) == 1 else sql("coalesce({})", join(", ", parts))
        return arms_value({kind: expr})

    def quantifier(
        self, kind: str, var: str, source: Value, predicate: ast.Node, env: dict[str, Value]
    ) -> Value:
        def body(item: Value) -> Sql:
            return self.truth(self.compile(predicate, {**env, var: item}))

        if source.items is not None:
            terms = [body(item) for item in source.items]
            if not terms:
                return self._literal(kind == "all")
            glue = " OR " if kind == "any" else " AND "
            return boolean_value(sql("({})", join(glue, terms)), total=True)
        if source.json is not None:
            json = source.json

            def over(j: Sql) -> Sql:
                return sql(
                    "CASE WHEN {} THEN {} WHEN NOT {} THEN {} ELSE FALSE END",
                    self._json_type_in(j, ("list",)),
                    self._list_quantify(kind, j, body),
                    self._json_type_in(j, ("null",)),
                    body(self.json_value(j)),
                )

            return boolean_value(self._let(json, over), total=True)
        parts: list[Sql] = []
        json_list = source.arm("list")
        if json_list is not None:
            parts.append(self._when_list(json_list, lambda items: self._list_quantify(kind, items, body)))
        scalars = [k for k in source.types if k not in ("list", "null")]
        if scalars:
            present = join(" OR ", [sql("{} IS NOT NULL", self.arm(source, k)) for k in scalars])
            parts.append(sql("CASE WHEN {} THEN {} END", present, body(source)))
        parts.append(FALSE)
        expr = parts[0] if len(parts) == 1 else sql("coalesce({})", join(", ", parts))
        return boolean_value(expr, total=True)


def _equality_with_literal(node: ast.Node, impure: set[int]) -> tuple[ast.Node, ast.Node] | None:
    """(subject, literal) of `subject == literal` / `literal == subject`, literal a constant."""
    if not (isinstance(node, ast.Binary) and node.op == "=="):
        return None
    for literal, subject in ((node.right, node.left), (node.left, node.right)):
        if isinstance(literal, ast.String | ast.Number | ast.Boolean) and id(subject) in impure:
            return subject, literal
    return None


def _raw(node: ast.Node, line_vars: frozenset[str]) -> bool:
    """A value read as is from the event (no conversion): its JSON text is in the line."""
    while isinstance(node, ast.Index):
        node = node.target
    if isinstance(node, ast.Access):
        return node.scope == "properties"  # event[...] reads columns, user[...] is undefined
    return isinstance(node, ast.Var) and node.name in line_vars


def _json_text(value: str) -> str:
    return orjson.dumps(value).decode()


def _equal_needle(value: str) -> str:
    # The JSON text of the value without its opening quote: lines are full of `"`, so a needle
    # starting with one makes the substring search about twice as slow.
    return _json_text(value)[1:]


def literal_arms(value: Any) -> dict[str, tuple[Any, str]]:
    """(python value, parameter kind) of the single arm of a folded constant."""
    if value is UNDEFINED:
        return {}
    if value is None:
        return {"null": (True, "boolean")}
    if isinstance(value, bool):
        return {"boolean": (value, "boolean")}
    if isinstance(value, int | float):
        assert math.isfinite(value)
        return {"number": (float(value), "number")}
    if isinstance(value, str):
        return {"string": (value, "string")}
    if isinstance(value, DateTime):
        return {"datetime": (value.ms, "number")}
    raise TypeError(f"cannot bind {value!r}")
