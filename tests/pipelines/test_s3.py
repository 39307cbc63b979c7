"""Pipelines inside a live server, writing to a real S3 API on loopback (moto): every test ends
with the multiset of lines in the bucket equal to the project's export, no more, no less."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from rawevents.pipelines.destination import Destination
from tests.admin.helpers import wait_for
from tests.pipelines.conftest import S3Server
from tests.pipelines.helpers import bucket_lines, days_of, object_lines
from tests.pipelines.live import (
    create,
    export_lines,
    ingest,
    make_events,
    pipeline,
    serving,
    utc_s,
    wait_delivered,
)

pytestmark = pytest.mark.server


@pytest.mark.parametrize("store", ["duckdb", "chdb"])
def test_backfill_then_late_events_days_back(tmp_path: Path, s3_env: S3Server, store: str) -> None:
    bucket = s3_env.bucket()
    url = f"s3://{bucket}/raw/shop"
    with serving(tmp_path / "data", s3_env, store) as server:
        project = server.create_project("shop", "America/New_York")
        ingest(server, project, make_events(3000, utc_s(2024, 3, 1), 600, "backfill"))  # ~21 days
        made = create(server, project, url, "--from", "2024-03-05")
        assert made["status"] == "active" and made["from"] == "2024-03-05"
        wait_delivered(server, project, made["name"])
        dest = Destination(url)
        assert bucket_lines(dest) == export_lines(server, project, "2024-03-05")
        first_days = days_of(dest)
        assert min(first_days) == "2024-03-05" and len(first_days) >= 15

        # Late events days back (and one before --from, which the pipeline never delivers).
        late = make_events(40, utc_s(2024, 3, 7, 3), 3600, "late")
        late += make_events(2, utc_s(2024, 3, 2, 12), 60, "too-early")
        ingest(server, project, late)
        done = wait_delivered(server, project, made["name"])
        assert done.state.run == 2
        assert bucket_lines(dest) == export_lines(server, project, "2024-03-05")
        second = [k for k in dest.list("events") if "/run-00000002-" in k]
        assert sorted(k.split("/")[1] for k in second) == [
            "date=2024-03-06",
            "date=2024-03-07",
            "date=2024-03-08",
        ]
        # New York: 03:00 UTC on the 7th is the 6th locally.


def test_a_failing_destination_is_retried_and_never_blocks_ingestion(
    tmp_path: Path, s3_env: S3Server
) -> None:
    bucket = s3_env.bucket()
    url = f"s3://{bucket}/flaky"
    with serving(tmp_path / "data", s3_env) as server:
        project = server.create_project("flaky")
        ingest(server, project, make_events(500, utc_s(2024, 6, 1), 300, "before"))
        name = create(server, project, url)["name"]
        wait_delivered(server, project, name)

        s3_env.stop()  # the destination goes away
        try:
            ingest(server, project, make_events(200, utc_s(2024, 6, 2), 300, "during-1"))
            failing = wait_for(lambda: (p := pipeline(server, name)).state.failures >= 2 and p, timeout=60)
            assert failing.state.pending is not None and "NETWORK_CONNECTION" in (failing.state.error or "")
            started = time.monotonic()
            ingest(server, project, make_events(2000, utc_s(2024, 6, 3), 30, "during-2"))
            assert time.monotonic() - started < 10  # ingestion goes on while the pipeline fails
        finally:
            s3_env.start()
        done = wait_delivered(server, project, name)
        assert done.state.failures == 0 and done.state.error is None
        assert bucket_lines(Destination(url)) == export_lines(server, project)

        status = requests.get(
            f"{server.base_url}/api/rawevents/pipelines/{name}",
            auth=(project.api_secret or "", ""),
            timeout=30,
        ).json()
        outcomes = [run["outcome"] for run in status["runs"]]
        assert "failed" in outcomes and outcomes[0] == "committed"
        failed = next(run for run in status["runs"] if run["outcome"] == "failed")
        assert failed["run"] == 2 and "NETWORK_CONNECTION" in failed["error"]
        metrics = server.get("/metrics").text
        assert f'rawevents_pipeline_runs_total{{outcome="failed",pipeline="{name}"}}' in metrics
        assert f'rawevents_pipeline_lag_seconds{{pipeline="{name}"}}' in metrics
        assert "run failed" in server.log_text() and "committed" in server.log_text()


def test_kill9_during_a_run_then_restart(tmp_path: Path, s3_env: S3Server) -> None:
    bucket = s3_env.bucket()
    url = f"s3://{bucket}/crash"
    small = {"RAWEVENTS_PIPELINE_OBJECT_ROWS": "200"}
    with serving(tmp_path / "data", s3_env, **small) as server:
        project = server.create_project("crash")
        ingest(server, project, make_events(40_000, utc_s(2024, 1, 1), 60, "bulk"))
        name = create(server, project, url)["name"]

        def midway() -> bool:
            pending = pipeline(server, name).state.pending
            return pending is not None and len(pending["objects"]) >= 20

        wait_for(midway, timeout=120)
        server.kill9()
        cut = pipeline(server, name).state
        assert cut.pending is not None and cut.run == 0
        named = set(cut.pending["objects"])
        written = set(Destination(url).list("events"))
        assert written and written <= named  # nothing it did not name first
        server.start()
        done = wait_delivered(server, project, name)
        assert done.state.run == 1  # the same run, redone under the same names
        assert bucket_lines(Destination(url)) == export_lines(server, project)
        assert written <= set(Destination(url).list("events"))
        keys = Destination(url).list("events")
        assert len(keys) == 28 * 8 - 2  # 1,440 events a day, at most 200 an object; 27.8 days
        assert all(len(object_lines(Destination(url), key)) <= 200 for key in keys[:10])


def test_gdpr_deletion_reaches_the_bucket(tmp_path: Path, s3_env: S3Server) -> None:
    bucket = s3_env.bucket()
    url = f"s3://{bucket}/gdpr"
    with serving(tmp_path / "data", s3_env) as server:
        project = server.create_project("gdpr")
        ingest(server, project, make_events(600, utc_s(2024, 2, 1), 900, "ev", users=4))
        name = create(server, project, url)["name"]
        wait_delivered(server, project, name)
        dest = Destination(url)
        assert any(b'"distinct_id":"user1"' in line for line in bucket_lines(dest))

        reply = server.post(
            f"/api/app/data-deletions/v3.0/?token={project.token}",
            json={"distinct_ids": ["user1"]},
            headers={"Authorization": f"Bearer {project.api_secret}"},
        )
        assert reply.status_code == 201, reply.text
        task_id = reply.json()["results"]["task_id"]

        def carried_out() -> bool:
            found = pipeline(server, name)
            registry = server.registry
            try:
                return (
                    not registry.pipeline_deletions(name)
                    and found.state.pending is None
                    and bool(dest.list("deletions"))
                )
            finally:
                registry.close()

        wait_for(carried_out, timeout=60)
        lines = bucket_lines(dest)
        assert not any(b'"distinct_id":"user1"' in line for line in lines)
        assert lines == export_lines(server, project)
        [record_key] = dest.list("deletions")
        assert task_id in record_key
        import orjson

        record = orjson.loads(dest.get_bytes(record_key))
        assert record["distinct_ids"] == ["user1"] and record["task_id"] == task_id
        assert record["days"] and "match_ids" not in record
