"""The ClickHouse printer: a JSON value is its raw JSON text (a Nullable String, NULL when
missing), read with JSONExtractRaw / JSONType / JSONExtract* over the stored `line`; list
quantifiers are arrayExists / arrayAll lambdas; values are bound as `{name:Type}` parameters.

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

_JSON_TYPE_NAMES = {
    "string": ("String",),
    "number": ("Int64", "UInt64", "Double"),
    "boolean": ("Bool",),
    "null": ("Null",),
    "list": ("Array",),
    "object": ("Object",),
}
_JSON_PAYLOAD = {
    "string": "JSONExtractString({})",
    # JSONExtractRaw re-serialises -0.0 as "-0" (which JSONExtractFloat reads as 0); stored
    # lines never hold an integer -0 (ingest writes it as 0), so "-0" is always -0.0.
    "number": "if({} = '-0', -0., JSONExtractFloat({}))",
    "boolean": "(JSONExtractBool({}) = 1)",
    "list": "{}",
    "object": "{}",
}
_PARAM_TYPES = {"string": "String", "number": "Float64", "boolean": "Bool", "integer": "Int64"}


def _literal(text: str) -> str:
    """A ClickHouse string literal for the printer's own constants (never user values)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _type_test(kinds: tuple[str, ...]) -> str:
    """A test of a raw JSON value's type, with `{}` for the value (as many as `count("{}")`).

    JSONExtractRaw re-serialises a Double without its exponent (1.8446744073709552e+19 becomes
    18446744073709552000), an integer text past 64 bits that JSONType then calls a 'String': a
    'String' whose raw text does not start with a quote is that number (issue 26)."""
    names = ", ".join(f"'{name}'" for kind in kinds for name in _JSON_TYPE_NAMES[kind] if name != "String")
    tests = [f"JSONType({{}}) IN ({names})"] if names else []
    if "string" in kinds and "number" not in kinds:
        tests.append("(JSONType({}) = 'String' AND startsWith({}, '\"'))")
    elif "number" in kinds and "string" not in kinds:
        tests.append("(JSONType({}) = 'String' AND NOT startsWith({}, '\"'))")
    elif "number" in kinds:
        tests.append("JSONType({}) = 'String'")
    return f"({' OR '.join(tests)})"


