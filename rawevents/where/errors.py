"""Errors of the `where` expression language: every one is a 400 a user can act on.

Each error carries a stable `code` clients can branch on and the 0-based character span it is
about; the message names the 1-based column and quotes the expression, e.g.
`where: expected ']' at column 17: properties["plan" == "pro"`.
"""

from __future__ import annotations

from rawevents.errors import BadRequest


class WhereError(BadRequest):
    code = "where_error"

    def __init__(self, detail: str, text: str, start: int, end: int | None = None) -> None:
        self.detail = detail
        self.text = text
        self.start = start
        self.end = start + 1 if end is None else end
        super().__init__(f"where: {detail} at column {start + 1}: {_shown(text)}")

    @property
    def column(self) -> int:
        return self.start + 1


class WhereSyntaxError(WhereError):
    code = "where_syntax_error"


class WhereTypeError(WhereError):
    """Well-formed text that cannot mean anything (a list literal outside `in`, a bad index…)."""

    code = "where_type_error"


class WhereUnknownFunction(WhereError):
    code = "where_unknown_function"


class WhereUnknownName(WhereError):
    code = "where_unknown_name"


class WhereTooComplex(WhereError):
    """Input over the length, nesting or compiled-size limits (never a RecursionError or a 500)."""

    code = "where_too_complex"


_SHOWN_MAX = 200


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + "…"
