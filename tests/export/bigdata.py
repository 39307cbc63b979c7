"""Build a store with many events offline (no server running), for live big-export tests."""

from __future__ import annotations

from pathlib import Path

from rawevents.projects import Project
from rawevents.settings import load_config
from rawevents.storage import open_store
from rawevents.storage.duckdb.registry import SqliteRegistry
from rawevents.storage.duckdb.store import DuckDBStore
from tests.export.helpers import stored_event

BATCH = 50_000


def build(
    data_dir: Path,
    count: int,
    start_ms: int,
    step_ms: int = 250,
    timezone: str = "UTC",
    store: str = "duckdb",
) -> Project:
    """`count` events of a new project, `step_ms` apart from `start_ms`, ~300 bytes each. The
    DuckDB store is compacted before it closes, as a server's would be at rest: a server started
    on it has no compaction left to run, whose memory (~55 MB, 1.5 s after start) would otherwise
    land in the memory tests' measurements."""
    project = SqliteRegistry(data_dir).create_project("big", timezone)
    events = open_store(load_config({}, data_dir=str(data_dir), store=store, commit_interval_ms=0))
    try:
        for first in range(0, count, BATCH):
            events.submit_events(
                [
                    stored_event(
                        project,
                        ("page_view", "signup", "purchase")[i % 3],
                        start_ms + i * step_ms,
                        distinct_id=f"user-{i % 5000:05d}",
                        **{"$insert_id": f"{i:012d}", "$browser": "Firefox", "$city": "Berlin"},
                        url=f"https://example.com/page/{i % 977}",
                        amount=i % 100 * 1.25,
                        seq=i,
                    )
                    for i in range(first, min(count, first + BATCH))
                ]
            ).result()
        if isinstance(events, DuckDBStore):
            events.compact()
    finally:
        events.close()
    return project
