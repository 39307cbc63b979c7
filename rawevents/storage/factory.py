"""The one place that turns the `store` setting into an engine: `duckdb`, `chdb`, or a
`clickhouse://` URL (engines are imported only when chosen)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rawevents.budget import ExportBudget
from rawevents.errors import BadRequest, StoreInUse
from rawevents.projects import ProjectRegistry
from rawevents.settings import Config, redact_store
from rawevents.storage.base import EventStore, StoreObserver

CHDB_DIR = "chdb"


def _duckdb(config: Config, observer: StoreObserver | None) -> EventStore:
    from rawevents.storage.duckdb.store import DuckDBStore

    return DuckDBStore(
        config.data_dir,
        memory_limit=config.engine_memory_limit,
        commit_interval_ms=config.commit_interval_ms,
        export_window_bytes=ExportBudget.from_config(config).window_bytes,
        observer=observer,
        compact_rows=config.compact_rows,
        line_compression=config.line_compression,
    )


def _chdb(config: Config, observer: StoreObserver | None) -> EventStore:
    from rawevents.storage.clickhouse.conn import ChdbEngine
    from rawevents.storage.clickhouse.store import ClickHouseStore

    engine = ChdbEngine(Path(config.data_dir) / CHDB_DIR)
    return ClickHouseStore(engine, commit_interval_ms=config.commit_interval_ms)


def _clickhouse(config: Config, observer: StoreObserver | None) -> EventStore:
    from rawevents.storage.clickhouse.conn import HttpEngine, ServerAddress
    from rawevents.storage.clickhouse.store import ClickHouseStore

    engine = HttpEngine(ServerAddress.parse(config.store))
    return ClickHouseStore(engine, commit_interval_ms=config.commit_interval_ms)


_OPENERS: dict[str, Callable[[Config, StoreObserver | None], EventStore]] = {
    "duckdb": _duckdb,
    "chdb": _chdb,
    "clickhouse": _clickhouse,
}

# Stores whose files belong to one process (serve --workers needs a shared server store).
SINGLE_PROCESS = frozenset({"duckdb", "chdb"})


def store_kind(config: Config) -> str:
    """`duckdb`, `chdb` or `clickhouse`; BadRequest for anything else."""
    kind = config.store.split("://", 1)[0] if "://" in config.store else config.store
    if kind not in _OPENERS:
        raise BadRequest(
            f"unknown store {redact_store(config.store)!r}:"
            " use duckdb, chdb or clickhouse://user:password@host:8123/db"
        )
    return kind


def open_store(config: Config, observer: StoreObserver | None = None) -> EventStore:
    """The configured store; `observer` hears about its commits, write queue and scans."""
    return _OPENERS[store_kind(config)](config, observer)


def open_registry(config: Config) -> ProjectRegistry:
    """The project registry beside the configured store: a SQLite file in `data_dir` for the
    embedded stores, tables in the server's database for `clickhouse://` (shared by every host)."""
    if store_kind(config) == "clickhouse":
        from rawevents.storage.clickhouse.conn import HttpEngine, ServerAddress
        from rawevents.storage.clickhouse.registry import ClickHouseRegistry

        return ClickHouseRegistry(HttpEngine(ServerAddress.parse(config.store)), owns_engine=True)
    from rawevents.storage.duckdb.registry import SqliteRegistry

    return SqliteRegistry(config.data_dir)


def open_store_unless_busy(config: Config) -> EventStore | None:
    """The store, or None while another process (a running server) holds its write lock."""
    try:
        return open_store(config)
    except StoreInUse:
        return None


def restore_store(config: Config, source: Path) -> None:
    """Rebuild the configured engine's store in `config.data_dir` from a `backup` directory."""
    from rawevents.storage.duckdb.backup import restore

    restore(source, Path(config.data_dir))
