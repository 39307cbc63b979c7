"""Moving an embedded DuckDB store's data into another store (`rawevents migrate`).

Events are read from the DuckDB file (read-only, in export order) and submitted to the target
in batches through the store contract, so the target's own dedup applies: a migration that
stopped half-way can simply be run again. Profiles are written with their current properties,
then the identity rows (ids resolving to others) as they are (`put_identity_mappings`).
Into a `clickhouse://` store the project registry moves too (ids, tokens, secret digests,
service accounts), since its servers read the registry from ClickHouse; `chdb` keeps the SQLite
registry in `data_dir`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from rawevents.settings import Config, redact_store
from rawevents.storage.base import INCOMING_SCHEMA, EventStore, ProfileUpdate
from rawevents.storage.clickhouse.registry import ClickHouseRegistry
from rawevents.storage.duckdb import identity as duckdb_identity
from rawevents.storage.duckdb.registry import SqliteRegistry
from rawevents.storage.duckdb.store import EVENTS_FILE

BATCH_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class Moved:
    events: int
    profiles: int


def _replace(_current: dict[str, Any] | None, update: ProfileUpdate) -> dict[str, Any] | None:
    value: dict[str, Any] = update.value
    return value


def migrate_duckdb(
    data_dir: str | Path, target: EventStore, progress: Callable[[int], None] | None = None
) -> Moved:
    """Copy every event and profile of the DuckDB store under `data_dir` into `target`."""
    con = duckdb.connect(str(Path(data_dir) / EVENTS_FILE), read_only=True)
    try:
        events = 0
        reader: pa.RecordBatchReader = con.sql(
            "SELECT project_id, time_ms, event, distinct_id, insert_id, time_pos, line,"
            " 0::TINYINT AS link_kind, NULL::VARCHAR AS link_source, NULL::VARCHAR AS link_target"
            " FROM events ORDER BY project_id, time_ms, seq"
        ).to_arrow_reader(BATCH_ROWS)
        for batch in reader:
            if batch.num_rows:
                target.submit_events(pa.Table.from_batches([batch]).cast(INCOMING_SCHEMA)).result()
                events += batch.num_rows
                if progress is not None:
                    progress(events)
        rows = con.execute(
            "SELECT project_id, kind, group_key, profile_id, properties, updated_ms FROM profiles"
            " ORDER BY project_id, kind, group_key, profile_id"
        ).fetchall()
        mappings = _identity_rows(con)
    finally:
        con.close()
    for (project_id, kind, group_key), group in groupby(rows, key=lambda r: (r[0], r[1], r[2])):
        updates = [ProfileUpdate(r[3], "$set", orjson.loads(r[4]), r[5]) for r in group]
        target.submit_profile_updates(project_id, kind, group_key, updates, _replace).result()
    # After the profiles: they are stored under the ids the source holds them by (an update
    # written after these rows would move to the canonical id).
    for project_id, pairs in groupby(mappings, key=lambda r: r[0]):
        batch = [(distinct_id, canonical_id, time_ms) for _, distinct_id, canonical_id, time_ms in pairs]
        for start in range(0, len(batch), BATCH_ROWS):
            target.put_identity_mappings(project_id, batch[start : start + BATCH_ROWS])
    return Moved(events, len(rows))


def _identity_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, str, int]]:
    """(project_id, distinct_id, canonical_id, time_ms) of the source's identity rows (none in a
    store made before identity merge), by project."""
    known = con.execute(
        "SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [duckdb_identity.IDENTITY]
    ).fetchall()
    if not known:
        return []
    return [
        (int(p), d, c, int(t))
        for p, d, c, t in con.execute(
            f"SELECT project_id, distinct_id, canonical_id, time_ms FROM {duckdb_identity.IDENTITY}"
            " ORDER BY project_id, distinct_id"
        ).fetchall()
    ]


def migrate_into(target: Config, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """`rawevents migrate`: the DuckDB store under `target.data_dir` into `target.store`."""
    from rawevents.storage.factory import open_store, store_kind

    store = open_store(target)
    try:
        moved = migrate_duckdb(target.data_dir, store, progress)
    finally:
        store.close()
    done: dict[str, Any] = {
        "events": moved.events,
        "profiles": moved.profiles,
        "to": redact_store(target.store),
    }
    if store_kind(target) == "clickhouse":
        done["registry"] = copy_registry(target)
    return done


def copy_registry(target: Config) -> dict[str, int]:
    """The SQLite registry under `target.data_dir` into the ClickHouse registry of `target`."""
    from rawevents.storage.factory import open_registry

    registry = open_registry(target)
    source = SqliteRegistry(target.data_dir)
    try:
        assert isinstance(registry, ClickHouseRegistry), "only a clickhouse:// store has one"
        return registry.adopt(source.credentials())
    finally:
        source.close()
        registry.close()
