"""Where `/import`'s time goes, per event: `python -m bench.ingest_stages [--events 40000]`.

Runs the stages a gzip `/import` batch goes through, in process, on the benchmark's events
(bench/gen.py, batches of `--batch` events gzipped as bench/ingest_client.py sends them), and
prints the CPU time of each per stored event:
- gunzip, parse (JSON), normalise (validation, line assembly), arrow (the table the store
  inserts): what an ingest worker process does, timed as it runs there (no automatic GC);
- hand-off: pickling the job and the result and unpickling the result (the worker's IPC);
- insert: the store's group commits of `--group` batches (process CPU: DuckDB runs threads;
  the first batch, which pays first-use imports, is not timed).

What it leaves out is HTTP and the event loop (a few percent of the server's CPU under py-spy,
docs/performance.md). CPU time, not wall time, so a busy machine changes the figures less.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import tempfile
import time
from collections.abc import Callable
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from isal import isal_zlib

from bench.dataset import OUT, build
from rawevents.ingest.decode import batch_items, gunzip_capped, parse_payload
from rawevents.ingest.events import EventContext, normalize_events
from rawevents.ingest.workers import ImportJob, TableBatch
from rawevents.storage.duckdb_store import DuckDBStore
from rawevents.storage.sqlite_registry import SqliteRegistry

MAX_BYTES = 10 * 1024 * 1024
STAGES = ("gunzip", "parse", "normalise", "arrow", "hand-off", "insert")


def gzip_batches(jsonl: Path, events: int, batch: int) -> list[bytes]:
    bodies = []
    with open(jsonl, "rb") as f:
        lines = islice(f, events)
        while chunk := [line.rstrip(b"\n") for line in islice(lines, batch)]:
            compressor = isal_zlib.compressobj(2, isal_zlib.DEFLATED, 31)
            raw = b"[" + b",".join(chunk) + b"]"
            bodies.append(compressor.compress(raw) + compressor.flush())
    return bodies


def measure(bodies: list[bytes], group: int, data_dir: Path) -> tuple[dict[str, float], int]:
    """CPU seconds per stage over all bodies, and the number of events stored."""
    project = SqliteRegistry(data_dir).create_project("stages", "UTC")
    now = int(time.time() * 1000)
    ctx = EventContext("import", True, now, now, "localhost", False, None)
    spent = dict.fromkeys(STAGES, 0.0)

    def timed(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        started = time.thread_time()
        result = fn(*args)
        spent[stage] += time.thread_time() - started
        return result

    tables = []
    gc.disable()  # as in the worker processes (rawevents/ingest/worker_process.py)
    try:
        for body in bodies:
            raw = timed("gunzip", gunzip_capped, body, MAX_BYTES)
            payload = timed("parse", parse_payload, raw)
            items = batch_items(payload, len(payload.items))
            batch = timed("normalise", partial(normalize_events, project=project), items, ctx)
            table = timed("arrow", batch.table)
            job = ImportJob(body, MAX_BYTES, False, len(items), ctx, project)
            answer = ("ok", TableBatch(table, batch.failed, batch.dropped))
            timed("hand-off", lambda: (pickle.dumps(job), pickle.loads(pickle.dumps(answer))))  # noqa: B023
            tables.append(table)
            gc.collect()
    finally:
        gc.enable()
    store = DuckDBStore(data_dir)
    try:
        store.submit_events(tables[0]).result()  # first-use imports (untimed)
        started = sum(os.times()[:2])
        for i in range(1, len(tables), group):
            futures = [store.submit_events(table) for table in tables[i : i + group]]
            for future in futures:
                future.result()
        spent["insert"] = (sum(os.times()[:2]) - started) * len(tables) / max(1, len(tables) - 1)
    finally:
        store.close()
    return spent, sum(table.num_rows for table in tables)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_stages", description=__doc__)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=2000, help="events per /import body")
    parser.add_argument("--group", type=int, default=4, help="bodies per group commit")
    parser.add_argument("--out", type=Path, default=OUT, help="where the dataset is (built once)")
    args = parser.parse_args(argv)
    ds = build(max(args.events, 2000), out=args.out, log=False)
    bodies = gzip_batches(ds.import_jsonl, args.events, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        spent, stored = measure(bodies, args.group, Path(tmp))
    per_event = {stage: 1e6 * seconds / stored for stage, seconds in spent.items()}
    print(f"{stored:,} events stored; CPU µs per event:")
    for stage, micros in per_event.items():
        print(f"  {stage:10s} {micros:7.2f}")
    print(f"  {'total':10s} {sum(per_event.values()):7.2f}")
    return per_event


if __name__ == "__main__":
    main()
