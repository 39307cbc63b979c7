"""The core must not import the web framework: only rawevents.http (and the server entry) may."""

from __future__ import annotations

import ast
import re
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


ENGINE_MODULES = {"duckdb", "chdb", "clickhouse_connect"}
SQL_HOMES = (PACKAGE / "storage", PACKAGE / "where" / "printer")
# A string literal that is a SQL statement (or the start of one), as code writes them.
SQL_STATEMENT = re.compile(
    r"^\s*(WITH\s+\w+\s+AS\s*\(|SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
    r"CREATE\s+(OR\s+REPLACE\s+)?(TABLE|VIEW|INDEX|DATABASE)\s|DROP\s+(TABLE|VIEW)\s|ALTER\s+TABLE\s)",
    re.IGNORECASE | re.DOTALL,
)


def _outside_sql_homes(path: Path) -> bool:
    return not any(home in path.parents for home in SQL_HOMES)


def _sql_literals(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_STATEMENT.match(node.value):
            found.append(node.value[:60])
        elif isinstance(node, ast.JoinedStr):
            head = "".join(
                v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
            if SQL_STATEMENT.match(head):
                found.append(head[:60])
    return found


def test_only_storage_and_the_printers_import_an_engine() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _outside_sql_homes(path) and _imports(path) & ENGINE_MODULES
    ]
    assert offenders == []


def test_only_storage_and_the_printers_write_sql() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in PACKAGE.rglob("*.py")
        if _outside_sql_homes(path) and (found := _sql_literals(path))
    }
    assert offenders == {}


def test_the_sql_scan_finds_the_stores_statements() -> None:
    # Guards the test above against passing vacuously.
    assert _sql_literals(PACKAGE / "storage" / "duckdb_store.py")
    assert "duckdb" in _imports(PACKAGE / "storage" / "duckdb_store.py")
    assert SQL_STATEMENT.match("SELECT count(*) FROM profiles WHERE x")
    assert SQL_STATEMENT.match("WITH sample AS (SELECT line FROM events)")
