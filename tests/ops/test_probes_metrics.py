"""Probes and Prometheus metrics through a real server: every counter the issue names moves by
exactly what the requests did, parsed with Prometheus's own parser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests

from rawevents.projects import Project
from tests.export.helpers import basic
from tests.live_server import LiveServer
from tests.ops.helpers import moved, scrape, value, wait_for

NOW = int(time.time())
DAY = 86_400


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "RAWEVENTS_TRACK_MAX_AGE_DAYS": "5",
        "RAWEVENTS_EXPORT_RATE_PER_SECOND": "1",
        "RAWEVENTS_INGEST_PROCESSES": "0",
    }
    server = LiveServer(tmp_path_factory.mktemp("ops") / "data", env=env).start()
    yield server
    server.stop()


def track_event(token: str, name: str = "Viewed", **properties: object) -> dict[str, object]:
    return {"event": name, "properties": {"token": token, "distinct_id": "u1", "time": NOW, **properties}}


def post_json(live: LiveServer, path: str, payload: object, **kwargs: object) -> requests.Response:
    return live.post(path, data=orjson.dumps(payload), **kwargs)  # type: ignore[arg-type]


def test_liveness_and_readiness(live: LiveServer) -> None:
    health = live.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = live.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert requests.head(live.base_url + "/readyz", timeout=30).status_code == 200
    assert live.get("/healthz/").status_code in (200, 307)


def test_ingestion_counters_by_endpoint_and_reason(live: LiveServer) -> None:
    project: Project = live.create_project("metrics")
    token = project.token
    before = scrape(live.base_url)

    batch = [
        track_event(token),
        track_event(token, "Clicked"),
        track_event(token, "Old", time=NOW - 10 * DAY),  # past track_max_age_days: too_old
        {"event": "", "properties": {"token": token}},  # invalid
    ]
    assert post_json(live, "/track?verbose=1", batch).json() == {"error": None, "status": 1}
    assert post_json(live, "/track", [track_event("no-such-token")]).text == "1"
    imported = [{"event": "Ignored", "properties": {"time": NOW, "distinct_id": "u", "$ignore": True}}]
    assert post_json(live, "/import", imported, headers=basic(project.api_secret)).text == "1"
    refused = post_json(live, "/import", imported, headers=basic("not-a-secret"))
    assert refused.status_code == 401
    profiles = [
        {"$token": token, "$distinct_id": "u1", "$set": {"plan": "pro"}},
        {"$token": "no-such-token", "$distinct_id": "u2", "$set": {"plan": "free"}},
    ]
    assert post_json(live, "/engage", profiles).text == "1"

    after = scrape(live.base_url)
    accepted = "rawevents_ingest_events_accepted_total"
    rejected = "rawevents_ingest_events_rejected_total"
    dropped = "rawevents_ingest_events_dropped_total"
    assert moved(before, after, accepted, endpoint="track") == 2
    assert moved(before, after, rejected, endpoint="track", reason="too_old") == 1
    assert moved(before, after, rejected, endpoint="track", reason="invalid") == 1
    assert moved(before, after, dropped, endpoint="track", reason="unknown_token") == 1
    assert moved(before, after, dropped, endpoint="import", reason="ignored") == 1
    assert moved(before, after, accepted, endpoint="import") == 0
    assert moved(before, after, accepted, endpoint="engage") == 1
    assert moved(before, after, dropped, endpoint="engage", reason="unknown_token") == 1
    refusals = "rawevents_ingest_requests_refused_total"
    assert moved(before, after, refusals, endpoint="import", reason="unauthorized") == 1
    assert moved(before, after, "rawevents_ingest_request_bytes_count", endpoint="track") == 2
    track_bytes = moved(before, after, "rawevents_ingest_request_bytes_sum", endpoint="track")
    assert track_bytes == len(orjson.dumps(batch)) + len(orjson.dumps([track_event("no-such-token")]))
    assert moved(before, after, "rawevents_http_responses_total", handler="import", code="401") == 1

    # The writer's group commits: at least the /track, /engage batches, with their rows.
    assert moved(before, after, "rawevents_store_commit_seconds_count") >= 2
    assert moved(before, after, "rawevents_store_commit_events_sum") >= 2
    assert value(after, "rawevents_store_write_queue_depth") == 0
    assert value(after, "rawevents_store_bytes") > 0
    # The compactor sorts the recent rows into runs once the writer has been idle a moment.
    wait_for(lambda: value(scrape(live.base_url), "rawevents_store_compactions_total") >= 1)
    assert value(scrape(live.base_url), "rawevents_store_compaction_seconds_total") > 0

    # Every dropped batch has its log line, with reason and count.
    wait_for(lambda: "/track: 1 of 1 events not stored (unknown_token=1)" in live.log_text())
    assert "/track: 2 of 4 events not stored (invalid=1, too_old=1)" in live.log_text()
    assert "/engage: 1 of 2 updates not stored (unknown_token=1)" in live.log_text()


def test_export_counters_and_rate_limit_rejections(live: LiveServer) -> None:
    project = live.create_project("export-metrics")
    events = [track_event(project.token, f"E{i}", time=NOW - i) for i in range(5)]
    assert post_json(live, "/track", events).text == "1"
    day = time.strftime("%Y-%m-%d", time.gmtime(NOW))
    url = f"/api/2.0/export?from_date={day}&to_date={day}"
    time.sleep(1.1)  # a fresh per-second window for this project
    before = scrape(live.base_url)

    headers = {**basic(project.api_secret), "Accept-Encoding": "identity"}  # body bytes = bytes sent
    first = live.get(url, headers=headers)
    assert first.status_code == 200 and len(first.text.splitlines()) == 5
    second = live.get(url, headers=headers)  # within the same second: 429
    assert second.status_code == 429

    after = scrape(live.base_url)
    assert moved(before, after, "rawevents_exports_started_total") == 1
    wait_for(
        lambda: moved(before, scrape(live.base_url), "rawevents_exports_ended_total", outcome="finished")
    )
    assert moved(before, after, "rawevents_export_rows_total") == 5
    assert moved(before, after, "rawevents_export_bytes_total") == len(first.content)
    assert moved(before, after, "rawevents_export_first_byte_seconds_count") == 1
    assert moved(before, after, "rawevents_rate_limited_requests_total", api="export") == 1
    assert moved(before, after, "rawevents_http_responses_total", handler="export", code="429") == 1


def test_probes_and_metrics_need_no_credentials(live: LiveServer) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert live.get(path).status_code == 200


def test_two_apps_in_one_process_keep_their_own_registries(tmp_path: Path) -> None:
    from rawevents.service import Services
    from rawevents.settings import load_config

    first = Services.open(load_config({}, data_dir=str(tmp_path / "a"), ingest_processes=0))
    second = Services.open(load_config({}, data_dir=str(tmp_path / "b"), ingest_processes=0))
    try:
        first.metrics.ingest_batch("track", 3, {}, {})
        assert b'rawevents_ingest_events_accepted_total{endpoint="track"} 3.0' in first.metrics.exposition()
        assert b'rawevents_ingest_events_accepted_total{endpoint="track"} 0.0' in second.metrics.exposition()
    finally:
        first.close()
        second.close()


def test_every_metric_is_documented() -> None:
    from rawevents.metrics import Metrics

    docs = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    names = [family.name for family in Metrics().registry.collect()]
    assert len(names) >= 20
    assert [name for name in names if f"`{name}`" not in docs] == []
