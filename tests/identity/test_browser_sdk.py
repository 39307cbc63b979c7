"""Identity merge with the official mixpanel-browser SDK in a real headless Chromium against a real
server (the pinned release that scripts/install-mixpanel-browser installs).

A page served from another local origin loads the SDK's UMD bundle and `mixpanel.init`s it with
the server as `api_host`, so every `/track` request is a real cross-origin XHR of the SDK's own
making. Each device is a fresh browser profile:
- device 1 (batched requests, the SDK's default) tracks 4 events anonymously, then
  `identify("user-42")` and 1 more event;
- device 2 (one request per event) does the same for the same user;
- device 3 (batched) tracks the same 4 events and never identifies.
In `simplified` mode (a new project's default) the anonymous events of devices 1 and 2 read as
user-42's, device 3's keep its `$device:` id, and unique counts count people.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from selenium import webdriver

from rawevents.projects import Project
from tests.explore import browser
from tests.export.helpers import basic, rows
from tests.live_server import LiveServer

PACKAGE = Path(__file__).parent / "node_modules" / "mixpanel-browser"
BUNDLE = PACKAGE / "dist" / "mixpanel.umd.js"  # UMD: defines window.mixpanel, no snippet needed
USER = "user-42"
ANONYMOUS = ("Viewed Page", "Viewed Pricing", "Added To Cart", "Viewed Page")
IDENTIFIED = "Purchased"
SHARED = "Viewed Page"  # tracked by every device
DELIVERY_TIMEOUT_S = 60

# The page records each XHR the SDK makes (URL, body, status, response) before loading the bundle.
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>mixpanel-browser</title>
<script>
window.__sent = [];
(function () {
  var open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.__request = {method: method, url: String(url), status: null, response: null};
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function (body) {
    var request = this.__request;
    request.body = body == null ? null : String(body);
    window.__sent.push(request);
    this.addEventListener('loadend', function () {
      request.status = this.status;
      request.response = this.responseText;
    });
    return send.apply(this, arguments);
  };
})();
</script>
<script src="/mixpanel.umd.js"></script>
</head><body>mixpanel-browser</body></html>
"""


def missing() -> str | None:
    if not BUNDLE.is_file():
        return f"{BUNDLE} not found: run `bash scripts/install-mixpanel-browser` (scripts/check does)"
    return browser.missing()


@dataclass
class Device:
    """What one browser profile did: its ids as the SDK reported them and the events it delivered."""

    device_id: str
    anonymous_id: str  # mixpanel.get_distinct_id() before identify: "$device:<device_id>"
    batch: bool
    identified: bool
    requests: list[dict[str, Any]]  # the XHRs the page recorded
    events: list[dict[str, Any]] = field(default_factory=list)  # decoded from the /track bodies

    @property
    def insert_ids(self) -> set[str]:
        return {event["properties"]["$insert_id"] for event in self.events}


@dataclass
class Traffic:
    project: Project
    devices: list[Device]  # devices 1 and 2 identify as USER; device 3 never does

    def by_insert_id(self) -> dict[str, tuple[Device, dict[str, Any]]]:
        return {e["properties"]["$insert_id"]: (d, e) for d in self.devices for e in d.events}


