"""kill -9 at random moments with many concurrent ingesting clients, then: the server starts on the
first try, and every acknowledged `$insert_id` is exported exactly once.

The moments are random (seeded, printed on failure): while batches are parsed, while the writer
group-commits, while exports stream, while the compactor sorts recent rows into runs and merges
them (a tiny `compact_rows` keeps it busy the whole time), and during startup itself. Batches
are gzip `/import` of mixed sizes, so both the in-process path and the worker processes are
exercised.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import psutil
import pytest
import requests

from rawevents.projects import Project
from tests.import_load import WORKER_BATCH, ImportLoad
from tests.live_server import LiveServer, serve_command
from tests.reliability.harness import (
    SIZES,
    CutOff,
    Sizes,
    export_url,
    export_with_retry,
    read_export,
    report,
)

pytestmark = [pytest.mark.reliability, pytest.mark.server]

FIRST_TIME_S = 1_700_000_000  # 2023-11-14


class Exporter:
    """Exports in a loop (they are cut off by the kills; that is expected and not counted)."""

    def __init__(self, server: LiveServer, project: Project) -> None:
        self.server, self.project = server, project
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Exporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        url = export_url(self.server, "2023-11-14", "2023-12-31")
        while not self._stop.is_set():
            try:
                response = requests.get(url, auth=(self.project.api_secret, ""), stream=True, timeout=30)
                read_export(response)
            except (requests.RequestException, CutOff):
                time.sleep(0.05)


def exported_insert_ids(server: LiveServer, project: Project) -> Counter[str]:
    body, _ = export_with_retry(export_url(server, "2023-11-14", "2023-12-31"), project)
    return Counter(orjson.loads(line)["properties"]["$insert_id"] for line in body.splitlines())


@pytest.mark.parametrize("sizes", SIZES)
def test_kill9_loses_nothing_acknowledged_and_duplicates_nothing(tmp_path: Path, sizes: Sizes) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    live = LiveServer(tmp_path / "data", env={"RAWEVENTS_COMPACT_ROWS": "500"})
    project = live.create_project("crash")
    live.start()
    acknowledged: set[str] = set()
    startup_kills = 0
    statuses: Counter[int] = Counter()
    try:
        for kill in range(sizes.kills):
            ingester = ImportLoad(
                live,
                project,
                clients=sizes.ingest_clients,
                batch=rng.choice([50, 200, WORKER_BATCH]),
                time_s=FIRST_TIME_S + kill * 100_000,
                timeout=60,
            )
            with Exporter(live, project):
                ingester.start()
                ingester.wait_for_first_ack(60)  # then a random moment of the steady state
                time.sleep(rng.uniform(0.0, 2.0))
                live.kill9()
                ingester.stop()
            acknowledged |= ingester.acknowledged
            statuses.update(ingester.statuses)
            if rng.random() < 0.3:
                startup_kills += 1
                _kill_during_startup(live, rng.uniform(0.0, 1.5))
            live.start()  # raises if the store does not open on the first try
        counts = exported_insert_ids(live, project)
    finally:
        live.stop()
    missing = acknowledged - set(counts)
    duplicated = [insert_id for insert_id, n in counts.items() if n > 1]
    report(
        "kill9",
        sizes=sizes.name,
        seed=seed,
        kills=sizes.kills + startup_kills,
        startup_kills=startup_kills,
        acknowledged=len(acknowledged),
        exported=sum(counts.values()),
        missing=len(missing),
        duplicated=len(duplicated),
        statuses=dict(statuses),
    )
    assert acknowledged, f"seed {seed}: nothing was acknowledged, the test proved nothing"
    assert not [s for s in statuses if s >= 500], f"seed {seed}: {statuses}"
    assert not missing, f"seed {seed}: {len(missing)} acknowledged events lost"
    assert not duplicated, f"seed {seed}: {len(duplicated)} events stored twice"


def _kill_during_startup(live: LiveServer, after: float) -> None:
    """Start the server on the same data and kill -9 it `after` seconds later, ready or not."""
    process = subprocess.Popen(
        serve_command("--data-dir", str(live.data_dir), "--port", str(live.port)),
        env={**os.environ, **live.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(after)
    process.kill()
    process.wait()


def test_killed_ingest_worker_is_replaced_and_nothing_hangs(tmp_path: Path) -> None:
    """kill -9 of one ingest worker process under gzip /import load: every request still gets an
    answer (200, or 503 + Retry-After while the pool restarts), and /import works again after."""
    live = LiveServer(tmp_path / "data")
    project = live.create_project("worker")
    live.start()
    try:
        ingester = ImportLoad(live, project, clients=4, batch=WORKER_BATCH, timeout=20).start()
        time.sleep(1.0)
        assert live.process is not None
        workers = [c for c in psutil.Process(live.process.pid).children() if "python" in c.name()]
        assert workers, "no ingest worker processes to kill"
        workers[0].kill()
        time.sleep(3.0)
        ingester.stop()  # asserts every client thread returned
        assert ingester.errors == []  # no request timed out
        assert not [s for s in ingester.statuses if s >= 500 and s != 503]
        after = ImportLoad(live, project, batch=WORKER_BATCH, time_s=1_710_000_000, timeout=60)
        with requests.Session() as session:
            answered = [after.post(session) for _ in range(3)]
        assert None not in answered
        assert after.statuses.get(200, 0) >= 1
        assert after.connection_errors == 0
    finally:
        live.stop()