class ClickHousePrinter(Printer):
    def __init__(self, timezone: str) -> None:
        super().__init__(timezone)
        self._bound = 0
        self._paths: dict[str, tuple[list[str | int], list[int]]] = {}  # see _path

    def _param(self, value: Any, kind: str) -> Sql:
        element = kind.removesuffix("[]")
        spelled = _PARAM_TYPES[element]
        if element != kind:
            spelled = f"Array({spelled})"
        self._bound += 1
        name = f"w{self._bound}"
        return Sql(f"{{{name}:{spelled}}}", ((name, value),), atomic=True)

    def _boolean_to_number(self, flag: Sql) -> Sql:
        return sql("toFloat64({})", flag)

    def _boolean_to_string(self, flag: Sql) -> Sql:
        # `if` would read a NULL condition as false; CASE keeps NULL.
        return self._let(flag, lambda f: sql("CASE WHEN {} THEN 'true' WHEN NOT {} THEN 'false' END", f, f))

    def _rounding(self, name: str, number: Sql) -> Sql:
        if name != "round":
            return sql(f"{name}({{}})", number)

        # C round(): halves away from zero, the sign (and that of zero) kept.
        def body(x: Sql) -> Sql:
            magnitude = sql("(floor(abs({})) + (abs({}) - floor(abs({})) >= 0.5))", x, x, x)
            return sql("if({} < 0 OR ({} = 0 AND 1 / {} < 0), -{}, {})", x, x, x, magnitude, magnitude)

        return self._let(number, body)

    def _remainder(self, a: Sql, b: Sql) -> Sql:
        # ClickHouse's `%` on Float64 is not fmod (2**63 % 7 gives 0): integral operands (every
        # integer ingestion stores, below MOD_LIMIT = 2**96) go through Int128 exactly, split in
        # 32-bit halves so each Float64 -> integer conversion is exact; the dividend's sign kept.
        def exact(x: Sql, y: Sql) -> Sql:
            remainder = sql("toFloat64({} % {})", _int128(x), _int128(y))
            return sql(
                "multiIf({} = 0, NULL, {} = 0, {}, {} = floor({}) AND {} = floor({}),"
                " if({} < 0, -1., 1.) * abs({}), {} % {})",
                y, x, x, x, x, y, y, x, remainder, x, y,
            )  # fmt: skip

        return self._let(a, lambda x: self._let(b, lambda y: exact(x, y)))

    def _line_contains(self, text: str) -> Sql:
        return sql("(position(line, {}) > 0)", self._param(text, "string"))

    def _property_json(self, pointer: list[str | int]) -> Sql:
        return self._path(pointer, [])

    def _path(self, pointer: list[str | int], lists: list[int]) -> Sql:
        """The raw JSON at `pointer` under `properties`, read from the line itself; `lists` are
        the positions in `pointer` of list indexes, whose containers must be arrays.

        Read once from the line, never from a re-serialised value: ClickHouse writes a Double
        such as 1.8446744073709552e+19 back as 18446744073709552000, which its parser then reads
        as a string (quoted, inside an object or a list), not as the number it was."""
        keys = [self._param(key, "string" if isinstance(key, str) else "integer") for key in pointer]
        template = "nullIf(JSONExtractRaw(line, 'properties'" + ", {}" * len(keys) + "), '')"
        found = sql(template, *keys)
        if lists:
            tests = [
                sql("JSONType(line, 'properties'" + ", {}" * at + ") = 'Array'", *keys[:at]) for at in lists
            ]
            found = sql("CASE WHEN {} THEN {} END", sql(" AND ".join(["{}"] * len(tests)), *tests), found)
        self._paths[found.text] = (pointer, lists)
        return found

    def _json_at(self, base: Sql, key: str | int) -> Sql:
        # A string key reads an object member only; a number reads a list element only (JSON
        # functions would read the N-th member of an object), 1-based in ClickHouse.
        path = self._paths.get(base.text)
        if path is not None:
            pointer, lists = path
            step: str | int = key if isinstance(key, str) else key + 1
            return self._path([*pointer, step], lists if isinstance(key, str) else [*lists, len(pointer)])
        if isinstance(key, str):
            return sql("nullIf(JSONExtractRaw({}, {}), '')", base, self._param(key, "string"))
        index = self._param(key + 1, "integer")
        return self._let(
            base,
            lambda j: sql(
                "CASE WHEN JSONType({}) = 'Array' THEN nullIf(JSONExtractRaw({}, {}), '') END", j, j, index
            ),
        )

    def _json_arm(self, json: Sql, kind: str) -> Sql:
        test = _type_test((kind,))
        if kind == "null":
            return sql(f"CASE WHEN {test} THEN TRUE END", json)
        template = f"CASE WHEN {test} THEN {_JSON_PAYLOAD[kind]} END"
        return self._let(json, lambda j: sql(template, *[j] * template.count("{}")))

    def _json_type_in(self, json: Sql, kinds: tuple[str, ...]) -> Sql:
        test = _type_test(kinds)
        return self._let(json, lambda j: sql(test, *[j] * test.count("{}")))

    def _json_absent(self, json: Sql) -> Sql:
        return sql("coalesce(JSONType({}) = 'Null', TRUE)", json)

    def _list_quantify(self, kind: str, json_list: Sql, body: Callable[[Value], Sql]) -> Sql:
        name = self._fresh()
        function = "arrayExists" if kind == "any" else "arrayAll"
        items = sql("JSONExtractArrayRaw(ifNull({}, ''))", json_list)
        path = self._paths.get(json_list.text)
        if path is not None:  # the items as the line holds them (see _path)
            pointer, _ = path
            keys = [self._param(key, "string" if isinstance(key, str) else "integer") for key in pointer]
            direct = sql("JSONExtractArrayRaw(line, 'properties'" + ", {}" * len(keys) + ")", *keys)
            items = sql("if(isNull({}), [], {})", json_list, direct)
        return sql(f"{function}({name} -> {{}}, {{}})", body(self.json_value(atom(name))), items)

    def _list_has(self, values: list[Any], kind: str, needle: Sql) -> Sql:
        listed = self._param(values, f"{kind}[]")
        return self._let(
            needle, lambda n: sql("if(isNull({}), NULL, has({}, assumeNotNull({})))", n, listed, n)
        )

    def _when_list(self, json: Sql, then: Callable[[Sql], Sql]) -> Sql:
        return self._let(json, lambda j: sql("CASE WHEN JSONType({}) = 'Array' THEN {} END", j, then(j)))

    def _let(self, value: Sql, body: Callable[[Sql], Sql]) -> Sql:
        """`body` over `value` computed once per row: a one-element arrayMap lambda."""
        if value.atomic:
            return body(value)
        name = self._fresh()
        return sql(f"arrayMap({name} -> {{}}, [{{}}])[1]", body(atom(name)), value)

    def _event_time(self) -> Sql:
        return Sql("toFloat64(time_ms)")

    def _parse_number(self, text: Sql) -> Sql:
        pattern = _literal(f"^{NUMBER_PATTERN}$")
        return self._finite(
            self._let(text, lambda t: sql(f"if(match({{}}, {pattern}), toFloat64OrNull({{}}), NULL)", t, t))
        )

    def _format_number(self, number: Sql) -> Sql:
        """Python's repr of a float, ".0" dropped: shortest digits, exponent form below 1e-4
        and from 1e16 (ClickHouse's toString gives the same digits, spelled differently)."""

        def digits_and_exponent(x: Sql) -> Sql:
            text = sql("toString(abs({}))", x)
            return self._let(text, lambda s: self._let(_mantissa_digits(s), lambda d: _python_repr(x, s, d)))

        return self._let(number, digits_and_exponent)

    def _format_datetime(self, ms: Sql) -> Sql:
        return self._let(sql("toInt64(floor({}))", ms), _iso_datetime)

    def _finite(self, number: Sql) -> Sql:
        return self._let(number, lambda x: sql("CASE WHEN isFinite({}) THEN {} END", x, x))

    def _string_contains(self, haystack: Sql, needle: Sql) -> Sql:
        return sql("(position({}, {}) > 0)", haystack, needle)

    def _list_length(self, json_list: Sql) -> Sql:
        return self._let(
            json_list,
            lambda j: sql("if(isNull({}), NULL, length(JSONExtractArrayRaw(ifNull({}, ''))))", j, j),
        )

    def _parse_datetime(self, text: Sql) -> Sql:
        groups = sql(f"extractGroups({{}}, {_literal(f'^{DATETIME_PATTERN}$')})", text)
        return self._let(groups, self._datetime_from_groups)

    def _group_text(self, groups: Sql, name: str) -> str:
        return f"{groups.text}[{DATETIME_GROUPS.index(name) + 1}]"  # extractGroups: 1-based

    def _integer_or_zero(self, text: str) -> str:
        return f"coalesce(toInt64OrNull({text}), 0)"

    def _leading_millis(self, fraction: str) -> str:
        return f"toInt64(substring(rightPad({fraction}, 3, '0'), 1, 3))"

    def _int_div(self, dividend: str, divisor: str) -> str:
        return f"intDiv({dividend}, {divisor})"

    def _offset_in_force(self, wall: Sql, breaks: list[int], offsets: list[int]) -> Sql:
        name = self._fresh()
        return sql(
            f"{{}}[arrayCount({name} -> {name} <= {{}}, {{}}) + 1]",
            self._param(offsets, "integer[]"),
            wall,
            self._param(breaks, "integer[]"),
        )


