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
    assert _sql_literals(PACKAGE / "storage" / "duckdb" / "store.py")
    assert "duckdb" in _imports(PACKAGE / "storage" / "duckdb" / "store.py")
    assert SQL_STATEMENT.match("SELECT count(*) FROM profiles WHERE x")
    assert SQL_STATEMENT.match("WITH sample AS (SELECT line FROM events)")


# -- the storage layout: one folder per engine, the same module names for the same jobs ----------

STORAGE = PACKAGE / "storage"
ENGINE_FOLDERS = {"duckdb": STORAGE / "duckdb", "clickhouse": STORAGE / "clickhouse"}
# The jobs every engine folder has a module for, under the same name.
ENGINE_JOBS = {
    "store",  # the EventStore implementation: writer, readers, deletions
    "schema",  # tables and the helpers that know them
    "ingest",  # the dedup insert
    "export",  # planning and reading an export
    "queries",  # the explorer's reads
    "identity",  # identity links and resolution
    "registry",  # the project registry beside the store
    "pipelines",  # the registry's pipeline tables
}
# Modules only one engine has, and why (also in each package's docstring).
ENGINE_ONLY = {
    "duckdb": {
        "compaction",  # ClickHouse's MergeTree merges its parts itself
        "backup",  # a ClickHouse server is backed up with ClickHouse's own BACKUP
    },
    "clickhouse": {
        "conn",  # one interface over chdb's engine and a server over HTTP
    },
}
# The contract and the pieces every engine shares, in storage/ itself.
SHARED = {"base", "factory", "group_commit", "arrow_strings", "migrate"}
# Engine client modules, and the folder each is confined to.
ENGINE_HOMES = {
    "duckdb": ENGINE_FOLDERS["duckdb"],
    "chdb": ENGINE_FOLDERS["clickhouse"],
    "clickhouse_connect": ENGINE_FOLDERS["clickhouse"],
}
# migrate.py reads a DuckDB file to copy it into any store: the one shared piece that opens an engine.
ENGINE_IMPORT_EXCEPTIONS = {STORAGE / "migrate.py": {"duckdb"}}


def _modules(folder: Path) -> set[str]:
    return {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}


def test_each_engine_folder_has_a_module_for_each_job() -> None:
    for engine, folder in ENGINE_FOLDERS.items():
        assert _modules(folder) == ENGINE_JOBS | ENGINE_ONLY[engine], engine


def test_storage_itself_holds_only_the_contract_and_shared_pieces() -> None:
    assert _modules(STORAGE) == SHARED
    folders = {p.name for p in STORAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(ENGINE_FOLDERS)


def _module_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imports_package(path: Path, package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in _module_imports(path))


def test_query_and_export_do_not_import_each_other() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for here, there in (("query", "export"), ("export", "query"))
        for path in (PACKAGE / here).rglob("*.py")
        if _imports_package(path, f"rawevents.{there}")
    ]
    assert offenders == []


def test_the_engine_folders_do_not_import_each_other() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for here, there in (("duckdb", "clickhouse"), ("clickhouse", "duckdb"))
        for path in ENGINE_FOLDERS[here].rglob("*.py")
        if _imports_package(path, f"rawevents.storage.{there}")
    ]
    assert offenders == []


def test_the_query_export_scan_sees_imports() -> None:
    # Guards the test above against passing vacuously.
    assert _imports_package(PACKAGE / "query" / "segmentation.py", "rawevents.query")
    assert _imports_package(PACKAGE / "http" / "export_routes.py", "rawevents.export")


def test_engine_imports_stay_in_their_engines_folder() -> None:
    offenders = []
    for path in STORAGE.rglob("*.py"):
        allowed = ENGINE_IMPORT_EXCEPTIONS.get(path, set())
        for module in _imports(path) & set(ENGINE_HOMES) - allowed:
            if ENGINE_HOMES[module] not in path.parents:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert offenders == []


def test_the_engine_scan_sees_each_engine() -> None:
    # Guards the test above against passing vacuously.
    assert "duckdb" in _imports(ENGINE_FOLDERS["duckdb"] / "schema.py")
    assert any("chdb" in _imports(path) for path in ENGINE_FOLDERS["clickhouse"].glob("*.py"))
