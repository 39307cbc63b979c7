"""DuckDB snapshots for `rawevents backup` / `restore`, and small helpers of the store's
data-lifecycle methods.

A snapshot is DuckDB's own EXPORT DATABASE (schema.sql, load.sql, one Parquet file per table)
run inside one read transaction: MVCC gives every table the same point in time while the writer
keeps committing. IMPORT DATABASE reads it back, from wherever the directory was moved.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from rawevents.errors import BadRequest
from rawevents.storage.base import BackupInfo
from rawevents.storage.duckdb.schema import first_row

EVENTS_FILE = "events.duckdb"  # the store's file name (store.EVENTS_FILE)


def export_snapshot(con: duckdb.DuckDBPyConnection, target: Path) -> BackupInfo:
    if target.exists():
        raise BadRequest(f"backup target {target} already exists")
    con.execute("BEGIN TRANSACTION")
    try:
        counted = first_row(con, "SELECT count(*), coalesce(max(seq), 0) FROM events")
        profiles = first_row(con, "SELECT count(*) FROM profiles")
        # EXPORT DATABASE takes no parameters: the path is a quoted literal.
        con.execute(f"EXPORT DATABASE {_literal(str(target))} (FORMAT parquet)")
    finally:
        con.execute("COMMIT")
    _private(target)
    assert counted is not None and profiles is not None
    return BackupInfo(int(counted[0]), int(profiles[0]), int(counted[1]))


def restore(source: Path, data_dir: Path) -> None:
    """Load a snapshot into a new store file in `data_dir` (which must hold none)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / EVENTS_FILE
    if path.exists():
        raise BadRequest(f"{data_dir} already holds an event store: restore into an empty directory")
    con = duckdb.connect(str(path))
    try:
        con.execute(f"IMPORT DATABASE {_literal(str(source))}")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    path.chmod(0o600)


def _private(directory: Path) -> None:
    directory.chmod(0o700)
    for child in directory.iterdir():
        child.chmod(0o600)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
