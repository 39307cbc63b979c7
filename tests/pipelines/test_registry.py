"""Pipeline rows in both registries: the SQLite file of the embedded stores and the ClickHouse
tables (on chdb, two registry objects standing for two hosts sharing them)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rawevents.errors import BadRequest, NotFound
from rawevents.pipelines.model import ACTIVE, PAUSED, PipelineSpec, RunState, parse_every
from rawevents.projects import ProjectRegistry
from rawevents.storage.clickhouse.conn import ChdbEngine
from rawevents.storage.clickhouse.registry import ClickHouseRegistry
from rawevents.storage.duckdb.registry import SqliteRegistry


@pytest.fixture(params=["sqlite", "clickhouse"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ProjectRegistry, ProjectRegistry]]:
    """Two handles on one registry (two hosts, for ClickHouse)."""
    if request.param == "sqlite":
        a: ProjectRegistry = SqliteRegistry(tmp_path)
        b: ProjectRegistry = SqliteRegistry(tmp_path)
    else:
        engine = ChdbEngine(tmp_path / "chdb")
        a = ClickHouseRegistry(engine, settle_s=0.0)
        b = ClickHouseRegistry(engine, settle_s=0.0)
    yield a, b
    a.close()
    b.close()


def test_definition_status_state_runs_and_deletions(pair: tuple[ProjectRegistry, ProjectRegistry]) -> None:
    a, b = pair
    project = a.create_project("p")
    spec = PipelineSpec(
        "pl", project.project_id, "file:///tmp/x", "parquet", 60, "2024-01-01", ("buy",), None, 1
    )
    a.create_pipeline(spec)
    with pytest.raises(BadRequest, match="already exists"):
        b.create_pipeline(spec)
    found = b.require_pipeline("pl")
    assert found.spec == spec and found.status == ACTIVE and found.state == RunState()

    state = RunState(
        cursor=0, run=0, pending={"run": 1, "after": 0, "upto": 9, "started_ms": 5, "objects": ["k"]}
    )
    a.save_pipeline_state("pl", state)
    b.set_pipeline_status("pl", PAUSED)  # a person pauses while the runner saves: both kept
    state.cursor, state.run, state.pending = 9, 1, None
    a.save_pipeline_state("pl", state, {"run": 1, "attempt": 0, "outcome": "committed", "rows": 3})
    a.save_pipeline_state("pl", state, {"run": 1, "attempt": 0, "outcome": "committed", "rows": 3})  # redo
    seen = b.require_pipeline("pl")
    assert seen.status == PAUSED and seen.state.cursor == 9 and seen.state.pending is None
    assert [r["rows"] for r in b.pipeline_runs("pl")] == [3]
    assert [p.name for p in b.pipelines(project.project_id)] == ["pl"] and b.pipelines(
        project.project_id + 1
    ) == []

    a.add_pipeline_deletion("pl", "t1", {"task_id": "t1", "kind": "gdpr_deletion"})
    a.add_pipeline_deletion("pl", "t1", {"task_id": "t1", "kind": "gdpr_deletion"})  # once per id
    a.add_pipeline_deletion("pl", "t2", {"task_id": "t2", "kind": "retention"})
    assert [d["task_id"] for d in b.pipeline_deletions("pl")] == ["t1", "t2"]
    b.finish_pipeline_deletion("pl", "t1")
    assert [d["task_id"] for d in a.pipeline_deletions("pl")] == ["t2"]

    a.delete_pipeline("pl")
    assert b.pipeline("pl") is None and b.pipelines() == []
    with pytest.raises(NotFound):
        b.set_pipeline_status("pl", ACTIVE)
    a.save_pipeline_state("pl", state)  # a runner finishing after the deletion changes nothing
    assert b.pipeline("pl") is None


def test_one_host_at_a_time_holds_a_pipeline(tmp_path: Path) -> None:
    engine = ChdbEngine(tmp_path / "chdb")
    a = ClickHouseRegistry(engine, settle_s=0.0)
    b = ClickHouseRegistry(engine, settle_s=0.0)
    project = a.create_project("p")
    a.create_pipeline(PipelineSpec("pl", project.project_id, "file:///tmp/x"))
    assert a.claim_pipeline("pl", 60_000)
    assert not b.claim_pipeline("pl", 60_000)
    assert a.claim_pipeline("pl", 60_000)  # renewal
    a.release_pipeline("pl")
    assert b.claim_pipeline("pl", 1)  # a lease of 1 ms...
    time.sleep(0.05)
    assert a.claim_pipeline("pl", 60_000)  # ...expires: another host takes over
    assert not b.claim_pipeline("pl", 60_000)
    a.close()
    b.close()


def test_every_accepts_seconds_and_units() -> None:
    assert [parse_every(t) for t in ("90", "15m", "1h", "1d", " 2H ")] == [90, 900, 3600, 86400, 7200]
    for bad in ("0", "-1", "1w", "", "abc"):
        with pytest.raises(BadRequest):
            parse_every(bad)
