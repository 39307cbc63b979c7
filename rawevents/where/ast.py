"""The immutable syntax tree of a `where` expression.

Nodes are frozen dataclasses; every node carries its source span [start, end) (0-based character
offsets into the expression) so later stages can point errors at the text. Spans are excluded
from equality: two trees are equal when they mean the same thing, wherever they were written.
Adding a node class means adding it to `Node` and to every `match` over it (the evaluator and
the SQL printer end in `assert_never`, so mypy finds the missing case).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, assert_never

Scope = Literal["properties", "event", "user"]
UnaryOp = Literal["not", "-", "defined"]
BinaryOp = Literal["or", "and", "==", "!=", ">", ">=", "<", "<=", "in", "+", "-", "*", "/", "%"]
FUNCTIONS = ("number", "string", "boolean", "datetime", "list", "floor", "round", "ceil")
QUANTIFIERS = ("any", "all")


@dataclass(frozen=True, slots=True, kw_only=True)
class String:
    value: str
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Number:
    value: float
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Boolean:
    value: bool
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListLit:
    items: tuple[Node, ...]
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """`properties["k"]`, `event["k"]` or `user["k"]`."""

    scope: Scope
    name: str
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Var:
    """The variable bound by an enclosing any()/all()."""

    name: str
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    """`target["key"]` (object member) or `target[3]` (list element, 0-based)."""

    target: Node
    key: str | int
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unary:
    op: UnaryOp
    operand: Node
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Binary:
    op: BinaryOp
    left: Node
    right: Node
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A typecast or numeric function: number, string, boolean, datetime, list, floor, round, ceil."""

    name: str
    args: tuple[Node, ...]
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quantifier:
    """`any(X, source, predicate)` / `all(X, source, predicate)`."""

    kind: Literal["any", "all"]
    var: str
    source: Node
    predicate: Node
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


Node = String | Number | Boolean | ListLit | Access | Var | Index | Unary | Binary | Call | Quantifier


def to_text(node: Node) -> str:
    """Canonical, fully parenthesised text; parsing it gives back an equal tree."""
    match node:
        case String(value=value):
            return json.dumps(value, ensure_ascii=False)
        case Number(value=value):
            return format_number_literal(value)
        case Boolean(value=value):
            return "true" if value else "false"
        case ListLit(items=items):
            return "[" + ", ".join(to_text(item) for item in items) + "]"
        case Access(scope=scope, name=name):
            return f"{scope}[{json.dumps(name, ensure_ascii=False)}]"
        case Var(name=name):
            return name
        case Index(target=target, key=key):
            shown = json.dumps(key, ensure_ascii=False) if isinstance(key, str) else str(key)
            return f"{to_text(target)}[{shown}]"
        case Unary(op=op, operand=operand):
            return f"({op} {to_text(operand)})" if op != "-" else f"(-{to_text(operand)})"
        case Binary(op="and" | "or" as op):
            return "(" + f" {op} ".join(to_text(operand) for operand in flatten(node, op)) + ")"
        case Binary(op=op, left=left, right=right):
            return f"({to_text(left)} {op} {to_text(right)})"
        case Call(name=name, args=args):
            return f"{name}(" + ", ".join(to_text(arg) for arg in args) + ")"
        case Quantifier(kind=kind, var=var, source=source, predicate=predicate):
            return f"{kind}({var}, {to_text(source)}, {to_text(predicate)})"
        case _:
            assert_never(node)


def format_number_literal(value: float) -> str:
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def children(node: Node) -> tuple[Node, ...]:
    match node:
        case String() | Number() | Boolean() | Access() | Var():
            return ()
        case ListLit(items=items):
            return items
        case Index(target=target):
            return (target,)
        case Unary(operand=operand):
            return (operand,)
        case Binary(left=left, right=right):
            return (left, right)
        case Call(args=args):
            return args
        case Quantifier(source=source, predicate=predicate):
            return (source, predicate)
        case _:
            assert_never(node)


def impure_nodes(root: Node) -> set[int]:
    """ids of the nodes whose value depends on the event (a property access or a variable below
    them). Iterative, so thousand-term `or` chains need no deep recursion."""
    impure: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if isinstance(node, Access | Var):
            impure.add(id(node))
        elif expanded:
            if any(id(child) in impure for child in children(node)):
                impure.add(id(node))
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in children(node))
    return impure


def is_pure(node: Node) -> bool:
    """True when the value does not depend on the event (no property access, no variable)."""
    return id(node) not in impure_nodes(node)


def flatten(node: Node, op: str) -> list[Node]:
    """The operands of a left-deep chain `a op b op c …`, left to right, without recursion."""
    operands: list[Node] = []
    while isinstance(node, Binary) and node.op == op:
        operands.append(node.right)
        node = node.left
    operands.append(node)
    operands.reverse()
    return operands
