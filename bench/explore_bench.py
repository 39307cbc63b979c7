"""The explorer's requests on the benchmark dataset: `python -m bench.explore_bench [--events N]`.

What the page asks for a 30-day range, through the real server over HTTP, one request at a time:
the chart (segmentation by hour of every event name), the range total, the top 10 distinct_ids,
the top 10 values of `$os` and the first page of raw events (newest first). Then the same panels
for a one-hour window on one day (what the page asks after a drag on the chart). Each figure is
the median of `--reps` runs after one warm-up run, as wall seconds and as the server process's
CPU seconds; "chart + top-N" adds the chart, the total and the top distinct_ids (the page asks
the last two in parallel, so the sum is an upper bound).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from typing import NamedTuple

import httpx
import psutil

from bench.dataset import OUT, build
from bench.gen import DAYS, START_MS
from bench.live import Server


class Timing(NamedTuple):
    wall: float
    cpu: float


FROM = dt.datetime.fromtimestamp(START_MS / 1000, dt.UTC).date()
TO = FROM + dt.timedelta(days=DAYS - 1)
WINDOW_DAY = dt.date(2026, 10, 15)
# A one-hour window, as a drag on the chart selects it (the page's own clause).
WINDOW = (
    'properties["$time"] >= datetime("2026-10-15T14:00:00")'
    ' and properties["$time"] < datetime("2026-10-15T15:00:00")'
)


def requests_for(first: dt.date, last: dt.date, where: str | None) -> dict[str, tuple[str, dict[str, str]]]:
    base = {"from_date": first.isoformat(), "to_date": last.isoformat()}
    if where:
        base["where"] = where
    top = {**base, "unit": "month", "limit": "10"}
    segmentation = "/api/query/segmentation"
    return {
        "chart": (segmentation, {**base, "unit": "hour", "limit": "10000"}),
        "total": (segmentation, {**base, "unit": "month", "limit": "10000"}),
        "top distinct_ids": (segmentation, {**top, "on": 'properties["distinct_id"]'}),
        "top $os": (segmentation, {**top, "on": 'properties["$os"]'}),
        "first page": ("/api/query/events/page", {**base, "order": "newest", "limit": "50"}),
    }


def timed(
    client: httpx.Client, server: psutil.Process, path: str, params: dict[str, str], reps: int
) -> Timing:
    """Median wall seconds and median server CPU seconds (user + system, every thread) of one
    request: on a shared machine the CPU figure is the one other processes cannot inflate."""

    def once() -> tuple[float, float]:
        cpu = sum(server.cpu_times()[:2])
        started = time.perf_counter()
        response = client.get(path, params=params)
        response.raise_for_status()
        response.json()
        return time.perf_counter() - started, sum(server.cpu_times()[:2]) - cpu

    once()  # warm-up
    runs = [once() for _ in range(reps)]
    return Timing(statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    dataset = build(args.events)
    server = Server(dataset.data_dir, OUT / "explore-server.log")
    scenarios = {
        f"{DAYS} days": requests_for(FROM, TO, None),
        "one-hour window": requests_for(WINDOW_DAY, WINDOW_DAY, WINDOW),
    }
    try:
        auth = (dataset.project.api_secret, "")
        with httpx.Client(base_url=server.base_url, auth=auth, timeout=300) as client:
            print(
                f"{dataset.n_events:,} events over {DAYS} days; median of {args.reps}: wall s (server CPU s)"
            )
            names = list(next(iter(scenarios.values())))
            print("| selection | " + " | ".join(names) + " | chart + top-N |")
            print("|---" * (len(names) + 2) + "|")
            process = psutil.Process(server.process.pid)
            for scenario, asks in scenarios.items():
                got = {name: timed(client, process, *asks[name], args.reps) for name in names}
                page = [got[name] for name in ("chart", "total", "top distinct_ids")]
                cells = " | ".join(f"{got[name].wall:.3f} ({got[name].cpu:.2f})" for name in names)
                total = f"{sum(t.wall for t in page):.3f} ({sum(t.cpu for t in page):.2f})"
                print(f"| {scenario} | {cells} | {total} |", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
