"""SQL fragments that carry their bound parameters, so values never enter the SQL text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_SQL_CHARS = 400_000


class SqlTooLarge(Exception):
    """The compiled text outgrew MAX_SQL_CHARS (surfaced to users as where_too_complex)."""


@dataclass(frozen=True, slots=True)
class Sql:
    text: str
    params: tuple[Any, ...] = ()


def sql(template: str, *parts: Sql | str) -> Sql:
    """Fill each `{}` of `template` with a fragment (params kept in textual order). Plain str
    parts are trusted SQL written by the printer, never user input."""
    pieces = template.split("{}")
    if len(pieces) != len(parts) + 1:
        raise ValueError(f"template expects {len(pieces) - 1} parts, got {len(parts)}")
    text: list[str] = [pieces[0]]
    params: list[Any] = []
    for part, piece in zip(parts, pieces[1:], strict=True):
        if isinstance(part, Sql):
            text.append(part.text)
            params.extend(part.params)
        else:
            text.append(part)
        text.append(piece)
    joined = "".join(text)
    if len(joined) > MAX_SQL_CHARS:
        raise SqlTooLarge
    return Sql(joined, tuple(params))


def join(separator: str, parts: list[Sql]) -> Sql:
    return sql(separator.join("{}" for _ in parts), *parts)


def param(value: Any, sql_type: str) -> Sql:
    return Sql(f"CAST(? AS {sql_type})", (value,))


TRUE = Sql("TRUE")
FALSE = Sql("FALSE")
