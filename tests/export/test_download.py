"""`rawevents export`: one gzip JSONL per day from a live server, resumable, atomic."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from rawevents.cli import main
from rawevents.errors import RawEventsError
from rawevents.export.download import Source, export_days
from rawevents.projects import Project
from tests.export.helpers import basic, rows
from tests.live_server import LiveServer

DAY_MS = int(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def filled(server: LiveServer) -> tuple[LiveServer, Project]:
    project = server.create_project("download", "Europe/Berlin")
    events = [
        {
            "event": "e",
            "properties": {
                "distinct_id": f"d{i}",
                "time": DAY_MS + i * 3_600_000,
                "$insert_id": f"x{i}",
                "i": i,
            },
        }
        for i in range(60)  # 2.5 days of hourly events
    ]
    response = server.post("/import?strict=1", json=events, headers=basic(project.api_secret))
    assert response.status_code == 200, response.text
    return server, project


def test_one_file_per_day_then_resume(filled: tuple[LiveServer, Project], tmp_path: Path) -> None:
    server, project = filled
    source = Source.with_credentials(server.base_url, project.api_secret)
    first, last = dt.date(2024, 4, 30), dt.date(2024, 5, 4)
    results = export_days(source, first, last, tmp_path)
    assert [r.path.name for r in results] == [
        f"2024-0{d}.jsonl.gz" for d in ("4-30", "5-01", "5-02", "5-03", "5-04")
    ]
    # Berlin days (UTC+2): 14:00-23:00 on May 1, two full days, 00:00-01:00 on May 4.
    assert [r.rows for r in results] == [0, 10, 24, 24, 2]
    assert [len(rows(gzip.decompress(r.path.read_bytes()))) for r in results] == [0, 10, 24, 24, 2]
    # The files concatenated are the export of the whole range.
    whole = server.get(
        "/api/2.0/export?from_date=2024-04-30&to_date=2024-05-04", headers=basic(project.api_secret)
    ).content
    assert b"".join(gzip.decompress(r.path.read_bytes()) for r in results) == whole
    assert sum(r.rows or 0 for r in results) == 60
    assert not list(tmp_path.glob("*.tmp"))
    # Resume: existing days are skipped, a missing one is fetched again.
    results[2].path.unlink()
    again = export_days(source, first, last, tmp_path)
    assert [r.rows is None for r in again] == [True, True, False, True, True]
    assert b"".join(gzip.decompress(r.path.read_bytes()) for r in again) == whole


def test_cli(filled: tuple[LiveServer, Project], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server, project = filled
    argv = [
        "export",
        "--url",
        server.base_url,
        "--secret",
        project.api_secret,
        "--from",
        "2024-05-01",
        "--to",
        "2024-05-01",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert "2024-05-01: " in capsys.readouterr().out
    assert (tmp_path / "2024-05-01.jsonl.gz").exists()
    assert main([*argv[:-1], str(tmp_path)]) == 0
    assert "skipped (exists)" in capsys.readouterr().out
    bad = [
        "export",
        "--url",
        server.base_url,
        "--secret",
        "wrong",
        "--from",
        "2024-05-01",
        "--to",
        "2024-05-01",
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(bad) == 2
    assert "HTTP 401: Unauthorized, invalid project secret" in capsys.readouterr().err


def test_future_day_is_reported(filled: tuple[LiveServer, Project], tmp_path: Path) -> None:
    server, project = filled
    source = Source.with_credentials(server.base_url, project.api_secret)
    future = dt.date.today() + dt.timedelta(days=3)
    with pytest.raises(RawEventsError, match="HTTP 400: to_date cannot be later than today"):
        export_days(source, future, future, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind
