"""`rawevents migrate --from duckdb --to chdb`: the target exports the same bytes and holds the
same profiles; running it again changes nothing (the target's dedup)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rawevents.cli import main
from rawevents.settings import load_config
from rawevents.storage import ExportPlan, ProfileUpdate, TimeSegment, open_store
from rawevents.storage.duckdb.registry import SqliteRegistry
from tests.export.helpers import stored_event

DAY_MS = 1_714_521_600_000  # 2024-05-01T00:00Z


def _set(current: dict[str, object] | None, update: ProfileUpdate) -> dict[str, object] | None:
    return {**(current or {}), **update.value}


def _exported(data_dir: Path, store: str, project_id: int) -> bytes:
    events = open_store(load_config({}, data_dir=str(data_dir), store=store))
    try:
        plan = ExportPlan(project_id, [TimeSegment(DAY_MS, DAY_MS + 86_400_000, 0)], time_in_ms=True)
        return b"".join(bytes(chunk) for chunk in events.export_chunks(plan))
    finally:
        events.close()


def test_migrate_duckdb_to_chdb_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    project = SqliteRegistry(data_dir).create_project("m", "Europe/Berlin")
    source = open_store(load_config({}, data_dir=str(data_dir), store="duckdb", commit_interval_ms=0))
    try:
        source.submit_events(
            [
                stored_event(project, "e", DAY_MS + (i % 50) * 1000, distinct_id=f"u{i}", n=i, ünï="日本")
                for i in range(300)
            ]
        ).result()
        source.submit_profile_updates(
            project.project_id, "user", "", [ProfileUpdate("u1", "$set", {"a": 1}, DAY_MS)], _set
        ).result()
    finally:
        source.close()
    expected = _exported(data_dir, "duckdb", project.project_id)
    assert expected.count(b"\n") == 300

    for _ in range(2):
        assert main(["migrate", "--from", "duckdb", "--to", "chdb", "--data-dir", str(data_dir)]) == 0
        assert json.loads(capsys.readouterr().out) == {"events": 300, "profiles": 1, "to": "chdb"}
        assert _exported(data_dir, "chdb", project.project_id) == expected

    target = open_store(load_config({}, data_dir=str(data_dir), store="chdb"))
    try:
        assert list(target.profiles(project.project_id, "user")) == [("u1", {"a": 1})]
        assert target.query("SELECT count(*) FROM events", []) == [(300,)]  # type: ignore[attr-defined]
    finally:
        target.close()


def test_serve_workers_needs_a_server_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for store in ("duckdb", "chdb"):
        code = main(["serve", "--data-dir", str(tmp_path), "--store", store, "--workers", "2"])
        assert code == 2
        assert "needs a clickhouse:// store" in capsys.readouterr().err
