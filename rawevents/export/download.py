"""`rawevents export`: a resumable per-day export from a running server, one gzip JSONL per day.

Each day streams to `DAY.jsonl.gz.tmp`, is checked to be a complete gzip stream, is flushed to
disk and only then renamed to `DAY.jsonl.gz`: a file that exists is complete, so a rerun skips
the days already written and resumes where it stopped. A day without events is a valid empty
gzip file. 429 answers are retried after their `Retry-After`; a transfer cut short is retried.
Standard library only, so it runs wherever rawevents is installed.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import http.client
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rawevents.errors import BadRequest, RawEventsError

TRIES = 5
_COPY_BUFFER = 1 << 20


@dataclass(frozen=True, slots=True)
class DayResult:
    day: dt.date
    path: Path
    rows: int | None  # None: the file was already there and was skipped


@dataclass(frozen=True, slots=True)
class Source:
    url: str  # server base URL, e.g. http://127.0.0.1:8000
    authorization: str  # the Authorization header value
    project_id: int | None = None

    @classmethod
    def with_credentials(
        cls, url: str, secret: str, username: str | None = None, project_id: int | None = None
    ) -> Source:
        user_pass = f"{username}:{secret}" if username else f"{secret}:"
        header = "Basic " + base64.b64encode(user_pass.encode()).decode()
        return cls(url.rstrip("/"), header, project_id)

    def day_url(self, day: dt.date) -> str:
        params = {"from_date": day.isoformat(), "to_date": day.isoformat()}
        if self.project_id is not None:
            params["project_id"] = str(self.project_id)
        return f"{self.url}/api/2.0/export?{urllib.parse.urlencode(params)}"


def export_days(
    source: Source,
    first: dt.date,
    last: dt.date,
    out_dir: Path,
    *,
    sleep: Callable[[float], None] = time.sleep,
    report: Callable[[DayResult], None] | None = None,
) -> list[DayResult]:
    """Write every day in [first, last] that is not written yet; returns one result per day."""
    if first > last:
        raise BadRequest(f"--from {first} is after --to {last}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    day = first
    while day <= last:
        path = out_dir / f"{day.isoformat()}.jsonl.gz"
        result = DayResult(day, path, None) if path.exists() else _export_day(source, day, path, sleep)
        if report is not None:
            report(result)
        results.append(result)
        day += dt.timedelta(days=1)
    return results


def _export_day(source: Source, day: dt.date, path: Path, sleep: Callable[[float], None]) -> DayResult:
    tmp = path.with_name(path.name + ".tmp")
    request = urllib.request.Request(
        source.day_url(day), headers={"Authorization": source.authorization, "Accept-Encoding": "gzip"}
    )
    for attempt in range(1, TRIES + 1):
        try:
            with urllib.request.urlopen(request, timeout=300) as response, tmp.open("wb") as out:
                if response.headers.get("Content-Encoding") == "gzip":
                    shutil.copyfileobj(response, out, _COPY_BUFFER)
                else:
                    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as packed:
                        shutil.copyfileobj(response, packed, _COPY_BUFFER)
                out.flush()
                os.fsync(out.fileno())
            rows = _check_gzip(tmp)
        except urllib.error.HTTPError as error:
            body = error.read().decode("utf-8", "replace")
            if error.code == 429 and attempt < TRIES:
                sleep(float(error.headers.get("Retry-After") or 1))
                continue
            try:
                message = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                message = body
            raise RawEventsError(f"{day}: HTTP {error.code}: {message}") from error
        except (
            OSError,
            EOFError,
            zlib.error,
            http.client.HTTPException,
        ) as error:  # cut short: the gzip check or the socket failed
            if attempt == TRIES:
                raise RawEventsError(f"{day}: transfer failed {TRIES} times: {error}") from error
            sleep(min(30.0, 2.0**attempt))
            continue
        os.replace(tmp, path)
        return DayResult(day, path, rows)
    raise AssertionError("unreachable")


def _check_gzip(path: Path) -> int:
    """Lines in a complete gzip file; raises EOFError/BadGzipFile on a truncated one."""
    lines = 0
    with gzip.open(path, "rb") as packed:
        while chunk := packed.read(_COPY_BUFFER):
            lines += chunk.count(b"\n")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL of the rawevents server.")
    parser.add_argument("--secret", required=True, help="Project secret, or the service account's secret.")
    parser.add_argument("--username", default=None, help="Service account username (needs --project-id).")
    parser.add_argument("--project-id", type=int, default=None, help="Project id (service accounts).")
    parser.add_argument("--from", dest="from_date", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--to", dest="to_date", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--out", required=True, type=Path, help="Directory for DAY.jsonl.gz files.")


def run(args: argparse.Namespace, stdout: IO[str]) -> None:
    source = Source.with_credentials(args.url, args.secret, args.username, args.project_id)

    def report(result: DayResult) -> None:
        state = "skipped (exists)" if result.rows is None else f"{result.rows} events"
        print(f"{result.day}: {state} -> {result.path}", file=stdout, flush=True)

    export_days(source, args.from_date, args.to_date, args.out, report=report)
