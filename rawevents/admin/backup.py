"""`rawevents backup` / `restore`: a consistent snapshot of a live store plus its registry.

Layout of a backup directory (owner-only modes):
    manifest.json      format, time, counts, and the last ingestion-order number it holds
    registry.sqlite3   SQLite online-backup copy of the registry
    events/            the store's own snapshot format (DuckDB: EXPORT DATABASE, Parquet)

The registry is copied first, then the store. So every GDPR deletion the copied registry calls
SUCCESS had already left the store when its snapshot was taken, and one that had not finished is
PENDING or STARTED in the copy and runs again after a restore: a restore never brings back data
whose deletion was acknowledged.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rawevents.errors import BadRequest
from rawevents.projects import ProjectRegistry

if TYPE_CHECKING:  # the engine (pyarrow, duckdb) loads only when a store is opened
    from rawevents.storage.base import EventStore

FORMAT = 1
MANIFEST = "manifest.json"
EVENTS_DIR = "events"


def write_backup(registry: ProjectRegistry, store: EventStore, out: Path) -> dict[str, Any]:
    from rawevents.storage.duckdb.registry import REGISTRY_FILE

    if out.exists() and any(out.iterdir()):
        raise BadRequest(f"backup directory {out} is not empty")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    out.chmod(0o700)
    started = time.time()
    registry.backup_to(out / REGISTRY_FILE)
    info = store.backup(out / EVENTS_DIR)
    manifest = {
        "format": FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "events": info.events,
        "profiles": info.profiles,
        "last_seq": info.last_seq,
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    path.chmod(0o600)
    return manifest


def restore_backup(source: Path, data_dir: Path, restore_store: Callable[[Path], None]) -> dict[str, Any]:
    """Rebuild a data directory from a backup; refuses a directory that already holds data.
    `restore_store` loads the `events/` snapshot into the configured engine."""
    try:
        manifest: dict[str, Any] = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BadRequest(f"{source} is not a rawevents backup (no readable {MANIFEST})") from exc
    if manifest.get("format") != FORMAT:
        raise BadRequest(f"unsupported backup format {manifest.get('format')!r}")
    from rawevents.storage.duckdb.registry import REGISTRY_FILE, SqliteRegistry

    registry_path = data_dir / REGISTRY_FILE
    if registry_path.exists():
        raise BadRequest(f"{data_dir} already holds a registry: restore into an empty directory")
    restore_store(source / EVENTS_DIR)
    shutil.copyfile(source / REGISTRY_FILE, registry_path)
    registry_path.chmod(0o600)
    SqliteRegistry(data_dir).close()  # migrates a backup taken by an older version
    return manifest