def _int128(x: Sql) -> Sql:
    """An integral Float64 below 2**96 in magnitude as an exact Int128."""
    high = f"floor({x.text} / 4294967296.)"
    return Sql(f"(toInt128({high}) * 4294967296 + toInt128({x.text} - {high} * 4294967296.))", x.params)


def _mantissa_digits(s: Sql) -> Sql:
    """The significant digits of ClickHouse's shortest text of a positive number."""
    return sql(
        "replaceRegexpOne(replaceRegexpOne(replaceAll(splitByChar('e', {})[1], '.', ''), '^0+', ''),"
        " '0+$', '')",
        s,
    )


def _python_repr(x: Sql, s: Sql, d: Sql) -> Sql:
    # e: decimal exponent of the first significant digit.
    mantissa = f"splitByChar('e', {s.text})[1]"
    whole = f"splitByChar('.', {mantissa})[1]"
    plain = f"replaceAll({mantissa}, '.', '')"
    leading = f"(length({plain}) - length(replaceRegexpOne({plain}, '^0+', '')))"
    exponent = f"if(position({s.text}, 'e') > 0, toInt64(splitByChar('e', {s.text})[2]), 0)"
    e = f"(toInt64(length({whole})) - 1 - {leading} + {exponent})"
    dt = d.text
    # Every branch is computed for every row: clamp lengths so the unused ones stay valid.
    whole_len = f"toUInt64(greatest({e} + 1, 0))"
    fixed_big = (
        f"rightPad(substring({dt}, 1, {whole_len}), {whole_len}, '0')"
        f" || if(toInt64(length({dt})) > {e} + 1, '.' || substring({dt}, {whole_len} + 1), '')"
    )
    fixed_small = f"'0.' || repeat('0', toUInt64(greatest(-{e} - 1, 0))) || {dt}"
    scientific = (
        f"substring({dt}, 1, 1) || if(length({dt}) > 1, '.' || substring({dt}, 2), '')"
        f" || 'e' || if({e} < 0, '-', '+') || if(abs({e}) < 10, '0', '') || toString(abs({e}))"
    )
    sign = f"if(startsWith(toString({x.text}), '-'), '-', '')"
    # Array-valued steps (splitByChar) turn NULL into "": NULL in, NULL out, explicitly.
    body = (
        f"if(isNull({x.text}), NULL, {sign} || multiIf({x.text} = 0, '0',"
        f" {e} >= 16 OR {e} < -4, {scientific},"
        f" {e} >= 0, {fixed_big}, {fixed_small}))"
    )
    return Sql(body, x.params + s.params + d.params)


