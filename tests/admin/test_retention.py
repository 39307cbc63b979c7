"""Retention drops exactly the expired calendar days of a project, by command and periodically."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from rawevents import timeutil
from rawevents.admin.tasks import retention_cutoff_ms
from rawevents.projects import Project
from tests.admin.helpers import cli_json, event, export, import_events, live, wait_for
from tests.live_server import LiveServer

BERLIN = "Europe/Berlin"
DAYS = 10


def _seed(server: LiveServer, project: Project) -> dt.date:
    """Events at the first second, noon and last second of each of the last DAYS local days
    (today: its first second only, the rest is the future). Returns today."""
    assert project.api_secret is not None
    zone = ZoneInfo(project.timezone)
    today = timeutil.today(zone)
    events = []
    for back in range(DAYS):
        day = today - dt.timedelta(days=back)
        start = timeutil.day_start_ms(zone, day) // 1000
        end = timeutil.day_start_ms(zone, day + dt.timedelta(days=1)) // 1000 - 1
        for n, second in enumerate([start] if back == 0 else [start, start + 12 * 3600, end]):
            events.append(event(f"u{n}", "e", second, f"{day}-{n}"))
    import_events(server, project.api_secret, events)
    return today


def _local_day(line: bytes) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(seconds=orjson.loads(line)["properties"]["time"])


def _export_all(server: LiveServer, project: Project, today: dt.date) -> list[bytes]:
    assert project.api_secret is not None
    first = today - dt.timedelta(days=DAYS + 1)
    return export(server, project.api_secret, first.isoformat(), today.isoformat()).splitlines(keepends=True)


@pytest.mark.server
def test_retention_apply_drops_exactly_the_expired_days(tmp_path: Path) -> None:
    data = str(tmp_path)
    with live(tmp_path) as server:
        project = server.create_project("kept-3-days", BERLIN)
        untouched = server.create_project("forever", BERLIN)
        today = _seed(server, project)
        _seed(server, untouched)
        before = _export_all(server, project, today)
        assert len(before) == 1 + 3 * (DAYS - 1)

        assert (
            cli_json(
                "project",
                "set-retention",
                "--project",
                str(project.project_id),
                "--days",
                "3",
                "--data-dir",
                data,
            )["retention_days"]
            == 3
        )
        dropped = cli_json("retention", "apply", "--data-dir", data)  # handed to the running server
        oldest_kept = today - dt.timedelta(days=3)
        expected = [line for line in before if _local_day(line) >= oldest_kept]
        assert dropped == {str(project.project_id): len(before) - len(expected)}
        assert _export_all(server, project, today) == expected
        assert {_local_day(line) for line in expected} == {today - dt.timedelta(days=k) for k in range(4)}
        assert len(_export_all(server, untouched, today)) == len(before)
        # Applying again finds nothing more to drop.
        assert cli_json("retention", "apply", "--project", str(project.project_id), "--data-dir", data) == {
            str(project.project_id): 0
        }


@pytest.mark.server
def test_the_server_applies_retention_periodically(tmp_path: Path) -> None:
    with live(tmp_path, RAWEVENTS_RETENTION_INTERVAL_SECONDS="1") as server:
        project = server.create_project("periodic", BERLIN)
        cli_json(
            "project",
            "set-retention",
            "--project",
            str(project.project_id),
            "--days",
            "1",
            "--data-dir",
            str(tmp_path),
        )
        today = _seed(server, project)
        yesterday = today - dt.timedelta(days=1)
        wait_for(
            lambda: {_local_day(line) for line in _export_all(server, project, today)} == {yesterday, today}
        )
        assert len(_export_all(server, project, today)) == 1 + 3


def test_cutoff_is_local_midnight_of_the_oldest_kept_day() -> None:
    # 2024-03-31 is the spring-forward day in Berlin: the cutoff is still local midnight.
    project = Project(1, "p", "t", None, BERLIN, retention_days=2)
    now_ms = int(dt.datetime(2024, 4, 2, 0, 30, tzinfo=ZoneInfo(BERLIN)).timestamp() * 1000)
    cutoff = retention_cutoff_ms(project, now_ms)
    assert cutoff == int(dt.datetime(2024, 3, 31, 0, 0, tzinfo=ZoneInfo(BERLIN)).timestamp() * 1000)
    assert cutoff == int(dt.datetime(2024, 3, 30, 23, 0, tzinfo=dt.UTC).timestamp() * 1000)
