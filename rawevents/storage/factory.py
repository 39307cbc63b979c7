"""The one place that turns the `store` setting into an engine."""

from __future__ import annotations

from rawevents.export.admission import ExportBudget
from rawevents.settings import Config
from rawevents.storage.base import EventStore


def open_store(config: Config) -> EventStore:
    from rawevents.storage.duckdb_store import DuckDBStore

    return DuckDBStore(
        config.data_dir,
        memory_limit=config.engine_memory_limit,
        commit_interval_ms=config.commit_interval_ms,
        export_window_bytes=ExportBudget.from_config(config).window_bytes,
    )
