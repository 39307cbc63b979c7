"""The one place that turns the `store` setting into an engine."""

from __future__ import annotations

from pathlib import Path

from rawevents.errors import StoreInUse
from rawevents.settings import Config
from rawevents.storage.base import EventStore, StoreObserver


def open_store(config: Config, observer: StoreObserver | None = None) -> EventStore:
    """The configured store; `observer` hears about its commits, write queue and scans."""
    from rawevents.storage.duckdb_store import DuckDBStore

    return DuckDBStore(
        config.data_dir,
        memory_limit=config.engine_memory_limit,
        commit_interval_ms=config.commit_interval_ms,
        observer=observer,
    )


def open_store_unless_busy(config: Config) -> EventStore | None:
    """The store, or None while another process (a running server) holds its write lock."""
    try:
        return open_store(config)
    except StoreInUse:
        return None


def restore_store(config: Config, source: Path) -> None:
    """Rebuild the configured engine's store in `config.data_dir` from a `backup` directory."""
    from rawevents.storage.duckdb_backup import restore

    restore(source, Path(config.data_dir))
