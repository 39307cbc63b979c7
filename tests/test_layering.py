"""The core must not import the web framework: only rawevents.http (and the server entry) may."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rawevents"
WEB_MODULES = {"starlette", "uvicorn", "fastapi"}
ALLOWED = {PACKAGE / "server.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_does_not_import_web_framework() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if (PACKAGE / "http") not in path.parents and path not in ALLOWED and _imports(path) & WEB_MODULES
    ]
    assert offenders == []


def test_scan_sees_the_http_package() -> None:
    # Guards the test above against passing vacuously (e.g. a moved package).
    assert "starlette" in _imports(PACKAGE / "http" / "app.py")
