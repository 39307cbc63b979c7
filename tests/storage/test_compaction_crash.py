"""`kill -9` in the middle of compaction leaves the store as before or after each step: every
acknowledged event is exported exactly once afterwards.

Two tests: the store alone (a child process compacts in small steps: flushes, merges, days
consolidated window by window; it is killed while it does), and the real server (clients
importing shuffled events with acknowledgements, compaction running after every few hundred
rows, killed and restarted). The long variant of the server test runs
more rounds: `pytest -m reliability_full tests/storage/test_compaction_crash.py`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import requests

from rawevents.eventline import assemble_line
from rawevents.projects import Project
from rawevents.storage.base import ExportPlan, StoredEvent
from rawevents.storage.duckdb import compaction, schema
from rawevents.storage.duckdb.store import DuckDBStore
from rawevents.timeutil import TimeSegment
from tests.live_server import LiveServer

DAY = 86_400_000
T0 = 1_790_812_800_000

# The child: compacts the store in sorts of 150 rows (many short transactions: flushes, merges of
# at most 300 rows, and days of 600+ rows consolidated window by window), saying on stdout when
# it starts flushing and when it starts merging.
_CHILD = """
import sys
from rawevents.storage.duckdb import compaction
from rawevents.storage.duckdb.store import DuckDBStore
compaction.SORT_BYTES_PER_ROW = 1 << 62
compaction.MIN_SORT_ROWS = 150
store = DuckDBStore(sys.argv[1], background_compaction=False)
compactor, con = store._compactor, store._db.cursor()
print("flushing", flush=True)
while compactor._flush(con, 1):
    pass
print("merging", flush=True)
while compactor._merge(con, compaction._every_day):
    pass
print("done", flush=True)
con.close()
store.close()
"""


def _event(n: int, rng: random.Random) -> StoredEvent:
    time_ms = T0 + rng.randrange(10 * DAY)
    props = {"distinct_id": f"u{n % 97}", "$insert_id": f"i{n}", "n": n, "pad": "x" * 200}
    pos, line = assemble_line("e", props, time_ms // 1000)
    return StoredEvent(1, time_ms, "e", f"u{n % 97}", f"i{n}", pos, line)


def _exported(store: DuckDBStore) -> list[int]:
    plan = ExportPlan(1, [TimeSegment(T0, T0 + 11 * DAY, 0)])
    body = b"".join(bytes(chunk) for chunk in store.export_chunks(plan))
    return [orjson.loads(line)["properties"]["n"] for line in body.splitlines()]


def test_kill_9_during_compaction_loses_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    total = 0
    outcomes = []
    for round_no in range(4):
        store = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
        batch = [_event(n, rng) for n in range(total, total + 6000)]
        store.submit_events(batch).result()  # acknowledged: durable
        total += len(batch)
        store.close()
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "flushing"
        if round_no % 2:  # odd rounds kill a merge or window step; even ones most likely a flush
            assert child.stdout.readline().strip() == "merging"
        time.sleep(rng.uniform(0.05, 0.6) * (round_no + 1) / 2)
        child.kill()
        child.wait()
        outcomes.append(child.stdout.read().strip())
        child.stdout.close()
        store = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
        try:
            ns = _exported(store)
            assert Counter(ns) == Counter(range(total)), round_no  # each exactly once
            # The run list matches the rows: no half-done step.
            assert store.query(f"SELECT * FROM {schema.RUNS} ORDER BY ALL") == store.query(
                f"SELECT run_batch, project_id, time_ms // {DAY}, min(time_ms), max(time_ms), count(*)"
                f" FROM {schema.SORTED} GROUP BY ALL ORDER BY ALL"
            ), round_no
        finally:
            store.close()
    assert any("done" not in outcome for outcome in outcomes)  # kills did land mid-compaction
    assert any("done" not in outcome for outcome in outcomes[1::2])  # and mid-merge
    # The same small sorts as the child: compaction resumes where the last kill left it.
    monkeypatch.setattr(compaction, "SORT_BYTES_PER_ROW", 1 << 62)
    monkeypatch.setattr(compaction, "MIN_SORT_ROWS", 150)
    store = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
    try:
        store.compact()
        ns = _exported(store)
        assert len(ns) == total and Counter(ns) == Counter(range(total))
        # Every day ended as runs that do not overlap (each read in storage order).
        [(overlapping,)] = store.query(
            f"SELECT count(*) FROM {schema.RUNS} AS a JOIN {schema.RUNS} AS b USING (project_id, part)"
            " WHERE a.run_batch <> b.run_batch AND a.min_time <= b.max_time AND b.min_time <= a.max_time"
        )
        assert overlapping == 0
    finally:
        store.close()


def _import_until_killed(live: LiveServer, project: Project, extra_s: float, prefix: str) -> set[str]:
    """Three clients post shuffled-time batches until the server is killed (`extra_s` after 1,500
    acknowledged events); the acknowledged ids."""
    acked: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client(worker: int) -> None:
        with requests.Session() as session:
            _post_until_stopped(worker, session)

    def _post_until_stopped(worker: int, session: requests.Session) -> None:
        rng = random.Random(worker)
        batch_no = 0
        while not stop.is_set():
            ids = [f"{prefix}-w{worker}-b{batch_no}-{i}" for i in range(300)]
            events = [
                {
                    "event": "Crash",
                    "properties": {
                        "time": (T0 + rng.randrange(5 * DAY)) // 1000,
                        "distinct_id": f"d{i % 13}",
                        "$insert_id": x,
                    },
                }
                for i, x in enumerate(ids)
            ]
            try:
                response = session.post(
                    live.base_url + "/import?strict=1", json=events, auth=(project.api_secret, ""), timeout=10
                )
            except requests.RequestException:
                return
            if response.status_code == 200:
                with lock:
                    acked.update(ids)
            batch_no += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 1500:
                break
        time.sleep(0.01)
    time.sleep(extra_s)
    live.kill9()  # requests in flight, the compactor busy (compact_rows is tiny)
    stop.set()
    for thread in threads:
        thread.join()
    return acked


def _export_ids(live: LiveServer, project: Project) -> list[str]:
    response = live.get(
        "/api/2.0/export",
        params={"from_date": "2026-10-01", "to_date": "2026-10-06"},
        auth=(project.api_secret, ""),
    )
    assert response.status_code == 200, response.text
    return [json.loads(line)["properties"]["$insert_id"] for line in response.text.splitlines() if line]


def _server_rounds(tmp_path: Path, rounds: int) -> None:
    live = LiveServer(tmp_path / "data", env={"RAWEVENTS_COMPACT_ROWS": "300"})
    project = live.create_project("crash")
    live.start()
    acknowledged: set[str] = set()
    try:
        for round_no in range(rounds):
            acknowledged |= _import_until_killed(live, project, round_no % 3 * 0.4, f"r{round_no}")
            live.start()
            ids = _export_ids(live, project)
            counts = Counter(ids)
            assert not [x for x, n in counts.items() if n > 1], "an event exported twice"
            assert acknowledged <= counts.keys(), "an acknowledged event lost"
        assert len(acknowledged) >= 1500 * rounds
    finally:
        live.stop()


@pytest.mark.server
def test_server_kill_9_while_compacting_keeps_every_acknowledged_event_once(tmp_path: Path) -> None:
    _server_rounds(tmp_path, rounds=2)


@pytest.mark.server
@pytest.mark.reliability_full
def test_server_kill_9_while_compacting_many_rounds(tmp_path: Path) -> None:
    _server_rounds(tmp_path, rounds=12)
