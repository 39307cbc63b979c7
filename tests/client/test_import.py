"""`rawevents import`: export → import → export is byte-identical; batching, failures, time zones."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from rawevents.client import (
    Connection,
    Credentials,
    ExportOptions,
    ImportOptions,
    SilentProgress,
    TerminalProgress,
    export,
    import_files,
)
from rawevents.client.progress import human_bytes
from rawevents.projects import Project
from tests.client.helpers import connect, event, ingest, utc_s
from tests.live_server import LiveServer

FIRST, LAST = dt.date(2024, 10, 25), dt.date(2024, 10, 28)


def _events() -> list[dict[str, object]]:
    rows = []
    for i in range(300):  # across Berlin's DST end, many sharing a second
        t = utc_s(2024, 10, 25) + i * 997 // 3
        rows.append(
            event(
                "Viewed" if i % 3 else "Bought",
                t,
                f"r{i}",
                distinct_id=f"u{i % 7}",
                n=i,
                price=i / 4,
                tags=["x", str(i)],
                nested={"b": 1, "a": [True, None]},
                text='ü\u2028"q"',
            )
        )
    return rows


def _dump(server: LiveServer, project: Project, out: Path, **kwargs: object) -> list[bytes]:
    with connect(server, project) as client:
        result = export(client, ExportOptions(FIRST, LAST, out, format="jsonl", **kwargs))  # type: ignore[arg-type]
    return [f.path.read_bytes() for f in result.files if f.path]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_export_import_export_is_byte_identical(server: LiveServer, tmp_path: Path, zone: str) -> None:
    source = server.create_project(f"source-{zone}", zone)
    target = server.create_project(f"target-{zone}", zone)
    ingest(server, source, _events())
    first = _dump(server, source, tmp_path / "first")
    assert sum(len(day.splitlines()) for day in first) == 300
    with connect(server, target) as client:
        options = ImportOptions(
            timezone=zone, batch_events=37, concurrency=4
        )  # many small concurrent batches
        result = import_files(client, [tmp_path / "first"], options)
    assert (result.imported, result.failures, result.files) == (300, [], 4)
    assert _dump(server, target, tmp_path / "second") == first


def test_utc_export_imports_without_a_zone(server: LiveServer, tmp_path: Path) -> None:
    source = server.create_project("utc-source", "America/New_York")
    target = server.create_project("utc-target", "America/New_York")
    ingest(server, source, _events())
    first = _dump(server, source, tmp_path / "first")
    with connect(server, source) as client:
        export(client, ExportOptions(FIRST, LAST, tmp_path / "utc.jsonl.gz", utc=True, split="none"))
    with connect(server, target) as client:
        imported = import_files(client, [tmp_path / "utc.jsonl.gz"]).imported
    assert imported == sum(len(day.splitlines()) for day in first) > 200  # New York days start at 04:00 UTC
    assert _dump(server, target, tmp_path / "second") == first


def test_cli_import_reports_each_failed_record_and_imports_the_rest(
    server: LiveServer, tmp_path: Path
) -> None:
    project = server.create_project("failures", "UTC")
    lines = [
        orjson.dumps(event("ok", utc_s(2024, 1, 1), "f1")),
        b"{not json",
        orjson.dumps(event("bad id", utc_s(2024, 1, 1), "not an insert id!")),
        orjson.dumps(event("ok", utc_s(2024, 1, 2), "f2")),
    ]
    path = tmp_path / "mixed.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    result = subprocess.run(
        [sys.executable, "-m", "rawevents.cli", "import", str(path), "--url", server.base_url],
        env={**os.environ, "RAWEVENTS_SECRET": project.api_secret},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"{path}:2: invalid JSON")
    assert errors[1].startswith(f"{path}:3: 'properties.$insert_id' is invalid")
    assert errors[2].startswith("rawevents import: 2 events imported, 2 failed, 1 file, ")
    assert "Traceback" not in result.stderr


def test_batches_respect_the_body_limit(server: LiveServer, tmp_path: Path) -> None:
    project = server.create_project("big-bodies", "UTC")
    path = tmp_path / "big.jsonl"
    rows = [event("e", utc_s(2024, 1, 1) + i, f"b{i}", blob="x" * 100_000) for i in range(250)]  # 25 MB
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    with connect(server, project) as client:
        result = import_files(client, [path], ImportOptions(max_body_bytes=4 * 1024 * 1024))
    assert (result.imported, result.failures) == (250, [])


@pytest.mark.server
def test_batches_adapt_to_a_server_with_lower_limits(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "data", env={"RAWEVENTS_MAX_BATCH_EVENTS": "50"}).start()
    try:
        project = live.create_project("small-batches", "UTC")
        path = tmp_path / "events.jsonl"
        path.write_bytes(
            b"".join(orjson.dumps(event("e", utc_s(2024, 1, 1) + i, f"s{i}")) + b"\n" for i in range(300))
        )
        with connect(live, project) as client:
            result = import_files(client, [path])
        assert (result.imported, result.failures) == (300, [])
    finally:
        live.stop()


def test_parquet_export_imports_back_to_the_same_rows(server: LiveServer, tmp_path: Path) -> None:
    source = server.create_project("parquet-source", "UTC")
    target = server.create_project("parquet-target", "UTC")
    rows = [
        event(
            "e",
            utc_s(2024, 10, 26, h),
            f"q{h}",
            n=h,
            ok=h % 2 == 0,
            tags=["a", h],
            label=f"ü{h}",
            ratio=h + 0.5,
        )
        for h in range(10)
    ]
    ingest(server, source, rows)
    first = _dump(server, source, tmp_path / "first")
    with connect(server, source) as client:
        export(client, ExportOptions(FIRST, LAST, tmp_path / "all.parquet", format="parquet", split="none"))
    with connect(server, target) as client:
        assert import_files(client, [tmp_path / "all.parquet"]).imported == 10
    assert _dump(server, target, tmp_path / "second") == first


def test_utc_parquet_export_has_a_timestamp_time_and_imports_back(server: LiveServer, tmp_path: Path) -> None:
    source = server.create_project("parquet-utc-source", "Europe/Berlin")
    target = server.create_project("parquet-utc-target", "Europe/Berlin")
    ingest(server, source, _events()[:40])
    first = _dump(server, source, tmp_path / "first")
    with connect(server, source) as client:
        export(
            client,
            ExportOptions(FIRST, LAST, tmp_path / "utc.parquet", format="parquet", split="none", utc=True),
        )
    table = pq.read_table(tmp_path / "utc.parquet")
    assert table.schema.field("time").type == pa.timestamp("ms", tz="UTC")
    assert table.column("time").to_pylist()[0] == dt.datetime.fromtimestamp(utc_s(2024, 10, 25), dt.UTC)
    with connect(server, target) as client:
        assert import_files(client, [tmp_path / "utc.parquet"]).imported == 40
    assert _dump(server, target, tmp_path / "second") == first


class _Recorded(SilentProgress):
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def begin(self, unit: str, total: int) -> None:
        self.calls.append(("begin", (unit, total)))

    def advance(self, amount: int) -> None:
        self.calls.append(("advance", amount))

    def unit_done(self, label: str, events: int, *, skipped: bool = False) -> None:
        self.calls.append(("done", label))


def _accepting(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={"num_records_imported": len(orjson.loads(gzip.decompress(request.content)))}
    )


def test_progress_is_in_bytes_read_so_one_file_moves_the_bar(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl.gz"
    lines = b"".join(
        orjson.dumps(event("e", utc_s(2024, 1, 1) + i, f"p{i}", blob=os.urandom(200).hex())) + b"\n"
        for i in range(20_000)
    )
    path.write_bytes(gzip.compress(lines))
    recorded = _Recorded()
    connection = Connection(
        "http://rawevents.test", Credentials("s"), transport=httpx.MockTransport(_accepting)
    )
    with connection as client:
        result = import_files(client, [path], ImportOptions(batch_events=1000), recorded)
    assert result.imported == 20_000
    size = path.stat().st_size
    assert recorded.calls[0] == ("begin", ("bytes", size))
    steps = [amount for name, amount in recorded.calls if name == "advance"]
    assert sum(steps) == size and len([s for s in steps if s]) >= 5  # the bar moves within the file
    assert recorded.calls[-1] == ("done", "one.jsonl.gz")
    # The terminal shows bytes of the total, with an ETA, not "0/1 files".
    screen = io.StringIO()
    progress = TerminalProgress(Console(file=screen, force_terminal=True, width=160))
    with Connection(
        "http://rawevents.test", Credentials("s"), transport=httpx.MockTransport(_accepting)
    ) as client:
        import_files(client, [path], ImportOptions(batch_events=1000), progress)
    shown = screen.getvalue()
    assert f"{human_bytes(size)}/{human_bytes(size)}" in shown and "ETA" in shown and "files" not in shown
