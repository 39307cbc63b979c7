"""SQL printers for `where`: the generic compiler (base) and one small printer per dialect."""

from __future__ import annotations

from rawevents.where.ast import Node, to_text
from rawevents.where.errors import WhereTooComplex
from rawevents.where.printer.base import Printer
from rawevents.where.printer.sql import Sql, SqlTooLarge, sql

__all__ = ["Printer", "Sql", "compile_predicate", "compile_segment_key"]


def compile_predicate(printer: Printer, node: Node) -> Sql:
    """SQL that is TRUE exactly for the rows `node` selects, led by the printer's cheap
    substring prefilter when it has one; WhereTooComplex (a 400) when it outgrows the limits."""
    try:
        predicate = printer.predicate(node)
        prefilter = printer.prefilter(node)
        if prefilter is not None and predicate.text != "FALSE":
            predicate = sql("{} AND {}", prefilter, predicate)
    except (SqlTooLarge, RecursionError):
        text = to_text(node)
        raise WhereTooComplex("expression too complex to compile", text, 0, len(text)) from None
    return predicate


def compile_segment_key(printer: Printer, node: Node) -> Sql:
    """SQL giving `string(node)` per row, NULL when undefined or null: the key of a segmentation
    `on`; WhereTooComplex (a 400) when it outgrows the limits."""
    try:
        return printer.segment_key(node)
    except (SqlTooLarge, RecursionError):
        text = to_text(node)
        raise WhereTooComplex("expression too complex to compile", text, 0, len(text)) from None
