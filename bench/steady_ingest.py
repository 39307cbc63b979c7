"""Compaction under steady real-time traffic: `python -m bench.steady_ingest [--rate 1000] [--seconds 60]`.

A store holding `--history` events in each of the last 3 days takes `--rate` events/s in batches
every 0.1 s, each committed before the next, timed around now, for `--seconds`; the background
compactor runs as in a server. Twice in the same run: with `--late` of the events (2 %) dated up to
3 days back, as mobile SDKs flushing offline queues send them, and the baseline with none late.
It prints, for each, the CPU the store process spent per event and the rows the compactor's
merges rewrote per event, and the ratio of the two CPU figures: what late events cost.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb

from rawevents.eventline import assemble_line
from rawevents.storage.base import StoredEvent
from rawevents.storage.duckdb import compaction, schema
from rawevents.storage.duckdb.store import DuckDBStore

DAY_MS = 86_400_000
LATE_DAYS = 3
BATCH_EVERY_S = 0.1


def _counting(step: compaction.Step, rewritten: Counter[str]) -> compaction.Step:
    """`step`, adding the rows it writes into its new run to `rewritten`."""

    def counted(con: duckdb.DuckDBPyConnection, runs: list[schema.Run], batch: int, max_rows: int) -> None:
        step(con, runs, batch, max_rows)
        found = schema.first_row(con, f"SELECT count(*) FROM {schema.SORTED} WHERE run_batch = ?", [batch])
        rewritten["rows"] += int(found[0]) if found else 0

    return counted


def _events() -> Callable[[int], StoredEvent]:
    """Events numbered from 0, each ~700 bytes as the benchmark's are."""
    counter = itertools.count()
    padding = "x" * 600

    def event(time_ms: int) -> StoredEvent:
        n = next(counter)
        props = {"distinct_id": f"u{n % 5000}", "$insert_id": f"i{n}", "pad": padding}
        pos, line = assemble_line("e", props, time_ms // 1000)
        return StoredEvent(1, time_ms, "e", f"u{n % 5000}", f"i{n}", pos, line)

    return event


def measure(
    rate: int, seconds: float, history: int, late: float, data_dir: Path, rewritten: Counter[str]
) -> tuple[float, int, int]:
    """(the store process's CPU µs per event, events sent, rows the merges rewrote meanwhile):
    `rewritten` counts every merge, the history's compaction too, so only its growth over the
    traffic is the traffic's."""
    rng = random.Random(1)
    event = _events()
    now_ms = int(time.time() * 1000)
    store = DuckDBStore(data_dir)
    try:
        past = [event(now_ms - rng.randrange(LATE_DAYS * DAY_MS)) for _ in range(LATE_DAYS * history)]
        for i in range(0, len(past), 5000):
            store.submit_events(past[i : i + 5000]).result()
        store.compact()
        started_cpu, started = sum(os.times()[:2]), time.monotonic()
        rewritten_before = rewritten["rows"]
        sent = 0
        while time.monotonic() - started < seconds:
            tick = time.monotonic()
            now_ms = int(time.time() * 1000)
            batch = [
                event(
                    now_ms - rng.randrange(LATE_DAYS * DAY_MS)
                    if rng.random() < late
                    else now_ms - rng.randrange(5000)
                )
                for _ in range(int(rate * BATCH_EVERY_S))
            ]
            store.submit_events(batch).result()
            sent += len(batch)
            time.sleep(max(0.0, BATCH_EVERY_S - (time.monotonic() - tick)))
        cpu = sum(os.times()[:2]) - started_cpu
        during = rewritten["rows"] - rewritten_before
    finally:
        store.close()
    return 1e6 * cpu / sent, sent, during


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(prog="python -m bench.steady_ingest", description=__doc__)
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--history", type=int, default=30_000, help="events already in each of the last 3 days"
    )
    parser.add_argument("--late", type=float, default=0.02, help="share of events dated up to 3 days back")
    args = parser.parse_args(argv)
    rewritten: Counter[str] = Counter()
    steps = {name: getattr(compaction, name) for name in ("_merge_runs", "_consolidate_window")}
    results: dict[str, tuple[float, float]] = {}
    try:
        for name, step in steps.items():  # count what the compactor's merge steps write
            setattr(compaction, name, _counting(step, rewritten))
        for label, late in ((f"{args.late:.0%} late", args.late), ("none late (baseline)", 0.0)):
            with tempfile.TemporaryDirectory() as tmp:
                cpu, sent, during = measure(args.rate, args.seconds, args.history, late, Path(tmp), rewritten)
            results[label] = (cpu, during / sent)
            print(f"{label:22s} {sent:,} events: store CPU {cpu:6.1f} µs/event;", end=" ")
            print(f"merges rewrote {results[label][1]:.2f} rows/event")
    finally:
        for name, step in steps.items():
            setattr(compaction, name, step)
    (late_cpu, _), (base_cpu, _) = results.values()
    print(f"late events ÷ baseline, CPU per event: {late_cpu / base_cpu:.2f}x")
    return results


if __name__ == "__main__":
    main()
