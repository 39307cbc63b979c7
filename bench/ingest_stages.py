"""Where `/import`'s time goes, per event: `python -m bench.ingest_stages [--events 40000]`.

Runs the stages a gzip `/import` batch goes through, in process, on the benchmark's events
(bench/gen.py, batches of `--batch` events gzipped as bench/ingest_client.py sends them), and
prints the CPU time of each per stored event:
- gunzip, parse (JSON), normalise (validation, line assembly), arrow (the table the store
  inserts): what an ingest worker process does, timed as it runs there (no automatic GC);
- hand-off: pickling the job and the result and unpickling the result (the worker's IPC);
- insert: the store's group commits of `--group` batches (process CPU: DuckDB runs threads;
  the first batch, which pays first-use imports, is not timed);
- compact: what the background compactor leaves to do after them, done at once (`compact()`:
  rows sorted into runs, overlapping runs merged), and the checkpoint as the store closes.

What it leaves out is HTTP and the event loop (a few percent of the server's CPU under py-spy,
docs/performance.md). CPU time, not wall time, so a busy machine changes the figures less.

The baseline, on the same bodies: the floor, the least CPU per event that any durable,
time-clustered ingest written in Python spends, whatever its code (`measure_floor`). It prints
beside the budget of the issue's bar: 100,000 events/s on this machine's cores.
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

import duckdb
import orjson
import pyarrow as pa
from isal import isal_zlib

from bench.dataset import OUT, build
from rawevents.ingest.decode import batch_items, gunzip_capped, parse_payload
from rawevents.ingest.events import EventContext, normalize_events
from rawevents.ingest.workers import ImportJob, TableBatch
from rawevents.storage.duckdb.registry import SqliteRegistry
from rawevents.storage.duckdb.store import DuckDBStore

MAX_BYTES = 10 * 1024 * 1024
STAGES = ("gunzip", "parse", "normalise", "arrow", "hand-off", "insert", "compact")
FLOOR_STAGES = ("gunzip", "parse", "serialise", "append", "sort")
TARGET_EVENTS_PER_S = 100_000


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
        started = sum(os.times()[:2])
        store.compact()
    finally:
        store.close()  # the engine checkpoints as it closes
    spent["compact"] = sum(os.times()[:2]) - started
    return spent, sum(table.num_rows for table in tables)


def measure_floor(bodies: list[bytes], group: int, data_dir: Path) -> tuple[dict[str, float], int]:
    """CPU seconds per floor stage: gunzip and parse each body; serialise each event's properties
    once with sorted keys (a stored line is rebuilt from the parsed event, never the body's text);
    append each event's time and line to the engine in group commits of `group` bodies (each
    COMMIT a durable WAL write, as an acknowledgement needs); sort them into time order once (the
    engine's INSERT … ORDER BY into a second table, then a checkpoint). Nothing else: no
    validation, no dedup, no HTTP, no hand-off between processes."""
    spent = dict.fromkeys(FLOOR_STAGES, 0.0)
    con = duckdb.connect(str(data_dir / "floor.duckdb"))
    lines = "time_ms BIGINT, line VARCHAR USING COMPRESSION uncompressed"
    con.execute(f"CREATE TABLE incoming ({lines}); CREATE TABLE sorted ({lines})")
    tables = []
    gc.disable()
    try:
        for body in bodies:
            started = time.thread_time()
            raw = isal_zlib.decompress(body, 31)
            spent["gunzip"] += time.thread_time() - started
            started = time.thread_time()
            items = orjson.loads(raw)
            spent["parse"] += time.thread_time() - started
            started = time.thread_time()
            times = [item["properties"]["time"] for item in items]
            serialised = [orjson.dumps(item["properties"], option=orjson.OPT_SORT_KEYS) for item in items]
            spent["serialise"] += time.thread_time() - started
            tables.append(pa.table({"time_ms": pa.array(times, pa.int64()), "line": _as_text(serialised)}))
            del items
    finally:
        gc.enable()
    try:
        started = sum(os.times()[:2])
        for i in range(0, len(tables), group):
            con.register("batch", pa.concat_tables(tables[i : i + group]))
            con.execute("BEGIN; INSERT INTO incoming SELECT * FROM batch; COMMIT")
            con.unregister("batch")
        spent["append"] = sum(os.times()[:2]) - started
        started = sum(os.times()[:2])
        con.execute(
            "BEGIN; INSERT INTO sorted SELECT * FROM incoming ORDER BY time_ms; DELETE FROM incoming; COMMIT"
        )
        con.execute("CHECKPOINT")
        spent["sort"] = sum(os.times()[:2]) - started
        [(stored,)] = con.execute("SELECT count(*) FROM sorted").fetchall()
    finally:
        con.close()
    return spent, int(stored)


def _as_text(values: list[bytes]) -> pa.Array:
    """orjson's output (valid UTF-8) as a string array, not converted per value: cast from
    binary in the INSERT instead, the append took twice as long (docs/performance.md)."""
    return pa.array(values, pa.binary()).view(pa.string())


def _report(title: str, spent: dict[str, float], stored: int) -> dict[str, float]:
    per_event = {stage: 1e6 * seconds / stored for stage, seconds in spent.items()}
    print(f"{title}: {stored:,} events stored; CPU µs per event:")
    for stage, micros in per_event.items():
        print(f"  {stage:10s} {micros:7.2f}")
    print(f"  {'total':10s} {sum(per_event.values()):7.2f}")
    return per_event


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
        floor_spent, floor_stored = measure_floor(bodies, args.group, Path(tmp))
    per_event = _report("rawevents", spent, stored)
    floor = _report("floor", floor_spent, floor_stored)
    cores = os.cpu_count() or 1
    budget = 1e6 * cores / TARGET_EVENTS_PER_S
    print(f"rawevents' stages ÷ floor: {sum(per_event.values()) / sum(floor.values()):.2f}x")
    print(f"budget at {TARGET_EVENTS_PER_S:,} events/s on {cores} cores: {budget:.1f} µs per event")
    print(f"the floor alone ÷ that budget: {sum(floor.values()) / budget:.2f}x")
    return per_event


if __name__ == "__main__":
    main()
