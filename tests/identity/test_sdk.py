"""Identity merge with the official Python SDK (`mixpanel`) against a real server, on every store:
server-side Simplified ID Merge traffic (`$device_id`, then `$user_id` with `$device_id`), and an
Original ID Merge project (`$identify` and `$create_alias` through /track, `$merge` through /import,
refused through /track). Read back through the export (resolved and as ingested), segmentation,
the identity mappings table and the project endpoint."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from typing import Any

import mixpanel
import pytest
from mixpanel import Consumer, Mixpanel

from rawevents.identity import BEFORE_IDENTITY
from rawevents.projects import Project
from tests.export.helpers import basic, rows
from tests.live_server import LiveServer

NOW = int(time.time())
USER = "user-42"
ANON = "5d1c7f2e-9a3b-4c6d-8e0f-1a2b3c4d5e6f"  # what an Original ID Merge SDK generates: a UUID


def sdk_urls(live: LiveServer) -> dict[str, str]:
    base = live.base_url
    return {"events_url": f"{base}/track", "import_url": f"{base}/import", "people_url": f"{base}/engage"}


def _days() -> dict[str, str]:
    today = dt.datetime.now(dt.UTC).date()
    return {"from_date": str(today - dt.timedelta(days=30)), "to_date": str(today)}


def export(server: LiveServer, project: Project, **params: str) -> list[dict[str, Any]]:
    response = server.get("/api/2.0/export", params={**_days(), **params}, headers=basic(project.api_secret))
    assert response.status_code == 200, response.text
    return rows(response.text)


def ids(lines: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    """`$insert_id` → (`distinct_id`, `$distinct_id_before_identity`) of each exported line."""
    return {
        line["properties"]["$insert_id"]: (
            line["properties"]["distinct_id"],
            line["properties"].get(BEFORE_IDENTITY),
        )
        for line in lines
    }


def get_json(server: LiveServer, project: Project, path: str, **params: str) -> Any:
    response = server.get(path, params=params, headers=basic(project.api_secret))
    assert response.status_code == 200, response.text
    return response.json()


def segmentation(server: LiveServer, project: Project, event: str, kind: str) -> dict[str, float]:
    params = {**_days(), "event": json.dumps([event]), "type": kind, "unit": "day"}
    values: dict[str, float] = get_json(server, project, "/api/query/segmentation", **params)["data"][
        "values"
    ][event]
    return {day: n for day, n in values.items() if n}


def people_per_day(lines: list[dict[str, Any]], event: str) -> dict[str, int]:
    """What `unique` should count: the exported (canonical) ids of the event's lines, per day."""
    people: dict[str, set[str]] = defaultdict(set)
    for line in lines:
        if line["event"] == event:
            day = dt.datetime.fromtimestamp(line["properties"]["time"], dt.UTC).date().isoformat()
            people[day].add(line["properties"]["distinct_id"])
    return {day: len(found) for day, found in people.items()}


class Sent:
    """An SDK client that remembers the `$insert_id` of each event it sends, by a label."""

    def __init__(self, server: LiveServer, project: Project) -> None:
        self.project = project
        self.consumer = Consumer(**sdk_urls(server))
        self.mp = Mixpanel(project.token, consumer=self.consumer)
        self.labels: dict[str, str] = {}

    def track(self, label: str, distinct_id: str, event: str, **props: Any) -> None:
        self.labels[label] = props["$insert_id"] = f"{label}-{time.time_ns()}"
        self.mp.track(distinct_id, event, props)

    def imported(self, label: str, distinct_id: str, event: str, timestamp: int, **props: Any) -> None:
        self.labels[label] = props["$insert_id"] = f"{label}-{time.time_ns()}"
        self.mp.import_data(
            self.project.token, distinct_id, event, timestamp, props, api_secret=self.project.api_secret
        )

    def send_raw(self, endpoint: str, event: str, **props: Any) -> None:
        """An event as SDKs' own helpers build it, through the SDK's consumer (`mp.alias` always
        posts to api.mixpanel.com, so `$create_alias` goes this way)."""
        message = {"event": event, "properties": {"token": self.project.token, "time": time.time(), **props}}
        if endpoint == "imports":
            self.consumer.send(
                endpoint, json.dumps(message), api_key=self.project.token, api_secret=self.project.api_secret
            )
        else:
            self.consumer.send(endpoint, json.dumps(message))

    def of(self, exported: dict[str, tuple[str, str | None]]) -> dict[str, tuple[str, str | None]]:
        """The exported ids by label."""
        return {label: exported[insert_id] for label, insert_id in self.labels.items()}


