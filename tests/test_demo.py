"""`serve --demo` on an empty data directory tells the story: 30 days of traffic with a spike
of 10,000 events in one hour from 3 people on 4 devices of one campaign, found through the public
query and export APIs exactly as the explorer finds it."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from rawevents import demo
from tests.live_server import free_port, serve_command

pytestmark = pytest.mark.server


class Demo:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [*serve_command("--demo", "--data-dir", str(data_dir)), "--port", str(self.port)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "RAWEVENTS_INGEST_PROCESSES": "0"},
        )
        self.lines: list[str] = []
        assert self.process.stderr is not None
        while not (line := self.process.stderr.readline()).startswith("rawevents listening"):
            assert line, "".join(self.lines)
            self.lines.append(line)
        # Then the hint lines: all of them are printed right after "listening".
        count = 4 if any(line.startswith("rawevents demo: writing") for line in self.lines) else 1
        self.hints = [self.process.stderr.readline().rstrip("\n") for _ in range(count)]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-data")


@pytest.fixture(scope="module")
def first_run(data_dir: Path) -> Iterator[tuple[Demo, str]]:
    server = Demo(data_dir)
    try:
        created = json.loads(server.lines[0].split(": ", 1)[1])
        yield server, created["api_secret"]
    finally:
        server.stop()


def _get(server: Demo, secret: str, path: str, **params: Any) -> Any:
    response = requests.get(server.base_url + path, params=params, auth=(secret, ""), timeout=120)
    assert response.status_code == 200, response.text
    return response.json() if "export" not in path else response.content


def _window_where(start_ms: int, hours: int = 1) -> str:
    start = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC).replace(tzinfo=None)
    end = start + dt.timedelta(hours=hours)
    return (
        f'properties["$time"] >= datetime("{start.isoformat()}") and '
        f'properties["$time"] < datetime("{end.isoformat()}")'
    )


def test_the_hints_name_the_explorer_the_secret_and_the_spike(first_run: tuple[Demo, str]) -> None:
    server, secret = first_run
    written, explore, story, how = server.hints
    assert written.startswith("rawevents demo: wrote 110,000 events of the last 30 days and ")
    url = f"http://127.0.0.1:{server.port}/explore"
    assert explore == f"rawevents demo: open {url} and sign in with the project secret {secret}"
    spike = dt.datetime.fromtimestamp(
        demo.spike_start_ms(int(dt.datetime.now(dt.UTC).timestamp() * 1000)) / 1000, dt.UTC
    )
    assert story == (
        f"rawevents demo: the story: on {spike:%Y-%m-%d} at 14:00 UTC, 10,000 events in one hour came from"
        ' 3 people on 4 devices, all from utm_campaign "spring-giveaway"'
    )
    assert how.startswith("rawevents demo: in the explorer, drag across that spike")


def test_the_spike_is_the_tallest_hour_and_its_3_people_are_on_top(first_run: tuple[Demo, str]) -> None:
    server, secret = first_run
    today = dt.datetime.now(dt.UTC).date()
    days = {"from_date": (today - dt.timedelta(days=29)).isoformat(), "to_date": today.isoformat()}
    hourly = _get(server, secret, "/api/query/segmentation", **days, unit="hour", on='"all"', limit=1)
    counts = hourly["data"]["values"]["all"]
    assert sum(counts.values()) == 110_000  # every event is in the 30 days
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    spike_label, spike_count = ranked[0]
    spike = dt.datetime.fromisoformat(spike_label).replace(tzinfo=dt.UTC)
    assert spike.hour == demo.SPIKE_HOUR and (today - spike.date()).days == demo.SPIKE_DAYS_AGO
    assert spike_count > 10_000 and ranked[1][1] < spike_count / 10  # it stands out

    start_ms = int(spike.timestamp() * 1000)
    window = {"from_date": spike.date().isoformat(), "to_date": spike.date().isoformat()}
    where = _window_where(start_ms)
    top = _get(
        server,
        secret,
        "/api/query/segmentation",
        **window,
        unit="day",
        on='properties["distinct_id"]',
        where=where,
        limit=5,
    )["data"]["values"]
    totals = Counter({user: sum(by_day.values()) for user, by_day in top.items()})
    people = {person.user_id: person.events for person in demo.SPIKE_PEOPLE}
    assert dict(totals.most_common(3)) == people  # canonical ids: the devices' events count as theirs
    assert totals.most_common(4)[3][1] < 100  # everyone else: ordinary traffic

    # The export of those 3 people in that hour: 10,000 events of one campaign on 4 devices, most
    # of them sent before the device logged in.
    clause = " or ".join(f'properties["distinct_id"] == "{user}"' for user in people)
    body = _get(server, secret, "/api/2.0/export", **window, where=f"({clause}) and {where}")
    rows = [orjson.loads(line) for line in body.splitlines()]
    assert len(rows) == 10_000
    assert {row["properties"]["utm_campaign"] for row in rows} == {demo.CAMPAIGN}
    devices = {row["properties"]["$device_id"] for row in rows}
    assert len(devices) == 4
    before = Counter(row["properties"].get("$distinct_id_before_identity") for row in rows)
    assert {f"$device:{device}" for device in devices} == set(before) - {None}
    assert sum(n for key, n in before.items() if key is not None) > 1_000  # identified later

    # Their profiles are there for the explorer's user view.
    profiles = _get(server, secret, "/api/2.0/engage", distinct_ids=json.dumps(sorted(people)))["results"]
    names = {p["$distinct_id"]: p["$properties"]["$name"] for p in profiles}
    assert names == {person.user_id: person.name for person in demo.SPIKE_PEOPLE}


def test_the_ordinary_traffic_has_the_promised_shapes(first_run: tuple[Demo, str]) -> None:
    server, secret = first_run
    today = dt.datetime.now(dt.UTC).date()
    days = {"from_date": (today - dt.timedelta(days=29)).isoformat(), "to_date": today.isoformat()}
    libs = _get(server, secret, "/api/query/segmentation", **days, unit="month", on='properties["mp_lib"]')
    assert set(libs["data"]["values"]) == {"web", "iphone", "android"}
    page = _get(
        server,
        secret,
        "/api/query/events/page",
        **days,
        limit=1000,
        where='defined(properties["$distinct_id_before_identity"]) and not defined(properties["coupon"])',
    )
    assert len(page["results"]) == 1000  # anonymous visitors identified later, outside the spike
    late = _get(
        server,
        secret,
        "/api/query/events/page",
        **days,
        limit=1000,
        where='properties["$time"] < datetime(properties["$mp_api_timestamp_ms"] - 7200000)',
    )
    assert late["results"]  # mobile events that arrived hours late


def test_a_second_start_keeps_the_data_and_still_points_at_the_explorer(
    first_run: tuple[Demo, str], data_dir: Path
) -> None:
    server, secret = first_run
    server.stop()
    again = Demo(data_dir)
    try:
        assert not any("writing" in line for line in again.lines)
        assert again.hints == [
            f"rawevents demo: open http://127.0.0.1:{again.port}/explore and sign in with the demo"
            " project's secret (printed when it was created)"
        ]
        today = dt.datetime.now(dt.UTC).date()
        total = _get(
            again,
            secret,
            "/api/query/segmentation",
            unit="month",
            on='"all"',
            limit=1,
            from_date=(today - dt.timedelta(days=29)).isoformat(),
            to_date=today.isoformat(),
        )
        assert sum(total["data"]["values"]["all"].values()) == 110_000
    finally:
        again.stop()
