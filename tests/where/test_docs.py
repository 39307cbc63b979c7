"""docs/where.md's examples table is executable: each row's value comes from the reference
evaluator and the row's selection from the compiled SQL, so the doc cannot drift."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rawevents.where import value_of
from rawevents.where.values import UNDEFINED, DateTime, format_datetime, format_number
from tests.where.cases import T0
from tests.where.harness import Ev, Harness

DOC = Path(__file__).resolve().parents[2] / "docs" / "where.md"
ROW = re.compile(r"^\| `(?P<expr>[^`]+)` \| `(?P<props>[^`]*)` \| (?P<value>.+?) \|$")


def _examples() -> list[tuple[str, dict[str, Any], str]]:
    text = DOC.read_text()
    block = text.split("<!-- examples:start -->")[1].split("<!-- examples:end -->")[0]
    rows = [ROW.match(line) for line in block.strip().splitlines()[2:]]
    assert all(rows), "every examples row must be | `expr` | `props` | value |"
    return [(m["expr"], json.loads(m["props"]), m["value"]) for m in rows if m]


def _shown(value: Any) -> str:
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, DateTime):
        return f"datetime {format_datetime(value)}"
    return json.dumps(value, ensure_ascii=False)


EXAMPLES = _examples()


def test_doc_has_enough_examples() -> None:
    assert len(EXAMPLES) >= 20


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(Path(tmp_path_factory.mktemp("where-docs")))
    yield h
    h.close()


@pytest.mark.parametrize(("where", "props", "shown"), EXAMPLES)
def test_doc_example(harness: Harness, where: str, props: dict[str, Any], shown: str) -> None:
    project, decoded = harness.load([Ev(props, T0)], "UTC")
    value = value_of(where, decoded[0], "UTC")
    assert _shown(value) == shown
    assert harness.sql_selected(project, where, "UTC") == ([0] if value is True else [])
