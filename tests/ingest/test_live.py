"""Real clients against a real server subprocess: the official `mixpanel` SDK (5.4.1) pointed at
rawevents by URL, and durability of acknowledged events across `kill -9`.

SDK results are read back through the Raw Export API; profiles (never exported) and the kill test
are verified by stopping the server and opening its store directly.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any

import mixpanel
import pytest
import requests
from mixpanel import BufferedConsumer, Consumer, Mixpanel, ServiceAccountCredentials

from rawevents.projects import Project
from tests.live_server import LiveServer

NOW = int(time.time())


def sdk_urls(live: LiveServer) -> dict[str, str]:
    """The SDK builds https://{api_host}/…; full http URLs per endpoint point it at the test server."""
    base = live.base_url
    return {
        "events_url": f"{base}/track",
        "people_url": f"{base}/engage",
        "import_url": f"{base}/import",
        "groups_url": f"{base}/groups",
    }


def exported(live: LiveServer, project: Project) -> list[dict[str, Any]]:
    today = dt.datetime.now(dt.UTC).date()
    response = live.get(
        "/api/2.0/export",
        params={"from_date": str(today - dt.timedelta(days=30)), "to_date": str(today)},
        auth=(project.api_secret, ""),
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line]


def stored_profiles(
    live: LiveServer, project_id: int, kinds: list[tuple[str, str]]
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Stop the server (it owns the store's files), read the profiles through the store
    contract, start it again."""
    live.stop()
    store = live.open_store()
    try:
        return {
            (kind, key, pid): props
            for kind, key in kinds
            for pid, props in store.profiles(project_id, kind, key)
        }
    finally:
        store.close()
        live.start()


def test_sdk_track(server: LiveServer) -> None:
    project = server.create_project("sdk-track")
    mp = Mixpanel(project.token, consumer=Consumer(**sdk_urls(server)))
    sent_at = time.time()
    mp.track("user-1", "Signed Up", {"plan": "pro", "long": "x" * 300})
    mp.track("user-2", "Viewed", {"n": 3})
    [first, second] = exported(server, project)
    assert first["event"] == "Signed Up" and second["event"] == "Viewed"
    props = first["properties"]
    assert props["distinct_id"] == "user-1" and props["plan"] == "pro" and props["mp_lib"] == "python"
    assert props["$lib_version"] == mixpanel.__version__
    assert len(props["long"]) == 255 and "token" not in props and "$import" not in props
    assert props["$mp_api_endpoint"] == "127.0.0.1"
    assert abs(props["time"] - sent_at) < 60  # the SDK's own clock, sent with the event


def test_sdk_batched_import_with_secret_and_retry_kept_once(server: LiveServer) -> None:
    project = server.create_project("sdk-import")
    consumer = BufferedConsumer(max_size=50, **sdk_urls(server))
    mp = Mixpanel(project.token, consumer=consumer)
    for i in range(120):
        mp.import_data(
            api_key=project.token,
            distinct_id=f"user-{i % 7}",
            event_name="Purchase",
            timestamp=NOW - 3 * 86400 + i,
            properties={"i": i},
            api_secret=project.api_secret,
        )
    consumer.flush()
    # A client retrying a batch it already sent (e.g. after a timeout): stored once.
    message = json.dumps(
        [
            {
                "event": "Retry",
                "properties": {"distinct_id": "r", "time": NOW - 100, "$insert_id": f"retry-{i}"},
            }
            for i in range(5)
        ]
    )
    direct = Consumer(**sdk_urls(server))
    for _ in range(3):
        direct.send("imports", message, api_key=(project.token, project.api_secret))
    rows = exported(server, project)
    purchases = [r for r in rows if r["event"] == "Purchase"]
    assert sorted(r["properties"]["i"] for r in purchases) == list(range(120))
    assert all(r["properties"]["$import"] is True for r in purchases)
    assert purchases[0]["properties"]["time"] == NOW - 3 * 86400
    assert sorted(r["properties"]["$insert_id"] for r in rows if r["event"] == "Retry") == [
        f"retry-{i}" for i in range(5)
    ]


def test_sdk_import_with_service_account(server: LiveServer) -> None:
    project = server.create_project("sdk-sa")
    account = server.registry.create_service_account(project.project_id, "sdk")
    credentials = ServiceAccountCredentials(account.username, account.secret, str(project.project_id))
    consumer = BufferedConsumer(max_size=50, credentials=credentials, **sdk_urls(server))
    mp = Mixpanel(project.token, consumer=consumer)
    for i in range(60):
        mp.import_data(api_key=None, distinct_id="sa-user", event_name="Imported", timestamp=NOW - 7200 + i)
    consumer.flush()
    assert len(exported(server, project)) == 60

    # Wrong secret: the SDK surfaces the error, which names the service account
    bad = ServiceAccountCredentials(account.username, "wrong", str(project.project_id))
    mp_bad = Mixpanel(project.token, consumer=Consumer(credentials=bad, **sdk_urls(server)))
    with pytest.raises(mixpanel.MixpanelException, match="invalid service account credentials"):
        mp_bad.import_data(api_key=None, distinct_id="x", event_name="Nope", timestamp=NOW - 60)


def test_sdk_people_and_groups(fresh_server: LiveServer) -> None:
    project = fresh_server.create_project("sdk-people")
    mp = Mixpanel(project.token, consumer=Consumer(**sdk_urls(fresh_server)))
    mp.people_set("user-1", {"name": "Ann", "plan": "free"})
    mp.people_set_once("user-1", {"name": "Bob", "first_seen": "today"})
    mp.people_increment("user-1", {"logins": 2})
    mp.people_increment("user-1", {"logins": 3})
    mp.people_append("user-1", {"pages": "home"})
    mp.people_union("user-1", {"tags": ["a", "b"]})
    mp.people_unset("user-1", ["plan"])
    mp.people_set("user-2", {"name": "Gone"})
    mp.people_delete("user-2")
    mp.group_set("company", "acme", {"tier": "gold"})
    profiles = stored_profiles(fresh_server, project.project_id, [("user", ""), ("group", "company")])
    user = profiles[("user", "", "user-1")]
    assert {k: v for k, v in user.items() if k != "$last_seen"} == {
        "name": "Ann",
        "first_seen": "today",
        "logins": 5,
        "pages": ["home"],
        "tags": ["a", "b"],
    }
    assert ("user", "", "user-2") not in profiles
    assert profiles[("group", "company", "acme")]["tier"] == "gold"


def test_acknowledged_events_survive_kill_9(fresh_server: LiveServer) -> None:
    project = fresh_server.create_project("durable")
    base = fresh_server.base_url
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def importer(worker: int) -> None:
        session = requests.Session()
        batch_no = 0
        while not stop.is_set():
            ids = [f"w{worker}-b{batch_no}-{i}" for i in range(200)]
            batch = [
                {"event": "Durable", "properties": {"time": NOW - 60, "distinct_id": "d", "$insert_id": x}}
                for x in ids
            ]
            try:
                response = session.post(
                    base + "/import?strict=1", json=batch, auth=(project.api_secret, ""), timeout=10
                )
            except requests.RequestException:
                return
            if response.status_code == 200:
                with lock:
                    acked.extend(ids)
            batch_no += 1

    def tracker() -> None:
        session = requests.Session()
        n = 0
        while not stop.is_set():
            insert_id = f"track-{n}"
            event = {
                "event": "T",
                "properties": {"token": project.token, "distinct_id": "t", "$insert_id": insert_id},
            }
            try:
                response = session.post(base + "/track", data={"data": json.dumps(event)}, timeout=10)
            except requests.RequestException:
                return
            if response.content == b"1":
                with lock:
                    acked.append(insert_id)
            n += 1

    threads = [threading.Thread(target=importer, args=(w,)) for w in range(3)]
    threads.append(threading.Thread(target=tracker))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 3000 and any(x.startswith("track-") for x in acked):
                break
        time.sleep(0.01)
    fresh_server.kill9()  # while requests are in flight
    stop.set()
    for thread in threads:
        thread.join()
    with lock:
        acknowledged = set(acked)
    assert len(acknowledged) >= 3000

    store = fresh_server.open_store()
    try:
        rows = store.query(  # type: ignore[attr-defined]
            "SELECT insert_id FROM events WHERE project_id = ?", [project.project_id]
        )
    finally:
        store.close()
    present = {r[0] for r in rows}
    assert acknowledged <= present
    assert len(rows) == len(present)  # and nothing stored twice
    fresh_server.start()  # the fixture stops it afterwards
