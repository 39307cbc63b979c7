"""The DuckDB printer: JSON via json_extract with JSON Pointer paths bound as parameters, list
quantifiers via list_transform lambdas, datetime text parsed with regexp_extract + arithmetic.

Columns used: `line` (the export line, valid JSON), `event` (name), `time_ms` (UTC ms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rawevents.where.printer.base import Printer, Value
from rawevents.where.printer.sql import Sql, atom, sql
from rawevents.where.values import (
    DATETIME_GROUPS,
    DATETIME_PATTERN,
    NUMBER_PATTERN,
)

_DUCKDB_TYPES = {
    "string": ("VARCHAR",),
    "number": ("BIGINT", "UBIGINT", "DOUBLE", "HUGEINT"),
    "boolean": ("BOOLEAN",),
    "null": ("NULL",),
    "list": ("ARRAY",),
    "object": ("OBJECT",),
}
_JSON_TYPES = {
    kind: "json_type({}) IN (" + ", ".join(f"'{name}'" for name in names) + ")"
    for kind, names in _DUCKDB_TYPES.items()
}
_JSON_PAYLOAD = {
    "string": "({} ->> '$')",
    "number": "CAST({} AS DOUBLE)",
    "boolean": "CAST({} AS BOOLEAN)",
    "list": "{}",
    "object": "{}",
}
_PARAM_TYPES = {"string": "VARCHAR", "number": "DOUBLE", "boolean": "BOOLEAN", "integer": "BIGINT"}


def json_pointer(keys: list[str | int]) -> str:
    """RFC 6901 pointer: the one place a property name becomes a path (`~` → `~0`, `/` → `~1`).
    The pointer is bound as a parameter, so quotes, dots, brackets or NUL need no SQL escaping."""
    return "".join("/" + str(key).replace("~", "~0").replace("/", "~1") for key in keys)


def _looks_like_index(key: str) -> bool:
    return key == "-" or (key.isascii() and key.isdigit())


class DuckDBPrinter(Printer):
    def _param(self, value: Any, kind: str) -> Sql:
        element = kind.removesuffix("[]")
        spelled = _PARAM_TYPES[element] + ("[]" if element != kind else "")
        return Sql(f"CAST(? AS {spelled})", (value,), atomic=True)

    def _boolean_to_number(self, flag: Sql) -> Sql:
        return sql("CAST({} AS DOUBLE)", flag)

    def _boolean_to_string(self, flag: Sql) -> Sql:
        return sql("CAST({} AS VARCHAR)", flag)

    def _rounding(self, name: str, number: Sql) -> Sql:
        return sql(f"{name}({{}})", number)

    def _line_contains(self, text: str) -> Sql:
        return sql("contains(line, {})", self._param(text, "string"))

    def _property_json(self, pointer: list[str | int]) -> Sql:
        return sql("json_extract(line, {})", self._param(json_pointer(["properties", *pointer]), "string"))

    def _json_at(self, base: Sql, key: str | int) -> Sql:
        # A JSON Pointer step means "member" on objects and "element" on arrays; where keeps them
        # apart (a string key never indexes a list, a number never reads a member "3").
        path = self._param(json_pointer([key]), "string")
        if isinstance(key, str) and not _looks_like_index(key):
            return sql("json_extract({}, {})", base, path)
        wanted = "ARRAY" if isinstance(key, int) else "OBJECT"
        return self._let(
            base,
            lambda j: sql(
                f"CASE WHEN json_type({{}}) = '{wanted}' THEN json_extract({{}}, {{}}) END", j, j, path
            ),
        )

    def _json_arm(self, json: Sql, kind: str) -> Sql:
        test = _JSON_TYPES[kind]
        if kind == "null":
            return sql(f"CASE WHEN {test} THEN TRUE END", json)
        template = f"CASE WHEN {test} THEN {_JSON_PAYLOAD[kind]} END"
        return self._let(json, lambda j: sql(template, j, j))

    def _json_type_in(self, json: Sql, kinds: tuple[str, ...]) -> Sql:
        names = ", ".join(f"'{name}'" for kind in kinds for name in _DUCKDB_TYPES[kind])
        return sql(f"(json_type({{}}) IN ({names}))", json)

    def _json_absent(self, json: Sql) -> Sql:
        return sql("coalesce(json_type({}) = 'NULL', TRUE)", json)

    def _list_quantify(self, kind: str, json_list: Sql, body: Callable[[Value], Sql]) -> Sql:
        name = self._fresh()
        item = self.json_value(atom(name))
        aggregate = "list_bool_or" if kind == "any" else "list_bool_and"
        empty = "FALSE" if kind == "any" else "TRUE"
        template = (
            f"coalesce({aggregate}(list_transform(json_extract({{}}, '$[*]'), lambda {name}: {{}})), {empty})"
        )
        return sql(
            template,
            json_list,
            body(item),
        )

    def _list_has(self, values: list[Any], kind: str, needle: Sql) -> Sql:
        return sql("list_contains({}, {})", self._param(values, f"{kind}[]"), needle)

    def _when_list(self, json: Sql, then: Callable[[Sql], Sql]) -> Sql:
        return self._let(json, lambda j: sql("CASE WHEN json_type({}) = 'ARRAY' THEN {} END", j, then(j)))

    def _let(self, value: Sql, body: Callable[[Sql], Sql]) -> Sql:
        """Evaluate `value` once per row and use it many times (a one-element list lambda):
        extracting a property once and testing its type on the small result is about twice as
        fast as extracting it twice from the whole line."""
        if value.atomic:
            return body(value)
        name = self._fresh()
        return sql(f"list_transform([{{}}], lambda {name}: {{}})[1]", value, body(atom(name)))

    def _event_time(self) -> Sql:
        return Sql("CAST(time_ms AS DOUBLE)")

    def _parse_number(self, text: Sql) -> Sql:
        return self._finite(sql(f"TRY_CAST(regexp_extract({{}}, '^{NUMBER_PATTERN}$') AS DOUBLE)", text))

    def _format_number(self, number: Sql) -> Sql:
        return sql("regexp_replace(CAST({} AS VARCHAR), '\\.0$', '')", number)

    def _format_datetime(self, ms: Sql) -> Sql:
        return sql("strftime(make_timestamp(CAST(floor({}) AS BIGINT) * 1000), '%Y-%m-%dT%H:%M:%S.%gZ')", ms)

    def _finite(self, number: Sql) -> Sql:
        return sql("nullif(nullif({}, CAST('inf' AS DOUBLE)), CAST('-inf' AS DOUBLE))", number)

    def _string_contains(self, haystack: Sql, needle: Sql) -> Sql:
        return sql("contains({}, {})", haystack, needle)

    def _list_length(self, json_list: Sql) -> Sql:
        return sql("json_array_length({})", json_list)

    def _parse_datetime(self, text: Sql) -> Sql:
        names = ", ".join(f"'{name}'" for name in DATETIME_GROUPS)
        groups = sql(f"regexp_extract({{}}, '^{DATETIME_PATTERN}$', [{names}])", text)
        return self._let(groups, self._datetime_from_groups)

    def _group_text(self, groups: Sql, name: str) -> str:
        return f"{groups.text}.{name}"

    def _integer_or_zero(self, text: str) -> str:
        return f"coalesce(TRY_CAST({text} AS BIGINT), 0)"

    def _leading_millis(self, fraction: str) -> str:
        return f"CAST(left(rpad({fraction}, 3, '0'), 3) AS BIGINT)"

    def _int_div(self, dividend: str, divisor: str) -> str:
        return f"(({dividend}) // {divisor})"

    def _offset_in_force(self, wall: Sql, breaks: list[int], offsets: list[int]) -> Sql:
        name = self._fresh()
        return sql(
            f"{{}}[list_count(list_filter({{}}, lambda {name}: {name} <= {{}})) + 1]",
            self._param(offsets, "integer[]"),
            self._param(breaks, "integer[]"),
            wall,
        )