def _iso_datetime(m: Sql) -> Sql:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` of integer UTC ms (proleptic Gregorian, years 1..9999)."""
    ms = m.text
    day_ms = f"positiveModulo({ms}, 86400000)"
    z = f"(intDiv({ms} - {day_ms}, 86400000) + 719468)"
    era = f"intDiv({z} - positiveModulo({z}, 146097), 146097)"
    doe = f"positiveModulo({z}, 146097)"
    yoe = f"intDiv({doe} - intDiv({doe}, 1460) + intDiv({doe}, 36524) - intDiv({doe}, 146096), 365)"
    doy = f"({doe} - (365 * {yoe} + intDiv({yoe}, 4) - intDiv({yoe}, 100)))"
    mp = f"intDiv(5 * {doy} + 2, 153)"
    day = f"({doy} - intDiv(153 * {mp} + 2, 5) + 1)"
    month = f"if({mp} < 10, {mp} + 3, {mp} - 9)"
    year = f"({yoe} + {era} * 400 + if({month} <= 2, 1, 0))"

    def pad(expr: str, width: int) -> str:
        return f"leftPad(toString({expr}), {width}, '0')"

    text = (
        f"{pad(year, 4)} || '-' || {pad(month, 2)} || '-' || {pad(day, 2)} || 'T' ||"
        f" {pad(f'intDiv({day_ms}, 3600000)', 2)} || ':' ||"
        f" {pad(f'intDiv({day_ms}, 60000) % 60', 2)} || ':' ||"
        f" {pad(f'intDiv({day_ms}, 1000) % 60', 2)} || '.' || {pad(f'{day_ms} % 1000', 3)} || 'Z'"
    )
    return Sql(f"if(isNull({ms}), NULL, {text})", m.params)
