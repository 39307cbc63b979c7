"""What the reliability tests share: sizes (CI or full), real export clients, process measurements
(the ingest load is tests/import_load.py).

Sizes: the CI run is small enough for the whole package to stay within a few minutes on two
shared cores; the full run (`pytest tests/reliability -m reliability_full`) uses the sizes of
issue 10 (40 concurrent exports, 100 abandoned, 40 stalled, many kills).

Figures: when RAWEVENTS_RELIABILITY_REPORT names a file, tests append what they measured to it
as JSON lines (docs/reliability.md quotes them); nothing is timed or asserted on speed.
"""

from __future__ import annotations

import os
import random
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import psutil
import pytest
import requests

from rawevents.projects import Project
from tests.live_server import LiveServer


@dataclass(frozen=True)
class Sizes:
    name: str
    kills: int
    ingest_clients: int
    export_rows: int
    concurrent_exports: int
    abandoned_exports: int
    stalled_readers: int
    fuzz_examples: int


CI = Sizes("ci", kills=3, ingest_clients=4, export_rows=20_000, concurrent_exports=8,
           abandoned_exports=20, stalled_readers=8, fuzz_examples=60)  # fmt: skip
FULL = Sizes("full", kills=20, ingest_clients=16, export_rows=200_000, concurrent_exports=40,
             abandoned_exports=100, stalled_readers=40, fuzz_examples=1500)  # fmt: skip

SIZES = [pytest.param(CI, id="ci"), pytest.param(FULL, id="full", marks=pytest.mark.reliability_full)]


def report(surface: str, **figures: Any) -> None:
    path = os.environ.get("RAWEVENTS_RELIABILITY_REPORT")
    if path:
        with open(path, "ab") as out:
            out.write(orjson.dumps({"surface": surface, **figures}, option=orjson.OPT_NON_STR_KEYS) + b"\n")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def basic(username: str, password: str = "") -> tuple[str, str]:
    return (username, password)


# -- export ---------------------------------------------------------------------------------------


class CutOff(Exception):
    """A 200 export whose body ended early (truncated gzip or chunked body)."""


def export_url(server: LiveServer, from_date: str, to_date: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"from_date": from_date, "to_date": to_date, **params}.items())
    return f"{server.base_url}/api/2.0/export?{query}"


def export_once(url: str, project: Project, *, gzip_body: bool = True) -> requests.Response:
    headers = {"Accept-Encoding": "gzip" if gzip_body else "identity"}
    return requests.get(url, auth=(project.api_secret, ""), headers=headers, stream=True, timeout=120)


def read_export(response: requests.Response) -> bytes:
    """The whole decoded body of a streamed 200, or CutOff if it ended early."""
    try:
        raw = b"".join(response.raw.stream(1 << 16, decode_content=False))
    except (requests.RequestException, OSError, Exception) as error:
        raise CutOff(repr(error)) from error
    finally:
        response.close()
    if response.headers.get("content-encoding") != "gzip":
        return raw
    decoder = zlib.decompressobj(31)
    data = decoder.decompress(raw) + decoder.flush()
    if not decoder.eof:
        raise CutOff("gzip stream is truncated")
    return data


def export_with_retry(url: str, project: Project, *, attempts: int = 200) -> tuple[bytes, int]:
    """An export that honours 429/503 Retry-After as a well-behaved client does; returns the body
    and how many times it was told to wait."""
    waits = 0
    for _ in range(attempts):
        response = export_once(url, project)
        if response.status_code in (429, 503):
            assert response.headers["Retry-After"].isdigit()
            assert set(response.json()) == {"request", "error"}
            waits += 1
            response.close()
            time.sleep(min(2.0, int(response.headers["Retry-After"])) * random.uniform(0.5, 1.0))
            continue
        assert response.status_code == 200, response.text
        return read_export(response), waits
    raise AssertionError("export never admitted")


# -- the server process -----------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    rss: int
    threads: int
    fds: int

    @classmethod
    def of(cls, server: LiveServer) -> Usage:
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        return cls(process.memory_info().rss, process.num_threads(), process.num_fds())

    def mib(self) -> float:
        return round(self.rss / 2**20, 1)


def settle(server: LiveServer, seconds: float = 30) -> Iterator[Usage]:
    """Usage samples once a second until the thread count stops falling (or `seconds` pass)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield Usage.of(server)
        time.sleep(1)
