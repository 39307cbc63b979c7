"""The pipeline runner in process (no server): runs, late events, crashes, deletions, on each
embedded store, against a file:// destination."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from rawevents import timeutil
from rawevents.admin import tasks
from rawevents.pipelines import commands
from rawevents.pipelines.destination import Destination
from rawevents.pipelines.runner import PipelineContext, step
from rawevents.projects import Project
from rawevents.settings import load_config
from rawevents.storage import open_store
from rawevents.storage.base import EventStore
from rawevents.storage.duckdb.registry import SqliteRegistry
from tests.pipelines.helpers import (
    DAY_MS,
    bucket_lines,
    days_of,
    events,
    export_lines,
    ingest,
    parquet_rows,
    utc_ms,
)


class Env:
    def __init__(self, tmp: Path, kind: str) -> None:
        self.tmp = tmp
        self.registry = SqliteRegistry(tmp / "data")
        self.store: EventStore = open_store(load_config({}, data_dir=str(tmp / "data"), store=kind))
        self.ctx = PipelineContext(self.registry, self.store, tmp / "spool")

    def project(self, timezone: str = "UTC") -> Project:
        return self.registry.create_project("p", timezone)

    def pipeline(self, project: Project, name: str = "pl", **kwargs: object) -> tuple[str, Destination]:
        url = (self.tmp / f"out-{name}").as_uri()
        commands.create(self.registry, project.project_id, url, name=name, every=1, **kwargs)  # type: ignore[arg-type]
        return name, Destination(url)

    def run(self, name: str) -> dict[str, Any] | None:
        pipeline = self.registry.require_pipeline(name)
        # every run is due at once in these tests
        pipeline.state.pinned_ms = 0
        return step(self.ctx, pipeline)

    def close(self) -> None:
        self.store.close()
        self.registry.close()


@pytest.fixture(params=["duckdb", "chdb"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    made = Env(tmp_path, request.param)
    yield made
    made.close()


def test_backfill_then_late_events_exactly_once(env: Env) -> None:
    project = env.project("Europe/Berlin")
    ingest(env.store, events(project, 500, utc_ms(2024, 3, 1), 37 * 60_000))
    name, dest = env.pipeline(project)
    first = env.run(name)
    assert first is not None and first["rows"] == 500
    assert bucket_lines(dest) == export_lines(env.store, project)
    days = days_of(dest)
    assert len(days) == len(first["days"]) >= 10
    assert env.run(name) is None  # nothing new: no run

    late = events(project, 20, utc_ms(2024, 3, 2, 5), DAY_MS // 3, prefix="late")
    ingest(env.store, late)
    second = env.run(name)
    assert second is not None and second["rows"] == 20 and second["run"] == 2
    assert bucket_lines(dest) == export_lines(env.store, project)
    assert all(k.split("/")[-1].startswith(("run-00000001-", "run-00000002-")) for k in dest.list("events"))


def test_objects_are_cut_by_rows_and_a_redo_writes_the_same_names(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = env.project()
    ingest(env.store, events(project, 300, utc_ms(2024, 5, 1), 60_000))
    name, dest = env.pipeline(project)
    env.ctx.object_rows = 100

    class Crash(Exception):
        pass

    uploads = 0
    real = Destination.put_file

    def crash_after_two(self: Destination, key: str, source: Path) -> int:
        nonlocal uploads
        uploads += 1
        if uploads == 3:
            raise Crash
        return real(self, key, source)

    monkeypatch.setattr(Destination, "put_file", crash_after_two)
    with pytest.raises(Crash):
        env.run(name)
    pending = env.registry.require_pipeline(name).state.pending
    assert pending is not None and len(pending["objects"]) == 3
    partial = dest.list("events")
    assert len(partial) == 2
    record = env.run(name)
    assert record is not None and record["objects"] == 3
    assert dest.list("events") == sorted(pending["objects"])
    assert bucket_lines(dest) == export_lines(env.store, project)


def _task(env: Env, kind: str, project: Project, payload: dict[str, object]) -> None:
    task = env.registry.create_task(kind, project.project_id, payload, "test")
    claimed = env.registry.claim_task(task.task_id)
    assert claimed is not None
    tasks.execute(tasks.TaskContext(env.registry, env.store, env.tmp / "data"), claimed)
    done = env.registry.task(task.task_id)
    assert done is not None and done.status == "SUCCESS", done


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_gdpr_deletion_rewrites_the_affected_objects(env: Env, fmt: str) -> None:
    project = env.project("Asia/Kolkata")
    ingest(env.store, events(project, 400, utc_ms(2024, 4, 1), 45 * 60_000))
    name, dest = env.pipeline(project, fmt=fmt)
    assert env.run(name) is not None
    before = dest.list("events")
    _task(env, tasks.DELETION, project, {"distinct_ids": ["u3", "nobody"]})
    [pending] = env.registry.pipeline_deletions(name)
    assert pending["kind"] == "gdpr_deletion" and "u3" in pending["match_ids"] and pending["days"]
    assert env.run(name) is None
    assert env.registry.pipeline_deletions(name) == []
    assert dest.list("events") == before  # rewritten in place, under the same names
    if fmt == "jsonl.gz":
        assert bucket_lines(dest) == export_lines(env.store, project)
    else:
        rows = parquet_rows(dest)
        assert len(rows) == sum(export_lines(env.store, project).values())
        assert "u3" not in {r["distinct_id"] for r in rows}
    [record] = dest.list("deletions")
    shown = orjson.loads(dest.get_bytes(record))
    assert shown["distinct_ids"] == ["u3", "nobody"] and shown["kind"] == "gdpr_deletion"
    assert "match_ids" not in shown
    # Later runs go on from the same cursor.
    ingest(env.store, events(project, 10, utc_ms(2024, 4, 3), 60_000, prefix="more"))
    assert env.run(name) is not None
    if fmt == "jsonl.gz":
        assert bucket_lines(dest) == export_lines(env.store, project)


def test_retention_and_project_deletion_reach_the_destination(env: Env) -> None:
    project = env.project()
    today = timeutil.today(project.zone)
    start = timeutil.day_start_ms(project.zone, today - dt.timedelta(days=9))
    ingest(env.store, events(project, 100, start, DAY_MS // 10))  # ten days up to today
    name, dest = env.pipeline(project)
    assert env.run(name) is not None
    assert len(days_of(dest)) == 10
    env.registry.set_retention(project.project_id, 3)
    _task(env, tasks.RETENTION, project, {})
    assert env.run(name) is None
    assert sorted(days_of(dest)) == [(today - dt.timedelta(days=d)).isoformat() for d in (3, 2, 1, 0)]
    assert bucket_lines(dest) == export_lines(env.store, project)

    env.registry.delete_project(project.project_id)
    _task(env, tasks.PURGE_PROJECT, project, {})
    assert env.run(name) is None
    assert dest.list("events") == []
    assert env.registry.require_pipeline(name).status == "ended"
    kinds = sorted(orjson.loads(dest.get_bytes(k))["kind"] for k in dest.list("deletions"))
    assert kinds == ["project_deletion", "retention"]


def test_parquet_objects_have_typed_columns_and_a_utc_instant(env: Env) -> None:
    project = env.project("America/New_York")
    ingest(env.store, events(project, 50, utc_ms(2024, 3, 9, 12), 3600_000))  # across the DST change
    name, dest = env.pipeline(project, fmt="parquet")
    assert env.run(name) is not None
    rows = sorted(parquet_rows(dest), key=lambda r: r["n"])
    expected = sorted(
        (orjson.loads(line)["properties"] for line in export_lines(env.store, project)), key=lambda p: p["n"]
    )
    assert [r["time"] for r in rows] == [p["time"] for p in expected]
    assert [r["time_utc"] for r in rows] == [
        dt.datetime.fromtimestamp((utc_ms(2024, 3, 9, 12) + i * 3600_000) / 1000, dt.UTC) for i in range(50)
    ]
    assert [r["price"] for r in rows] == [p["price"] for p in expected]
    assert [orjson.loads(r["tags"]) for r in rows] == [p["tags"] for p in expected]
    # Each object's rows are of its partition's day, in the project's zone.
    for key in dest.list("events"):
        with dest.fs.open_input_file(dest.path(key)) as handle:
            table = pq.read_table(handle)
        day = key.split("/")[1].removeprefix("date=")
        assert {
            t.astimezone(project.zone).date().isoformat() for t in table.column("time_utc").to_pylist()
        } == {day}


def test_event_and_where_filters(env: Env) -> None:
    project = env.project()
    ingest(env.store, events(project, 120, utc_ms(2024, 7, 1), 600_000))
    name, dest = env.pipeline(project, events=["buy"], where='properties["n"] > 30')
    assert env.run(name) is not None
    assert bucket_lines(dest) == export_lines(
        env.store, project, event='["buy"]', where='properties["n"] > 30'
    )
    assert 0 < sum(bucket_lines(dest).values()) < 40
