"""The one place that turns the `store` setting into an engine."""

from __future__ import annotations

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
