"""The `where` segmentation-expression language of the export API (spec §4, docs/where.md).

`parse` turns text into an immutable AST, `evaluate` is the reference semantics over one decoded
event, and `compile_where` prints the same semantics as a DuckDB predicate over the stored
export line, with every user value bound as a parameter.
"""

from __future__ import annotations

from rawevents.storage.base import SqlFilter, SqlValue
from rawevents.where.ast import Node, to_text
from rawevents.where.errors import WhereError, WhereTooComplex
from rawevents.where.evaluator import evaluate, value_of
from rawevents.where.parser import MAX_LENGTH, parse
from rawevents.where.printer.duckdb import DuckDBPrinter
from rawevents.where.printer.sql import SqlTooLarge, sql

__all__ = [
    "MAX_LENGTH",
    "Node",
    "WhereError",
    "compile_segment",
    "compile_where",
    "evaluate",
    "parse",
    "to_text",
    "value_of",
]


def compile_where(text: str, *, timezone: str) -> SqlFilter:
    """The `where` expression as a DuckDB predicate (positional `?` parameters) over the columns
    `line`, `event` and `time_ms`; raises WhereError (a 400) for any invalid expression."""
    node = parse(text)
    try:
        printer = DuckDBPrinter(timezone)
        predicate = printer.predicate(node)
        prefilter = printer.prefilter(node)
        if prefilter is not None and predicate.text != "FALSE":
            predicate = sql("{} AND {}", prefilter, predicate)
    except (SqlTooLarge, RecursionError):
        raise WhereTooComplex("expression too complex to compile", text, 0, len(text)) from None
    return SqlFilter(predicate.text, predicate.params)


def compile_segment(text: str, *, timezone: str) -> SqlValue:
    """A segmentation `on` expression as DuckDB SQL giving `string(expression)` per row, NULL
    when that is undefined or null; same language, parser and errors as `where`."""
    node = parse(text)
    try:
        key = DuckDBPrinter(timezone).segment_key(node)
    except (SqlTooLarge, RecursionError):
        raise WhereTooComplex("expression too complex to compile", text, 0, len(text)) from None
    return SqlValue(key.text, key.params)
