"""Generated traffic for the explorer tests: 30 days of background events from many users and a
spike from three users inside one hour, ingested through `/import` like any client would."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import requests

from tests.export.helpers import basic

EVENT_NAMES = ("page_view", "signup", "purchase")
OSES = ("iOS", "Android", "Windows", "macOS")
SPIKE_USERS = {"spike-a": 60, "spike-b": 45, "spike-c": 30}
# The spike's 4 devices: each user's first events are sent anonymously (Simplified ID Merge: only
# `$device_id`, stored as `$device:<id>`), the later ones after login carry `$user_id` too, and
# link the device: the explorer shows every one of them under the user.
SPIKE_DEVICES = {"spike-a": ("dev-a1", "dev-a2"), "spike-b": ("dev-b",), "spike-c": ("dev-c",)}
ANONYMOUS_SHARE = 0.4
SPIKE_CAMPAIGN = "spike-campaign"
SPIKE_EVENT = "install"
SPIKE_HOUR = 14  # project-local hour of the spike
BATCH = 2000


@dataclass
class Traffic:
    zone: ZoneInfo
    today: dt.date  # project-local
    spike_day: dt.date
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def spike_window(self) -> tuple[int, int]:
        """[start, end) UTC ms of the spike's local hour."""
        start = dt.datetime.combine(self.spike_day, dt.time(SPIKE_HOUR), self.zone)
        start_ms = int(start.timestamp() * 1000)
        return start_ms, start_ms + 3_600_000

    def in_window(
        self, distinct_id: str | None = None, window: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]:
        """Events in `window` (UTC ms, default the spike's hour), of one user if given."""
        start, end = window or self.spike_window
        return [
            e
            for e in self.events
            if start <= e["properties"]["time"] < end and (distinct_id is None or person(e) == distinct_id)
        ]


def generate(zone: str, *, per_day: int = 120, seed: int = 7) -> Traffic:
    tz = ZoneInfo(zone)
    today = dt.datetime.now(tz).date()
    traffic = Traffic(tz, today, today - dt.timedelta(days=10))
    rng = random.Random(seed)
    for back in range(29, 0, -1):
        day = today - dt.timedelta(days=back)
        start = int(dt.datetime.combine(day, dt.time(), tz).timestamp() * 1000)
        for n in range(per_day):
            moment = start + rng.randrange(86_400_000)
            traffic.events.append(
                _event(rng.choice(EVENT_NAMES), moment, f"user-{rng.randrange(200):03d}", rng.choice(OSES), n)
            )
    window_start, _ = traffic.spike_window
    for user, count in SPIKE_USERS.items():
        moments = sorted(
            window_start + 300_000 + rng.randrange(3_000_000) for _ in range(count)
        )  # 14:05-14:55
        devices = SPIKE_DEVICES[user]
        for n, moment in enumerate(moments):
            device = devices[n % len(devices)]
            anonymous = n < ANONYMOUS_SHARE * count
            event = _event(SPIKE_EVENT, moment, f"$device:{device}" if anonymous else user, "Android", n)
            event["properties"].update({"$device_id": device, "utm_campaign": SPIKE_CAMPAIGN})
            if not anonymous:
                event["properties"]["$user_id"] = user
            traffic.events.append(event)
    return traffic


def person(event: dict[str, Any]) -> str:
    """The canonical id the server shows for an event: its user, also for a device's anonymous
    events (every spike device logs in during the spike)."""
    props = event["properties"]
    for user, devices in SPIKE_DEVICES.items():
        if props.get("$device_id") in devices:
            return user
    return str(props["distinct_id"])


def _event(name: str, time_ms: int, user: str, os_name: str, n: int) -> dict[str, Any]:
    return {
        "event": name,
        "properties": {
            "time": time_ms,
            "distinct_id": user,
            "$insert_id": f"{user.replace('$device:', 'd-')}-{time_ms}-{n}",
            "$os": os_name,
        },
    }


def ingest(base_url: str, secret: str, events: list[dict[str, Any]]) -> None:
    for first in range(0, len(events), BATCH):
        response = requests.post(
            f"{base_url}/import?strict=1",
            json=events[first : first + BATCH],
            headers=basic(secret),
            timeout=60,
        )
        assert response.status_code == 200, response.text
