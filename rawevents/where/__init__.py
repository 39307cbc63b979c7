"""The `where` segmentation-expression language of the export API (spec §4, docs/where.md).

`parse` turns text into an immutable AST and `evaluate` is the reference semantics over one
decoded event. Stores compile the AST with their own dialect's printer (`where.printer`), with
every user value bound as a parameter; the agreement tests hold each printer to `evaluate`.
"""

from __future__ import annotations

from rawevents.where.ast import Node, to_text
from rawevents.where.errors import WhereError, WhereTooComplex
from rawevents.where.evaluator import evaluate, value_of
from rawevents.where.parser import MAX_LENGTH, parse

__all__ = ["MAX_LENGTH", "Node", "WhereError", "WhereTooComplex", "evaluate", "parse", "to_text", "value_of"]
