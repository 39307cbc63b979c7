"""Large gzip JSON /import bodies are parsed and normalised in worker processes: the answers and
the stored rows must be exactly those of the in-process path."""

from __future__ import annotations

import gzip
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from rawevents.ingest import workers
from tests.ingest.conftest import App, make_app

GZIP_JSON = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    yield from make_app(tmp_path_factory.mktemp("pooled"), ingest_processes=1, max_batch_events=2000)


@pytest.fixture(scope="module")
def inline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    yield from make_app(tmp_path_factory.mktemp("inline"), ingest_processes=0, max_batch_events=2000)


def _events(n: int, bad_every: int = 0) -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        props: dict[str, Any] = {
            "time": 1_700_000_000 + i,
            "distinct_id": f"user-{i * 7919 % 1000}",
            "$insert_id": f"id-{i:08d}-{i * 2654435761 % 99991:05d}",
            "n": i,
            "f": i / 7,
            "tags": [f"t{i % 13}", i % 5],
            "utm": {"source": f"s{i % 17}", "b": None},
            "ok": i % 2 == 0,
        }
        if bad_every and i % bad_every == 0:
            del props["time"]
        events.append({"event": f"e{i % 9}", "properties": props})
    return events


def _body(events: list[dict[str, Any]]) -> bytes:
    body = gzip.compress(json.dumps(events).encode())
    assert len(body) >= workers.MIN_GZIP_BYTES  # the worker path is taken
    return body


def _post(app: App, path: str, body: bytes, headers: dict[str, str] = GZIP_JSON) -> tuple[int, bytes]:
    project = app.project()
    response = app.client.post(path, content=body, headers=headers, auth=(project.api_secret, ""))
    return response.status_code, response.content


@pytest.mark.parametrize("path", ["/import?strict=1&verbose=1", "/import", "/import?verbose=1"])
def test_worker_answers_and_rows_equal_the_in_process_path(pooled: App, inline: App, path: str) -> None:
    body = _body(_events(2000, bad_every=97))
    answers = []
    lines = []
    for app in (pooled, inline):
        project = app.project()
        response = app.client.post(path, content=body, headers=GZIP_JSON, auth=(project.api_secret, ""))
        answers.append((response.status_code, response.content))
        lines.append(
            [
                (
                    r["event"],
                    r["distinct_id"],
                    r["insert_id"],
                    r["time_ms"],
                    r["time_pos"],
                    _without_server(r),
                )
                for r in app.rows(project)
            ]
        )
    assert answers[0] == answers[1]
    assert len(lines[0]) == 2000 - 21
    assert lines[0] == lines[1]


def _without_server(row: dict[str, Any]) -> dict[str, Any]:
    props = dict(row["json"]["properties"])
    for key in ("$mp_api_timestamp_ms", "mp_processing_time_ms"):
        assert isinstance(props.pop(key), int)
    return props


@pytest.mark.parametrize(
    ("path", "events", "status", "answer"),
    [
        (
            "/import?strict=1",
            [],
            400,
            {"code": 400, "error": "data, missing or empty", "status": "Bad Request"},
        ),
        (
            "/import?strict=1",
            _events(2001),
            413,
            {
                "code": 413,
                "error": "request exceeds max limit of 2000 events",
                "status": "Request Entity Too Large",
            },
        ),
    ],
)
def test_worker_errors_keep_mixpanel_shapes(
    pooled: App, path: str, events: list[Any], status: int, answer: dict[str, Any]
) -> None:
    # Uncompressed gzip of JSON padded with whitespace (which JSON ignores): the worker path.
    padded = gzip.compress(json.dumps(events).encode() + b" " * workers.MIN_GZIP_BYTES, compresslevel=0)
    code, content = _post(pooled, path, padded)
    assert (code, json.loads(content)) == (status, answer)


def test_form_body_with_json_content_type_still_works(pooled: App) -> None:
    data = json.dumps(_events(300))
    raw = urlencode({"data": data}).encode()
    body = gzip.compress(raw, compresslevel=0)
    assert len(body) >= workers.MIN_GZIP_BYTES
    code, content = _post(pooled, "/import?strict=1", body)
    assert (code, json.loads(content)) == (200, {"code": 200, "num_records_imported": 300, "status": "OK"})


def _running_pool(app: App) -> tuple[workers.IngestWorkers, bytes, list[int]]:
    """The pool, once a 2,000-event body went through it; that body, and the workers' pids."""
    pool = app.services.ingest_workers
    assert pool is not None
    body = _body(_events(2000))
    assert _post(app, "/import?strict=1", body)[0] == 200
    return pool, body, pool.pids()


def test_a_worker_dying_with_a_batch_is_a_503_and_the_pool_recovers(pooled: App) -> None:
    _, body, pids = _running_pool(pooled)
    _kill(pids, signal.SIGSTOP)  # stopped, not dead: a lane hands its next batch to its worker
    killer = threading.Timer(1.0, _kill, args=(pids, signal.SIGKILL))
    killer.start()  # the worker dies holding the batch
    code, content = _post(pooled, "/import?strict=1", body)
    killer.join()
    assert code == 503
    assert json.loads(content)["error"] == "the ingest worker failed while reading this batch; retry"
    code, content = _post(pooled, "/import?strict=1", body)
    assert (code, json.loads(content)["num_records_imported"]) == (200, 2000)


def test_a_worker_found_dead_between_batches_is_replaced_for_the_next(pooled: App) -> None:
    pool, body, pids = _running_pool(pooled)
    _kill(pids, signal.SIGKILL)
    for pid in pids:
        _wait_until_dead(pid)
    code, content = _post(pooled, "/import?strict=1", body)
    assert (code, json.loads(content)["num_records_imported"]) == (200, 2000)
    assert not set(pool.pids()) & set(pids)


def _kill(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        os.kill(pid, sig)


def _wait_until_dead(pid: int, timeout_s: float = 10) -> None:
    """Until the worker `pid` (our child) has exited, all its threads too, without reaping it:
    its lane must find it dead. (Its /proc state shows a zombie while other threads still exit.)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
            return
        time.sleep(0.01)
    raise AssertionError(f"worker {pid} still running")