# ---- the page server and the devices ------------------------------------------------------------


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    problem = missing()
    if problem is not None:
        pytest.fail(problem)
    files = {"/": (PAGE, "text/html"), "/mixpanel.umd.js": (BUNDLE.read_bytes(), "text/javascript")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = files.get(urlsplit(self.path).path)
            body, kind = found or (b"not found", "text/plain")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _payload(body: str) -> Any:
    """What one request body carries: `data=` holding base64 JSON (the SDK's default) or JSON."""
    data = parse_qs(body)["data"][0]
    return orjson.loads(data if data.lstrip()[:1] in ("[", "{") else base64.b64decode(data))


def _track(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [request for request in sent if urlsplit(request["url"]).path.rstrip("/") == "/track"]


def _delivered(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the /track requests the server accepted: `1`, or `{"status": 1, "error": null}`
    to a batch (the SDK asks for verbose replies then)."""
    events: list[dict[str, Any]] = []
    for request in _track(sent):
        if request["status"] != 200:
            continue
        reply = orjson.loads(request["response"])
        assert reply == 1 or reply["status"] == 1, request
        payload = _payload(request["body"])
        events.extend(payload if isinstance(payload, list) else [payload])
    return events


def run_device(
    folder: Path,
    page: str,
    server: LiveServer,
    project: Project,
    *,
    batch: bool,
    identify: bool,
    expected: int,
) -> Device:
    """One fresh browser profile: init the SDK, track, maybe identify, and wait until the server
    has accepted `expected` events (a batched SDK flushes on a timer, so the browser stays open)."""
    driver = browser.launch(folder / "profile", folder / "downloads")
    try:
        driver.get(page)
        config = {
            "api_host": server.base_url,
            "debug": True,
            "batch_requests": batch,
            "batch_flush_interval_ms": 100,
        }
        driver.execute_script("mixpanel.init(arguments[0], arguments[1]);", project.token, config)
        for number, name in enumerate(ANONYMOUS):
            driver.execute_script("mixpanel.track(arguments[0], arguments[1]);", name, {"step": number})
        anonymous_id, device_id = driver.execute_script(
            "return [mixpanel.get_distinct_id(), mixpanel.get_property('$device_id')];"
        )
        if identify:
            driver.execute_script("mixpanel.identify(arguments[0]);", USER)
            driver.execute_script("mixpanel.track(arguments[0], {plan: 'pro'});", IDENTIFIED)
            assert driver.execute_script("return mixpanel.get_distinct_id();") == USER
        sent = _wait_delivery(driver, expected)
        return Device(device_id, anonymous_id, batch, identify, sent, _delivered(sent))
    finally:
        driver.quit()


def _wait_delivery(driver: webdriver.Chrome, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while True:
        sent: list[dict[str, Any]] = driver.execute_script("return window.__sent;")
        done = all(request["status"] is not None for request in sent)
        if done and len(_delivered(sent)) >= expected:
            return sent
        if time.monotonic() > deadline:
            console = "\n".join(entry["message"] for entry in driver.get_log("browser"))
            raise AssertionError(f"the SDK did not deliver {expected} events: {sent}\n{console}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def traffic(server: LiveServer, page_url: str, tmp_path_factory: pytest.TempPathFactory) -> Traffic:
    project = server.create_project("browser-sdk")
    per_device = len(ANONYMOUS) + 2  # the SDK's own `$identify` event, then IDENTIFIED
    devices = [
        run_device(
            tmp_path_factory.mktemp(f"device-{n}"),
            page_url,
            server,
            project,
            batch=batch,
            identify=identify,
            expected=per_device if identify else len(ANONYMOUS),
        )
        for n, batch, identify in ((1, True, True), (2, False, True), (3, True, False))
    ]
    traffic = Traffic(project, devices)
    _wait_stored(server, traffic)
    return traffic


# ---- reading the server -------------------------------------------------------------------------


def _days() -> dict[str, str]:
    today = dt.datetime.now(dt.UTC).date()  # the project is in UTC; the events are minutes old
    return {"from_date": (today - dt.timedelta(days=1)).isoformat(), "to_date": today.isoformat()}


def export(server: LiveServer, project: Project, **params: str) -> list[dict[str, Any]]:
    response = server.get("/api/2.0/export", params={**_days(), **params}, headers=basic(project.api_secret))
    assert response.status_code == 200, response.text
    return rows(response.text)


def _wait_stored(server: LiveServer, traffic: Traffic) -> None:
    wanted = set(traffic.by_insert_id())
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while True:
        stored = {event["properties"]["$insert_id"] for event in export(server, traffic.project)}
        if wanted <= stored:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not store {sorted(wanted - stored)}")
        time.sleep(0.2)


def segmentation(server: LiveServer, project: Project, event: str, kind: str) -> dict[str, float]:
    params = {**_days(), "event": orjson.dumps([event]).decode(), "type": kind, "unit": "day"}
    response = server.get("/api/query/segmentation", params=params, headers=basic(project.api_secret))
    assert response.status_code == 200, response.text
    values: dict[str, float] = response.json()["data"]["values"][event]
    return {day: n for day, n in values.items() if n}


def _day(event: dict[str, Any]) -> str:
    return dt.datetime.fromtimestamp(event["properties"]["time"], dt.UTC).date().isoformat()


# ---- tests --------------------------------------------------------------------------------------


def test_the_sdk_sends_device_ids_then_user_ids(traffic: Traffic) -> None:
    """What the pinned SDK sends: anonymous events as `$device:<uuid>` with `$device_id`, then, after
    identify, an `$identify` event and events carrying both `$user_id` and `$device_id`."""
    first, second, never = traffic.devices
    assert len({d.device_id for d in traffic.devices}) == 3
    version = orjson.loads((PACKAGE / "package.json").read_bytes())["version"]
    for device in traffic.devices:
        assert device.anonymous_id == "$device:" + device.device_id
        names = [event["event"] for event in device.events]
        assert names == ([*ANONYMOUS, "$identify", IDENTIFIED] if device.identified else list(ANONYMOUS))
        assert {event["properties"]["$lib_version"] for event in device.events} == {version}
        for event in device.events:
            props = event["properties"]
            assert props["token"] == traffic.project.token and props["$device_id"] == device.device_id
        for event in device.events[: len(ANONYMOUS)]:
            assert event["properties"]["distinct_id"] == device.anonymous_id
            assert "$user_id" not in event["properties"]
        for event in device.events[len(ANONYMOUS) :]:
            assert event["properties"]["distinct_id"] == event["properties"]["$user_id"] == USER
        if device.identified:  # the SDK's `$identify` names the id it leaves (Original ID Merge reads it)
            assert device.events[len(ANONYMOUS)]["properties"]["$anon_distinct_id"] == device.anonymous_id
    for device in traffic.devices:  # a batch is a JSON array, else one event per request
        payloads = [_payload(request["body"]) for request in _track(device.requests)]
        assert all(isinstance(payload, list) is device.batch for payload in payloads)
    assert (first.batch, second.batch, never.batch) == (True, False, True)


def test_export_shows_the_person_and_the_id_before_identity(server: LiveServer, traffic: Traffic) -> None:
    sent = traffic.by_insert_id()
    exported = export(server, traffic.project)
    assert {event["properties"]["$insert_id"] for event in exported} == set(sent)
    for event in exported:
        props = event["properties"]
        device, original = sent[props["$insert_id"]]
        as_sent = original["properties"]["distinct_id"]
        if device.identified:
            assert props["distinct_id"] == USER, event
        else:
            assert props["distinct_id"] == device.anonymous_id, event
        if props["distinct_id"] != as_sent:
            assert props["$distinct_id_before_identity"] == as_sent == device.anonymous_id, event
        else:
            assert "$distinct_id_before_identity" not in props, event
    merged = [e for e in exported if "$distinct_id_before_identity" in e["properties"]]
    assert len(merged) == 2 * len(ANONYMOUS)  # every anonymous event of devices 1 and 2


def test_export_as_ingested_shows_the_ids_as_sent(server: LiveServer, traffic: Traffic) -> None:
    sent = traffic.by_insert_id()
    exported = export(server, traffic.project, as_ingested="1")
    assert len(exported) == len(sent)
    for event in exported:
        props = event["properties"]
        _, original = sent[props["$insert_id"]]
        assert props["distinct_id"] == original["properties"]["distinct_id"], event
        assert "$distinct_id_before_identity" not in props, event


def test_unique_counts_count_people(server: LiveServer, traffic: Traffic) -> None:
    """SHARED was tracked by devices 1, 2 and 3: 3 ids as sent, 2 people (user-42 and device 3)."""
    people: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for device in traffic.devices:
        person = USER if device.identified else device.anonymous_id
        for event in device.events:
            people[event["event"]][_day(event)].add(person)
            totals[event["event"]][_day(event)] += 1
    for name in (SHARED, IDENTIFIED):
        assert segmentation(server, traffic.project, name, "unique") == {
            day: len(ids) for day, ids in people[name].items()
        }
        assert segmentation(server, traffic.project, name, "general") == totals[name]
    if len(people[SHARED]) == 1:  # the usual case: every event on one UTC day
        assert segmentation(server, traffic.project, SHARED, "unique") == {
            _day(traffic.devices[0].events[0]): 2
        }
        assert list(segmentation(server, traffic.project, IDENTIFIED, "unique").values()) == [1]
