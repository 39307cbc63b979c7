"""Lexer and recursive-descent parser: `where` text → immutable AST (`rawevents.where.ast`).

Precedence, lowest to highest (spec §4.3): `or` < `and` < `not` < comparisons and `in`
(non-associative) < `+ -` < `* / %` < unary `-` and `defined` < postfix `[...]`. Keywords,
function names and `properties`/`event`/`user` are case-insensitive; variable names are not.
Limits keep hostile input a 400: MAX_LENGTH characters and MAX_DEPTH levels of nesting.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, cast

from rawevents.where import ast
from rawevents.where.ast import flatten
from rawevents.where.errors import (
    WhereSyntaxError,
    WhereTooComplex,
    WhereTypeError,
    WhereUnknownFunction,
    WhereUnknownName,
)

MAX_LENGTH = 10_000
MAX_DEPTH = 48

TokenKind = Literal["string", "number", "word", "op", "end"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # the source text (for "string": the decoded value)
    start: int
    end: int


_OPS = ("==", "!=", ">=", "<=", "=", ">", "<", "+", "-", "*", "/", "%", "(", ")", "[", "]", ",")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_SPACE = " \t\r\n\f\v"
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
KEYWORDS = frozenset({"and", "or", "not", "in", "defined", "true", "false"})
SCOPES = ("properties", "event", "user")
RESERVED = KEYWORDS | set(SCOPES) | set(ast.FUNCTIONS) | set(ast.QUANTIFIERS)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos, size = 0, len(text)
    while pos < size:
        char = text[pos]
        if char in _SPACE:
            pos += 1
        elif char in "\"'":
            value, end = _read_string(text, pos)
            tokens.append(Token("string", value, pos, end))
            pos = end
        elif char.isascii() and (char.isdigit() or (char == "." and text[pos + 1 : pos + 2].isdigit())):
            match = _NUMBER.match(text, pos)
            assert match is not None
            end = match.end()
            if end < size and (text[end].isalnum() or text[end] in "_$."):
                raise WhereSyntaxError("invalid number", text, pos, end + 1)
            tokens.append(Token("number", match.group(), pos, end))
            pos = end
        elif match := _WORD.match(text, pos):
            tokens.append(Token("word", match.group(), pos, match.end()))
            pos = match.end()
        else:
            for op in _OPS:
                if text.startswith(op, pos):
                    tokens.append(Token("op", op, pos, pos + len(op)))
                    pos += len(op)
                    break
            else:
                raise WhereSyntaxError(f"unexpected character {char!r}", text, pos)
    tokens.append(Token("end", "", size, size))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == quote:
            return "".join(out), pos + 1
        if char != "\\":
            out.append(char)
            pos += 1
            continue
        code = text[pos + 1 : pos + 2]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            pos += 2
        elif code == "u":
            unit, pos = _read_unicode(text, pos)
            if 0xD800 <= unit < 0xDC00 and text.startswith("\\u", pos):
                low, after = _read_unicode(text, pos)
                if 0xDC00 <= low < 0xE000:
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    pos = after
            if 0xD800 <= unit < 0xE000:
                raise WhereSyntaxError("invalid \\u escape (unpaired surrogate)", text, pos - 6, pos)
            out.append(chr(unit))
        else:
            raise WhereSyntaxError(f"invalid escape '\\{code}'", text, pos, pos + 2)
    raise WhereSyntaxError("unterminated string", text, start, len(text))


def _read_unicode(text: str, pos: int) -> tuple[int, int]:
    digits = text[pos + 2 : pos + 6]
    if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise WhereSyntaxError("invalid \\u escape (expected 4 hex digits)", text, pos, pos + 2)
    return int(digits, 16), pos + 6


def parse(text: str) -> ast.Node:
    """Parse a `where` expression; raises WhereError (a 400) on any problem."""
    if len(text) > MAX_LENGTH:
        raise WhereTooComplex(f"expression longer than {MAX_LENGTH} characters", text, MAX_LENGTH)
    parser = _Parser(text, tokenize(text))
    node = parser.expression()
    token = parser.peek()
    if token.kind != "end":
        raise WhereSyntaxError(f"unexpected {_describe(token)}", text, token.start, token.end)
    _check(node, text, list_allowed=False, depth=0)
    return node


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "end of expression"
    if token.kind == "string":
        return "string"
    return f"'{token.text}'"


class _Parser:
    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.bound: list[str] = []

    # -- token helpers ---------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return token

    def at_op(self, *ops: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text in ops

    def at_word(self, *words: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == "word" and token.text.lower() in words

    def expect_op(self, op: str) -> Token:
        if not self.at_op(op):
            token = self.peek()
            raise WhereSyntaxError(f"expected '{op}'", self.text, token.start, token.end)
        return self.advance()

    def nested(self, start: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WhereTooComplex(f"expression nests deeper than {MAX_DEPTH} levels", self.text, start)

    # -- grammar ---------------------------------------------------------------------------------

    def expression(self) -> ast.Node:
        self.nested(self.peek().start)
        try:
            return self.or_expr()
        finally:
            self.depth -= 1

    def or_expr(self) -> ast.Node:
        left = self.and_expr()
        while self.at_word("or"):
            self.advance()
            right = self.and_expr()
            left = ast.Binary(op="or", left=left, right=right, start=left.start, end=right.end)
        return left

    def and_expr(self) -> ast.Node:
        left = self.not_expr()
        while self.at_word("and"):
            self.advance()
            right = self.not_expr()
            left = ast.Binary(op="and", left=left, right=right, start=left.start, end=right.end)
        return left

    def not_expr(self) -> ast.Node:
        if self.at_word("not"):
            token = self.advance()
            self.nested(token.start)
            try:
                operand = self.not_expr()
            finally:
                self.depth -= 1
            return ast.Unary(op="not", operand=operand, start=token.start, end=operand.end)
        return self.comparison()

    def comparison_op(self) -> tuple[str, bool] | None:
        """(operator, negated) if a comparison operator comes next."""
        if self.at_op("==", "=", "!=", ">", ">=", "<", "<="):
            text = self.peek().text
            return ("==" if text == "=" else text), False
        if self.at_word("in"):
            return "in", False
        if self.at_word("not") and self.at_word("in", ahead=1):
            return "in", True
        return None

    def comparison(self) -> ast.Node:
        left = self.additive()
        found = self.comparison_op()
        if found is None:
            return left
        op, negated = found
        self.advance()
        if negated:
            self.advance()
        right = self.additive()
        node: ast.Node = ast.Binary(
            op=cast(ast.BinaryOp, op), left=left, right=right, start=left.start, end=right.end
        )
        if negated:
            node = ast.Unary(op="not", operand=node, start=left.start, end=right.end)
        if self.comparison_op() is not None:
            token = self.peek()
            raise WhereSyntaxError(
                "comparisons cannot be chained; use 'and' or parentheses", self.text, token.start, token.end
            )
        return node

    def additive(self) -> ast.Node:
        left = self.multiplicative()
        while self.at_op("+", "-"):
            op = cast(ast.BinaryOp, self.advance().text)
            right = self.multiplicative()
            left = ast.Binary(op=op, left=left, right=right, start=left.start, end=right.end)
        return left

    def multiplicative(self) -> ast.Node:
        left = self.unary()
        while self.at_op("*", "/", "%"):
            op = cast(ast.BinaryOp, self.advance().text)
            right = self.unary()
            left = ast.Binary(op=op, left=left, right=right, start=left.start, end=right.end)
        return left

    def unary(self) -> ast.Node:
        if self.at_op("-") or self.at_word("defined"):
            token = self.advance()
            op: ast.UnaryOp = "-" if token.text == "-" else "defined"
            self.nested(token.start)
            try:
                operand = self.unary()
            finally:
                self.depth -= 1
            return ast.Unary(op=op, operand=operand, start=token.start, end=operand.end)
        return self.postfix()

    def postfix(self) -> ast.Node:
        node = self.primary()
        while self.at_op("["):
            self.advance()
            key_token = self.peek()
            key: str | int
            if key_token.kind == "string":
                key = key_token.text
            elif key_token.kind == "number" and key_token.text.isdigit():
                key = int(key_token.text)
            else:
                raise WhereTypeError(
                    "an index must be a string or a non-negative integer literal",
                    self.text,
                    key_token.start,
                    key_token.end,
                )
            self.advance()
            end = self.expect_op("]").end
            node = ast.Index(target=node, key=key, start=node.start, end=end)
        return node

    def primary(self) -> ast.Node:
        token = self.peek()
        if token.kind == "string":
            self.advance()
            return ast.String(value=token.text, start=token.start, end=token.end)
        if token.kind == "number":
            self.advance()
            value = float(token.text)
            if math.isinf(value):
                raise WhereSyntaxError("number out of range", self.text, token.start, token.end)
            return ast.Number(value=value, start=token.start, end=token.end)
        if token.kind == "op" and token.text == "(":
            self.advance()
            inner = self.expression()
            self.expect_op(")")
            return inner
        if token.kind == "op" and token.text == "[":
            self.advance()
            items = self.arguments("]")
            end = self.expect_op("]").end
            return ast.ListLit(items=tuple(items), start=token.start, end=end)
        if token.kind == "word":
            return self.word(token)
        raise WhereSyntaxError(
            f"expected an expression, found {_describe(token)}", self.text, token.start, token.end
        )

    def arguments(self, closer: str) -> list[ast.Node]:
        items: list[ast.Node] = []
        if self.at_op(closer):
            return items
        items.append(self.expression())
        while self.at_op(","):
            self.advance()
            items.append(self.expression())
        return items

    def word(self, token: Token) -> ast.Node:
        lower = token.text.lower()
        if lower in ("true", "false"):
            self.advance()
            return ast.Boolean(value=lower == "true", start=token.start, end=token.end)
        if lower in SCOPES:
            self.advance()
            self.expect_op("[")
            name = self.peek()
            if name.kind != "string":
                raise WhereTypeError(f"{lower}[...] takes a string literal", self.text, name.start, name.end)
            self.advance()
            end = self.expect_op("]").end
            scope = cast(ast.Scope, lower)
            return ast.Access(scope=scope, name=name.text, start=token.start, end=end)
        if lower in ast.QUANTIFIERS:
            return self.quantifier(token)
        if lower in ast.FUNCTIONS:
            return self.call(token)
        if lower in KEYWORDS:
            raise WhereSyntaxError(
                f"expected an expression, found '{token.text}'", self.text, token.start, token.end
            )
        self.advance()
        if self.at_op("("):
            raise WhereUnknownFunction(f"unknown function '{token.text}'", self.text, token.start, token.end)
        if token.text not in self.bound:
            raise WhereUnknownName(
                f"unknown name '{token.text}' (only any()/all() variables can be used bare)",
                self.text,
                token.start,
                token.end,
            )
        return ast.Var(name=token.text, start=token.start, end=token.end)

    def call(self, token: Token) -> ast.Node:
        name = token.text.lower()
        self.advance()
        self.expect_op("(")
        args = self.arguments(")")
        end = self.expect_op(")").end
        allowed = (1, 2) if name in ("number", "string", "boolean") else (1,)
        if len(args) not in allowed:
            takes = "1 or 2 arguments" if len(allowed) == 2 else "1 argument"
            raise WhereTypeError(f"{name}() takes {takes}", self.text, token.start, end)
        return ast.Call(name=name, args=tuple(args), start=token.start, end=end)

    def quantifier(self, token: Token) -> ast.Node:
        kind = cast(Literal["any", "all"], token.text.lower())
        self.advance()
        self.expect_op("(")
        var = self.peek()
        if var.kind != "word" or not _WORD.fullmatch(var.text) or var.text.lower() in RESERVED:
            raise WhereSyntaxError(
                f"{kind}() expects a variable name first, as in {kind}(X, list, predicate)",
                self.text,
                var.start,
                var.end,
            )
        self.advance()
        self.expect_op(",")
        source = self.expression()
        self.expect_op(",")
        self.bound.append(var.text)
        try:
            predicate = self.expression()
        finally:
            self.bound.pop()
        end = self.expect_op(")").end
        return ast.Quantifier(
            kind=kind, var=var.text, source=source, predicate=predicate, start=token.start, end=end
        )


def _check(node: ast.Node, text: str, *, list_allowed: bool, depth: int) -> None:
    """List literals only where they mean a set of candidates: after `in` and as the list of
    any()/all() (optionally wrapped in list()); everything else has no list semantics."""
    if depth > MAX_DEPTH * 2:
        raise WhereTooComplex(f"expression nests deeper than {MAX_DEPTH} levels", text, node.start)
    if isinstance(node, ast.ListLit) and not list_allowed:
        raise WhereTypeError(
            "a list literal can only follow 'in' or be the list of any()/all()", text, node.start, node.end
        )
    if isinstance(node, ast.Binary) and node.op in ("and", "or"):
        # Long and/or chains (mp-inputs writes one term per selected value) count as one level.
        for operand in flatten(node, node.op):
            _check(operand, text, list_allowed=False, depth=depth + 1)
    elif isinstance(node, ast.Binary) and node.op == "in":
        _check(node.left, text, list_allowed=False, depth=depth + 1)
        _check(node.right, text, list_allowed=True, depth=depth + 1)
    elif isinstance(node, ast.Quantifier):
        _check(node.source, text, list_allowed=True, depth=depth + 1)
        _check(node.predicate, text, list_allowed=False, depth=depth + 1)
    elif isinstance(node, ast.Call) and node.name == "list":
        _check(node.args[0], text, list_allowed=list_allowed, depth=depth + 1)
    else:
        for child in ast.children(node):
            _check(child, text, list_allowed=False, depth=depth + 1)