def test_simplified_server_side(server: LiveServer) -> None:
    project = server.create_project("identity-sdk-simplified")
    sdk = Sent(server, project)
    sdk.track("d1-a", "", "page", **{"$device_id": "D1"})  # mp.track("", …): the device is the id
    sdk.track("d1-b", "", "page", **{"$device_id": "D1"})
    sdk.track("d2-a", "", "page", **{"$device_id": "D2"})
    # an event of D4 from three days ago, imported before D4 is identified (a late mobile queue)
    sdk.imported("d4-old", "", "page", NOW - 3 * 86400, **{"$device_id": "D4"})
    sdk.track("d1-login", "", "login", **{"$device_id": "D1", "$user_id": USER})
    sdk.track("d1-after", "", "page", **{"$device_id": "D1", "$user_id": USER})
    sdk.track("d3", "", "page", **{"$device_id": "D3"})  # a device that never identifies
    sdk.track("d2-login", "", "login", **{"$device_id": "D2", "$user_id": USER})  # a second device
    sdk.track("d2-b", "", "page", **{"$device_id": "D2"})  # anonymous again, after the link
    sdk.track("d4-login", "", "login", **{"$device_id": "D4", "$user_id": USER})
    # another user on D1: stored under that user, and D1 stays with its first user
    sdk.track("d1-other", "", "login", **{"$device_id": "D1", "$user_id": "user-7"})
    sdk.track("server", USER, "renewed", **{"$user_id": USER})  # a backend event: the user only

    resolved = export(server, project)
    d1, d2, d4 = (("user-42", f"$device:{d}") for d in ("D1", "D2", "D4"))
    assert sdk.of(ids(resolved)) == {
        "d1-a": d1,
        "d1-b": d1,
        "d2-a": d2,
        "d4-old": d4,
        "d1-login": (USER, None),
        "d1-after": (USER, None),
        "d3": ("$device:D3", None),
        "d2-login": (USER, None),
        "d2-b": d2,
        "d4-login": (USER, None),
        "d1-other": ("user-7", None),
        "server": (USER, None),
    }
    assert all(line["properties"]["mp_lib"] == "python" for line in resolved)
    # as ingested: the ids each event was stored under, nothing added
    assert sdk.of(ids(export(server, project, as_ingested="1"))) == {
        "d1-a": ("$device:D1", None),
        "d1-b": ("$device:D1", None),
        "d2-a": ("$device:D2", None),
        "d4-old": ("$device:D4", None),
        "d1-login": (USER, None),
        "d1-after": (USER, None),
        "d3": ("$device:D3", None),
        "d2-login": (USER, None),
        "d2-b": ("$device:D2", None),
        "d4-login": (USER, None),
        "d1-other": ("user-7", None),
        "server": (USER, None),
    }

    # `unique` counts people: user-42 (D1, D2, D4) and D3's anonymous visitor
    expected = people_per_day(resolved, "page")
    assert sorted(expected.values()) == [1, 2]  # D4's old event: a day of its own
    assert segmentation(server, project, "page", "unique") == expected
    assert sum(segmentation(server, project, "page", "general").values()) == 7
    assert segmentation(server, project, "login", "unique") == people_per_day(resolved, "login")

    mappings = get_json(server, project, "/api/rawevents/identity/mappings")
    assert mappings["id_merge"] == "simplified"
    assert mappings["results"] == [
        {"distinct_id": f"$device:{d}", "resolved_distinct_id": USER} for d in ("D1", "D2", "D4")
    ]
    shown = get_json(server, project, "/api/rawevents/project")
    assert (shown["project_id"], shown["id_merge"]) == (project.project_id, "simplified")


