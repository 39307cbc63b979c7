"""`rawevents export` as JSONL.gz and as Parquet on the same range: `python -m bench.export_formats`.

The benchmark dataset (bench.dataset, `--events` over 30 days) behind the real server; the real
CLI in its own process, timed from start to exit (so Python's start-up is in both), once per
day (`--split day`, one file per day) and as one file. Formats alternate run by run, so a busy
machine slows both alike; each figure is the minimum and the median of `--reps` runs, and the
ratio is JSONL.gz's time over Parquet's (issue #24 asks for at least 0.5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench.dataset import OUT, build
from bench.gen import DAYS, START_MS
from bench.live import ROOT, Server

FORMATS = ("jsonl.gz", "parquet")


def main(argv: list[str] | None = None) -> dict[tuple[str, str], list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    dataset = build(args.events)
    first = time.strftime("%Y-%m-%d", time.gmtime(START_MS / 1000))
    last = time.strftime("%Y-%m-%d", time.gmtime(START_MS / 1000 + (DAYS - 1) * 86400))
    work = OUT / "export-formats"
    server = Server(dataset.data_dir, OUT / "export-formats-server.log")
    env = {**os.environ, "RAWEVENTS_SECRET": dataset.project.api_secret}
    seconds: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.reps):
            for split in ("day", "none"):
                for fmt in FORMATS:
                    shutil.rmtree(work, ignore_errors=True)
                    work.mkdir(parents=True)
                    out = work / ("days" if split == "day" else f"all.{fmt}")
                    command = [sys.executable, "-m", "rawevents.cli", "export", "--url", server.base_url]
                    command += ["--from", first, "--to", last, "--out", str(out), "--format", fmt]
                    started = time.perf_counter()
                    subprocess.run(command, env=env, check=True, cwd=ROOT, capture_output=True)
                    seconds.setdefault((split, fmt), []).append(time.perf_counter() - started)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{dataset.n_events:,} events over {DAYS} days; wall seconds, min and median of {args.reps}")
    print("| files | jsonl.gz | parquet | ratio (jsonl.gz / parquet) |")
    print("|---|---|---|---|")
    for split, label in (("day", "one per day"), ("none", "one")):
        plain, typed = seconds[(split, "jsonl.gz")], seconds[(split, "parquet")]
        cells = [f"{min(s):.2f} / {statistics.median(s):.2f}" for s in (plain, typed)]
        ratio = f"{min(plain) / min(typed):.2f} / {statistics.median(plain) / statistics.median(typed):.2f}"
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
    return seconds


if __name__ == "__main__":
    main()
