"""Cost of a selective `where` on the export scan: 1M stored events, one JSON property that
matches ~4% of rows, filtered export vs unfiltered export (both fully consumed).

    PYTHONPATH=. python bench/where_bench.py [--events 1000000] [--days 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable

from rawevents.eventline import assemble_line
from rawevents.storage.base import ExportPlan, StoredEvent
from rawevents.storage.duckdb.store import DuckDBStore
from rawevents.timeutil import TimeSegment
from rawevents.where import Node, parse
from rawevents.where.printer import Sql, compile_predicate
from rawevents.where.printer.duckdb import DuckDBPrinter

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
PLANS = ["free"] * 60 + ["pro"] * 36 + ["enterprise"] * 4  # "enterprise": 4% of rows


def make_events(count: int, days: int) -> list[StoredEvent]:
    rng = random.Random(7)
    span = days * 86_400_000
    events: list[StoredEvent] = []
    for i in range(count):
        time_ms = START_MS + (i * span) // count
        props = {
            "distinct_id": f"user-{rng.randrange(50_000)}",
            "$insert_id": f"ins-{i:09d}",
            "$city": rng.choice(["Paris", "Berlin", "Lagos", "Lima", "Osaka"]),
            "$os": rng.choice(["iOS", "Android", "Windows", "Mac OS X"]),
            "mp_lib": "python",
            "plan": rng.choice(PLANS),
            "price": round(rng.random() * 100, 2),
            "items": [rng.randrange(100) for _ in range(rng.randrange(4))],
        }
        time_pos, line = assemble_line("purchase", props, time_ms // 1000)
        events.append(
            StoredEvent(1, time_ms, "purchase", props["distinct_id"], props["$insert_id"], time_pos, line)
        )
    return events


def run_export(store: DuckDBStore, days: int, where: Node | None) -> tuple[float, int]:
    plan = ExportPlan(1, [TimeSegment(START_MS, START_MS + days * 86_400_000, 0)], where=where)
    started = time.perf_counter()
    total = 0
    for chunk in store.export_chunks(plan):
        total += len(chunk)
    return time.perf_counter() - started, total


def best_of(n: int, fn: Callable[[], tuple[float, int]]) -> tuple[float, float, int]:
    runs = [fn() for _ in range(n)]
    seconds = [s for s, _ in runs]
    return min(seconds), statistics.median(seconds), runs[0][1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        store = DuckDBStore(data_dir, commit_interval_ms=0)
        started = time.perf_counter()
        events = make_events(args.events, args.days)
        for i in range(0, len(events), 100_000):
            store.submit_events(events[i : i + 100_000]).result()
        del events
        print(f"loaded {args.events} events in {time.perf_counter() - started:.1f} s")
        texts = [
            'properties["plan"] == "enterprise"',
            'properties["plan"] in ["enterprise"]',
            'number(properties["price"]) > 96',
            '"enterprise" in properties["plan"] and properties["price"] >= 0',
            'any(X, properties["items"], X == 42)',
            'not defined(properties["missing"]) and properties["plan"] == "enterprise"',
            " or ".join(f'properties["distinct_id"] == "user-{i}"' for i in range(0, 50_000, 500)),
        ]
        cases: list[tuple[str, Node | None]] = [("no where", None), *((t, parse(t)) for t in texts)]
        base = None
        for name, where in cases:
            best, median, size = best_of(args.repeat, lambda w=where: run_export(store, args.days, w))  # type: ignore[misc]
            base = base or best
            timing = f"best {best:6.3f} s  median {median:6.3f} s"
            print(f"{name[:75]:75s} {timing}  {size / 1e6:7.1f} MB  x{best / base:4.2f}")
        print("filter cost alone (SELECT count(*) over all rows, no ordering or transfer):")
        exact = DuckDBPrinter("UTC").predicate(parse(texts[0]))
        filters: list[tuple[str, Sql | None]] = [
            (name, None if node is None else compile_predicate(DuckDBPrinter("UTC"), node))
            for name, node in cases
        ]
        filters.insert(2, ("(first, exact predicate only: no substring prefilter)", exact))
        for name, where_sql in filters:
            sql = "SELECT count(*) FROM events WHERE project_id = 1"
            params: tuple[object, ...] = ()
            if where_sql is not None:
                sql += f" AND ({where_sql.text})"
                params = where_sql.params

            def count(q: str = sql, p: tuple[object, ...] = params) -> tuple[float, int]:
                started = time.perf_counter()
                rows = store.query(q, p)
                return time.perf_counter() - started, int(rows[0][0])

            best, median, rows = best_of(args.repeat, count)
            print(f"{name[:75]:75s} best {best:6.3f} s  median {median:6.3f} s  {rows:8d} rows")
        store.close()


if __name__ == "__main__":
    main()