@pytest.fixture
def original_project(server: LiveServer) -> Project:
    registry = server.registry
    try:
        return registry.create_project("identity-sdk-original", "UTC", id_merge="original")
    finally:
        registry.close()


def test_original_identify_alias_and_merge(server: LiveServer, original_project: Project) -> None:
    project = original_project
    sdk = Sent(server, project)
    sdk.track("anon-1", ANON, "page")
    sdk.track("anon-2", ANON, "page")
    sdk.track("identify", "user-9", "$identify", **{"$anon_id": ANON, "$identified_id": "user-9"})
    sdk.track("bought", "user-9", "buy")
    sdk.track("other", "user-10", "page")
    # an `$anon_id` that is no anonymous id is left alone (only $merge joins identified ids)
    sdk.track("legacy", "legacy-id", "page")
    sdk.track(
        "identify-legacy", "user-11", "$identify", **{"$anon_id": "legacy-id", "$identified_id": "user-11"}
    )
    sdk.send_raw("events", "$create_alias", distinct_id="user-9", alias="nick")
    sdk.track("nick", "nick", "page")

    # $merge through /track: the record fails (the SDK raises with the server's message), nothing merges
    with pytest.raises(mixpanel.MixpanelException, match="only by /import"):
        sdk.send_raw("events", "$merge", **{"$distinct_ids": ["user-9", "user-10"]})
    assert sdk.of(ids(export(server, project)))["other"] == ("user-10", None)
    assert [line["event"] for line in export(server, project)].count("$merge") == 0

    # through /import with the project's secret
    sdk.imported("merge", "user-9", "$merge", NOW, **{"$distinct_ids": ["user-9", "user-10"]})

    resolved = export(server, project)
    assert sdk.of(ids(resolved)) == {
        "anon-1": ("user-9", ANON),
        "anon-2": ("user-9", ANON),
        "identify": ("user-9", None),
        "bought": ("user-9", None),
        "other": ("user-9", "user-10"),  # the merge keeps the larger cluster's canonical id
        "legacy": ("legacy-id", None),
        "identify-legacy": ("user-11", None),
        "nick": ("user-9", "nick"),
        "merge": ("user-9", None),
    }
    [merge] = [line for line in resolved if line["event"] == "$merge"]
    assert merge["properties"]["$distinct_ids"] == ["user-9", "user-10"]
    as_ingested = sdk.of(ids(export(server, project, as_ingested="1")))
    assert as_ingested["anon-1"] == (ANON, None) and as_ingested["other"] == ("user-10", None)
    assert as_ingested["nick"] == ("nick", None)

    assert segmentation(server, project, "page", "unique") == people_per_day(resolved, "page")
    assert sorted(people_per_day(resolved, "page").values()) == [2]  # user-9 and legacy-id

    mappings = get_json(server, project, "/api/rawevents/identity/mappings")
    assert mappings["id_merge"] == "original"
    assert mappings["results"] == [
        {"distinct_id": d, "resolved_distinct_id": "user-9"} for d in sorted([ANON, "nick", "user-10"])
    ]
    assert get_json(server, project, "/api/rawevents/project")["id_merge"] == "original"


def test_the_sdk_merge_helper(server: LiveServer, original_project: Project) -> None:
    """`mp.merge()` sends Mixpanel's documented `$merge` payload to /import: `$distinct_ids` and the
    token, no `time` and no `$insert_id` (docs.mixpanel.com/reference/identity-merge)."""
    project = original_project
    sdk = Sent(server, project)
    sdk.track("a", "user-1", "page")
    sdk.track("b", "user-2", "page")
    sdk.mp.merge(project.token, "user-1", "user-2", api_secret=project.api_secret)
    assert sdk.of(ids(export(server, project))) == {"a": ("user-1", None), "b": ("user-1", "user-2")}
    [merge] = [line for line in export(server, project) if line["event"] == "$merge"]
    assert merge["properties"]["distinct_id"] == "user-1"  # the first of `$distinct_ids`
