"""SQL fragments that carry their bound parameters, so values never enter the SQL text.

Nothing here knows a dialect: placeholders are spelled by each printer's `_param` hook, and the
parameter payload is whatever that printer's store binds (positional values for DuckDB, named
pairs for ClickHouse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_SQL_CHARS = 400_000


class SqlTooLarge(Exception):
    """The compiled text outgrew MAX_SQL_CHARS (surfaced to users as where_too_complex)."""


@dataclass(frozen=True, slots=True)
class Sql:
    """SQL text and its parameters in textual order. `atomic` marks a fragment that is cheap to
    repeat (a column, a placeholder, a bound variable), so the printer need not bind it once per row."""

    text: str
    params: tuple[Any, ...] = ()
    atomic: bool = False


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


def atom(text: str) -> Sql:
    """A column or variable name written by the printer."""
    return Sql(text, atomic=True)


TRUE = Sql("TRUE", atomic=True)
FALSE = Sql("FALSE", atomic=True)
