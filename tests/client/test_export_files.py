"""`rawevents export` against a live server: killed and rerun, 429s, --utc across DST, CSV and
Parquet values and types."""

from __future__ import annotations

import csv
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from rawevents.client import ExportOptions, export, read_parquet_records
from rawevents.client.formats import csv_cell
from rawevents.projects import Project
from tests.client.helpers import connect, event, ingest, jsonl, leftovers, utc_s
from tests.export.helpers import basic
from tests.live_server import LiveServer


def jsonl_rows(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.split(b"\n") if line]


@pytest.fixture(scope="module")
def limited() -> Iterator[LiveServer]:
    """A server that admits one export per second per project: every second request is a 429."""
    import tempfile

    with tempfile.TemporaryDirectory() as data:
        live = LiveServer(Path(data), env={"RAWEVENTS_EXPORT_RATE_PER_SECOND": "1"}).start()
        yield live
        live.stop()


def _days(server: LiveServer, name: str, days: int) -> Project:
    project = server.create_project(name, "UTC")
    ingest(
        server,
        project,
        [
            event("e", utc_s(2024, 4, 1 + d, h), f"{name}-{d}-{h}", n=h)
            for d in range(days)
            for h in range(24)
        ],
    )
    return project


def _cli(server: LiveServer, project: Project, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAWEVENTS_SECRET": project.api_secret}
    return subprocess.Popen(
        [sys.executable, "-m", "rawevents.cli", "export", "--url", server.base_url, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_killed_export_leaves_no_partial_file_and_rerun_fetches_only_the_rest(
    limited: LiveServer, tmp_path: Path
) -> None:
    project = _days(limited, "killed", 6)
    out = tmp_path / "out"
    process = _cli(limited, project, "--from", "2024-04-01", "--to", "2024-04-06", "--out", str(out))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.jsonl.gz"))) < 2:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()  # reaps it and closes its pipes
    done = sorted(out.glob("*.jsonl.gz"))
    assert 2 <= len(done) < 6
    for path in done:  # a file with its final name is complete
        assert len(jsonl(path)) == 24
    stamps = {path.name: path.stat().st_mtime_ns for path in done}

    with connect(limited, project) as server:
        result = export(server, ExportOptions(dt.date(2024, 4, 1), dt.date(2024, 4, 6), out))
    assert {f.path.name for f in result.files if f.skipped and f.path} == set(stamps)
    assert all(f.events == 24 for f in result.files if not f.skipped)
    assert {path.name: path.stat().st_mtime_ns for path in done} == stamps  # not rewritten
    assert len(list(out.glob("*.jsonl.gz"))) == 6 and leftovers(out) == []


def test_429_retry_after_is_honoured(limited: LiveServer, tmp_path: Path) -> None:
    project = _days(limited, "throttled", 3)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with connect(limited, project, sleep=sleep) as server:
        # Day after day faster than one request per second: the second one meets a 429.
        result = export(server, ExportOptions(dt.date(2024, 4, 1), dt.date(2024, 4, 3), tmp_path))
    assert [f.events for f in result.files] == [24, 24, 24]
    assert waits and all(1.0 <= w <= 1.25 for w in waits)  # Retry-After: 1, plus jitter


# -- --utc across DST -------------------------------------------------------------------------------

# Instants around both DST changes of each zone, including both passes through the repeated hour.
DST_CASES = {
    "America/New_York": [
        utc_s(2024, 3, 10, 6, 59, 59),  # 01:59:59 EST
        utc_s(2024, 3, 10, 7, 0, 0),  # 03:00:00 EDT
        utc_s(2024, 11, 3, 5, 10),  # 01:10 EDT (first pass)
        utc_s(2024, 11, 3, 5, 50),  # 01:50 EDT
        utc_s(2024, 11, 3, 6, 10),  # 01:10 EST (second pass)
        utc_s(2024, 11, 3, 7, 30),  # 02:30 EST
    ],
    "Europe/Berlin": [
        utc_s(2024, 3, 31, 0, 59, 59),  # 01:59:59 CET
        utc_s(2024, 3, 31, 1, 0, 0),  # 03:00:00 CEST
        utc_s(2024, 10, 27, 0, 20),  # 02:20 CEST (first pass)
        utc_s(2024, 10, 27, 1, 5),  # 02:05 CET (second pass)
        utc_s(2024, 10, 27, 1, 40),  # 02:40 CET
        utc_s(2024, 10, 27, 23, 30),  # 00:30 next day
    ],
}


class _WithoutRaweventsTime(httpx.BaseTransport):
    """The live server as a Mixpanel-like one: `time_utc` is not passed on, so `time` stays local."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        plain = httpx.Request(
            request.method,
            request.url.copy_remove_param("time_utc"),
            headers=request.headers,
            stream=request.stream,
        )
        return self.inner.handle_request(plain)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("zone", sorted(DST_CASES))
@pytest.mark.parametrize(
    "how", ["server renders utc", "client converts, zone from server", "client converts, --timezone"]
)
def test_utc_is_exact_across_dst(server: LiveServer, tmp_path: Path, zone: str, how: str) -> None:
    project = server.create_project(f"dst-{zone}", zone)
    instants = DST_CASES[zone]
    ingest(server, project, [event("e", t, f"t{t}") for t in instants])
    first = dt.datetime.fromtimestamp(instants[0] - 86400, dt.UTC).date()
    last = dt.datetime.fromtimestamp(instants[-1] + 86400, dt.UTC).date()
    timezone = zone if how.endswith("--timezone") else None
    transport = None if how.startswith("server") else _WithoutRaweventsTime()
    with connect(server, project, transport=transport) as client:
        utc = ExportOptions(
            first, last, tmp_path / "utc.jsonl", utc=True, timezone=timezone, format="jsonl", split="none"
        )
        export(client, utc)
        export(client, ExportOptions(first, last, tmp_path / "local.jsonl", format="jsonl", split="none"))
        parquet = tmp_path / "utc.parquet"
        export(
            client,
            ExportOptions(first, last, parquet, utc=True, timezone=timezone, format="parquet", split="none"),
        )
    assert [row["properties"]["time"] for row in jsonl(tmp_path / "utc.jsonl")] == instants
    stamps = pq.read_table(tmp_path / "utc.parquet").column("time").to_pylist()
    assert stamps == [dt.datetime.fromtimestamp(t, dt.UTC) for t in instants]  # a timestamp column
    local = jsonl(tmp_path / "local.jsonl")
    assert [row["properties"]["time"] for row in local] != instants  # the export itself is local


def test_time_utc_extension(server: LiveServer) -> None:
    project = server.create_project("time-utc", "Asia/Kathmandu")  # +05:45
    ingest(server, project, [event("e", utc_s(2024, 6, 1, 12), "k1")])
    auth = basic(project.api_secret)
    query = "/api/2.0/export?from_date=2024-06-01&to_date=2024-06-01"
    local = server.get(query, headers=auth)
    assert "x-rawevents-time" not in local.headers
    assert jsonl_rows(local.content)[0]["properties"]["time"] == utc_s(2024, 6, 1, 17, 45)
    utc = server.get(query + "&time_utc=1", headers=auth)
    assert utc.headers["x-rawevents-time"] == "utc"
    assert utc.content == local.content.replace(b'"time":1717263900', b'"time":1717243200')
    ms = server.get(query + "&time_utc=1&time_in_ms=true", headers=auth)
    assert jsonl_rows(ms.content)[0]["properties"]["time"] == utc_s(2024, 6, 1, 12) * 1000


# -- CSV and Parquet -------------------------------------------------------------------------------

TYPED: list[dict[str, Any]] = [
    event(
        "Signed Up",
        utc_s(2024, 5, 1, 10),
        "p1",
        plan="pro",
        seats=3,
        price=9.5,
        trial=True,
        tags=["a", "b"],
        address={"city": "Zürich"},
        note='comma, "quote"\nnewline',
        mixed=1,
        event="inner",
    ),
    event(
        "Signed Up",
        utc_s(2024, 5, 1, 11),
        "p2",
        plan="free",
        seats=1,
        price=0.25,
        trial=False,
        tags=[],
        address={"city": "Oslo"},
        note="",
        mixed="one",
    ),
    event("Logged In", utc_s(2024, 5, 1, 12), "p3", seats=2, price=10, note="日本語"),
]


@pytest.fixture(scope="module")
def typed(server: LiveServer) -> Project:
    project = server.create_project("typed", "UTC")
    ingest(server, project, TYPED)
    return project


def _exported(
    server: LiveServer, project: Project, tmp_path: Path, fmt: str
) -> tuple[Path, list[dict[str, Any]]]:
    day = dt.date(2024, 5, 1)
    with connect(server, project) as client:
        source = export(client, ExportOptions(day, day, tmp_path / "jsonl", format="jsonl"))
        result = export(client, ExportOptions(day, day, tmp_path / fmt, format=fmt))  # type: ignore[arg-type]
    assert result.files[0].events == 3
    return result.files[0].path, jsonl(source.files[0].path)  # type: ignore[arg-type,return-value]


def test_parquet_keeps_values_and_types(server: LiveServer, typed: Project, tmp_path: Path) -> None:
    path, rows = _exported(server, typed, tmp_path, "parquet")
    schema = pq.read_schema(path)
    types = {name: schema.field(name).type for name in schema.names}
    assert types["event"] == pa.string() and types["time"] == pa.int64()
    assert types["seats"] == pa.int64() and types["trial"] == pa.bool_() and types["plan"] == pa.string()
    assert types["price"] == pa.float64()  # ints and floats mixed: float64
    assert types["tags"] == pa.string() and types["mixed"] == pa.string()  # JSON text columns
    assert schema.names[:3] == ["event", "time", "distinct_id"] and "properties.event" in schema.names
    back = list(read_parquet_records(path))
    for original, restored in zip(rows, back, strict=True):
        props = dict(original["properties"])
        if isinstance(props.get("price"), int):
            props["price"] = float(props["price"])
        assert restored == {"event": original["event"], "properties": props}
    assert pq.ParquetFile(path).metadata.num_rows == 3


def test_csv_flattens_properties_into_columns(server: LiveServer, typed: Project, tmp_path: Path) -> None:
    path, rows = _exported(server, typed, tmp_path, "csv")
    with path.open(newline="", encoding="utf-8") as handle:
        header, *cells = list(csv.reader(handle))
    assert header[:3] == ["event", "time", "distinct_id"] and "properties.event" in header
    for original, line in zip(rows, cells, strict=True):
        props = original["properties"]
        expected = [original["event"]] + [
            csv_cell(props.get("event" if column == "properties.event" else column)) for column in header[1:]
        ]
        assert line == expected
    table = pacsv.read_csv(path)  # a typed reader infers the types back
    assert table.schema.field("seats").type == pa.int64()
    assert table.schema.field("price").type == pa.float64()
    assert table.schema.field("trial").type == pa.bool_()
    assert table.column("note").to_pylist()[0] == 'comma, "quote"\nnewline'


def test_terminal_progress_shows_days_events_bytes_and_rate(server: LiveServer, tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from rawevents.client import TerminalProgress

    project = _days(server, "progress", 2)
    screen = io.StringIO()
    progress = TerminalProgress(Console(file=screen, force_terminal=True, width=160))
    with connect(server, project) as client:
        export(client, ExportOptions(dt.date(2024, 4, 1), dt.date(2024, 4, 2), tmp_path), progress)
    shown = screen.getvalue()
    assert "2/2" in shown and "days" in shown and "48 events" in shown and "/s" in shown and "ETA" in shown
    piped = io.StringIO()
    quiet = TerminalProgress(Console(file=piped))  # not a terminal: nothing drawn
    with connect(server, project) as client:
        export(client, ExportOptions(dt.date(2024, 4, 1), dt.date(2024, 4, 2), tmp_path / "again"), quiet)
    assert piped.getvalue() == ""
