"""The explorer in a real headless Chromium against a real server: find a spike by clicks, see who
caused it, pick those users, export exactly their events; the state survives a reload; `where`
errors are shown next to the expression and recovered from; the page fits 400 px."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By

from rawevents.projects import Project
from tests.explore import seed
from tests.explore.page import ExplorerPage
from tests.live_server import LiveServer

ZONE = "Europe/Berlin"
SPIKE_USERS = list(seed.SPIKE_USERS)


@pytest.fixture(scope="module")
def spiky(server: LiveServer) -> tuple[Project, seed.Traffic]:
    project = server.create_project("explorer-spike", ZONE)
    traffic = seed.generate(ZONE)
    seed.ingest(server.base_url, project.api_secret, traffic.events)
    profile = {
        "$token": project.token,
        "$distinct_id": "spike-a",
        "$set": {"$name": "Ada Spike", "plan": "free"},
    }
    response = requests.post(f"{server.base_url}/engage?verbose=1", json=[profile], timeout=30)
    assert response.json()["status"] == 1, response.text
    return project, traffic


@pytest.fixture
def page(driver: webdriver.Chrome, server: LiveServer) -> Iterator[ExplorerPage]:
    explorer = ExplorerPage(driver, server.base_url)
    explorer.open()
    yield explorer
    driver.set_window_size(1280, 1000)


def _wait_download(folder: Path, before: set[Path]) -> Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = [p for p in folder.glob("*.jsonl") if p not in before]
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.1)
    raise AssertionError("no download appeared")


def _select_spike_hour(page: ExplorerPage, traffic: seed.Traffic) -> None:
    """From the default 30 days: click the tallest day, zoom in, click the tallest hour."""
    assert page.find("unit").text == "day"
    day = page.tallest()
    assert day.label == traffic.spike_day.isoformat()
    page.click_bar(day.bucket)
    assert page.find("window-text").text == f"Selection: {traffic.spike_day} (project time)"
    page.find("zoom-in").click()
    page.wait_idle()
    assert page.find("unit").text == "hour"
    assert page.find("window-text").text == f"Selection: {traffic.spike_day} (project time)"  # kept
    hour = page.tallest()
    assert hour.label == f"{traffic.spike_day} {seed.SPIKE_HOUR:02d}:00:00"
    assert hour.total == len(traffic.in_window())
    page.click_bar(hour.bucket)
    hour_text = f"{seed.SPIKE_HOUR:02d}:00 to {seed.SPIKE_HOUR + 1:02d}:00"
    assert page.find("window-text").text == f"Selection: {traffic.spike_day} {hour_text} (project time)"


def test_find_the_spike_pick_its_3_users_by_clicks_and_export_them(
    page: ExplorerPage, spiky: tuple[Project, seed.Traffic], downloads: Path
) -> None:
    project, traffic = spiky
    page.sign_in(project.api_secret)
    assert page.find("range-text").text.startswith(
        f"{traffic.today - dt.timedelta(days=29)} to {traffic.today} (project time, {ZONE})"
    )
    # The y axis has round ticks with thousands separators' room; the hover readout names the bucket.
    ticks = page.driver.execute_script(
        "return [...document.querySelectorAll('#chart .grid text')].map(t => t.textContent)"
    )
    assert ticks[0] == "0" and len(ticks) >= 3
    spike_day = page.tallest()
    readout = page.hover_bar(spike_day.bucket)
    assert f"{traffic.spike_day:%b} {traffic.spike_day.day} {traffic.spike_day.year}" in readout
    assert f"{spike_day.total:,} events" in readout and "install" in readout

    _select_spike_hour(page, traffic)
    in_hour = traffic.in_window()
    assert page.find("total-line").text == f"{len(in_hour):,} events in the selection"

    # The three spike users on top: people, their anonymous device events counted as theirs.
    top = page.top_rows("top-users")
    assert [(row.value, row.count) for row in top[:3]] == list(seed.SPIKE_USERS.items())
    assert top[0].share == f"{100 * seed.SPIKE_USERS['spike-a'] / len(in_hour):.1f}%"
    assert not any(row.value.startswith("$device:") for row in top)

    # Picking them one by one: the table keeps showing the others to pick (OR), ticked.
    for user in SPIKE_USERS:
        page.tick("top-users", user)
    assert [(row.value, row.picked) for row in page.top_rows("top-users")[:3]] == [
        (u, True) for u in SPIKE_USERS
    ]
    assert page.chips() == ["distinct_id is spike-a or spike-b or spike-c"]
    where = page.find("where-effective").text
    assert where.startswith('string(properties["distinct_id"]) in ["spike-a", "spike-b", "spike-c"] and ')
    spike_events = [e for e in in_hour if seed.person(e) in SPIKE_USERS]
    assert page.find("total-line").text == f"{len(spike_events):,} events in the selection"
    summaries = page.event_summaries()
    assert len(summaries) == 50 and all(any(u in s for u in SPIKE_USERS) for s in summaries)

    # The download is exactly their events in the hour, under their canonical ids.
    before = set(downloads.glob("*.jsonl"))
    page.find("download").click()
    saved = _wait_download(downloads, before)
    rows = [orjson.loads(line) for line in saved.read_bytes().splitlines() if line]
    assert {row["properties"]["$insert_id"] for row in rows} == {
        e["properties"]["$insert_id"] for e in spike_events
    }
    assert len(rows) == len(spike_events) == sum(seed.SPIKE_USERS.values())
    assert {row["properties"]["distinct_id"] for row in rows} == set(SPIKE_USERS)
    assert {row["properties"]["utm_campaign"] for row in rows} == {seed.SPIKE_CAMPAIGN}
    devices = {row["properties"].get("$distinct_id_before_identity") for row in rows} - {None}
    assert devices == {f"$device:{d}" for ds in seed.SPIKE_DEVICES.values() for d in ds}

    # The curl command selects the same events and never carries the secret.
    curl = page.find("curl").text
    assert project.api_secret not in curl and "$RAWEVENTS_SECRET" in curl
    assert '["spike-a", "spike-b", "spike-c"]' in curl

    # Zooming out keeps the selection and what it selects.
    page.find("zoom-out").click()
    page.wait_idle()
    assert page.find("unit").text == "hour"
    assert page.find("range-text").text.startswith(f"{traffic.spike_day - dt.timedelta(days=2)} to ")
    assert f"{traffic.spike_day} {seed.SPIKE_HOUR:02d}:00 to" in page.find("window-text").text
    assert page.find("total-line").text == f"{len(spike_events):,} events in the selection"


def test_a_user_opens_their_timeline_and_profile(
    page: ExplorerPage, spiky: tuple[Project, seed.Traffic]
) -> None:
    project, _ = spiky
    page.sign_in(project.api_secret)
    page.click_value("top-users", "spike-a")
    assert page.find("user").is_displayed()
    assert page.find("user-id").text == "spike-a"
    profile = page.profile_rows()
    assert ["$name", "Ada Spike"] in profile and ["plan", "free"] in profile
    summaries = page.event_summaries("timeline")
    assert len(summaries) == 50
    page.find("timeline-more").click()
    page.wait(lambda: len(page.event_summaries("timeline")) == 60)
    anonymous = [s for s in page.event_summaries("timeline") if "sent as $device:" in s]
    assert len(anonymous) == round(seed.ANONYMOUS_SHARE * seed.SPIKE_USERS["spike-a"])
    assert "user=spike-a" in page.fragment()
    # "Keep only this user" picks them.
    page.find("user-filter").click()
    page.wait_idle()
    assert page.chips() == ["distinct_id is spike-a"]
    assert page.find("total-line").text == f"{seed.SPIKE_USERS['spike-a']} events in the range"


def test_a_reload_restores_the_state(page: ExplorerPage, spiky: tuple[Project, seed.Traffic]) -> None:
    project, traffic = spiky
    page.sign_in(project.api_secret)
    _select_spike_hour(page, traffic)
    page.tick("top-users", "spike-b")
    prop = page.find("property")
    prop.clear()
    prop.send_keys("utm_campaign")
    page.driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", prop)
    page.wait_idle()
    page.click_value("top-users", "spike-b")

    def snapshot() -> dict[str, object]:
        return {
            "fragment": page.fragment(),
            "range": page.find("range-text").text,
            "unit": page.find("unit").text,
            "window": page.find("window-text").text,
            "total": page.find("total-line").text,
            "chips": page.chips(),
            "users": page.top_rows("top-users"),
            "values": page.top_rows("top-values"),
            "property": page.find("property").get_attribute("value"),
            "user": page.find("user-id").text,
            "where": page.find("where-effective").text,
        }

    before = snapshot()
    assert before["chips"] == ["distinct_id is spike-b"]
    assert "sel=" in str(before["fragment"]) and "filters=" in str(before["fragment"])
    page.driver.refresh()
    page.wait_idle()
    assert snapshot() == before
    # The same link in a new tab (no session): the sign-in form, then the same view.
    fragment = str(before["fragment"])
    page.driver.execute_script("sessionStorage.clear()")
    page.driver.get("about:blank")
    page.driver.get(page.base_url + "/explore" + fragment)
    page.wait(lambda: page.find("signin").is_displayed())
    page.sign_in(project.api_secret)
    assert snapshot() == before


def test_a_where_error_is_shown_at_its_column_and_recovered(
    page: ExplorerPage, spiky: tuple[Project, seed.Traffic]
) -> None:
    project, _ = spiky
    page.sign_in(project.api_secret)
    page.find("where").send_keys('properties["$os"] == "iOS" and properties["x" == 1')
    page.find("apply").click()
    page.wait(lambda: page.find("where-error").is_displayed())
    page.wait_idle()  # nothing stays "Loading…"
    message = page.find("where-error-message").text
    assert message.startswith("where: expected ']' at column 47")
    mark = page.find("where-error-mark")
    assert mark.get_attribute("data-column") == "47" and mark.text == "="
    states = page.panel_states()
    assert states["chart"] == states["users"] == states["events"] == "error"
    assert page.panel_text("users") == "Nothing shown: fix the where expression above."

    # A long expression wraps inside the page, its marked character included.
    long_where = " or ".join(f'properties["p{i}"] == "{"v" * 20}"' for i in range(12)) + " or )"
    page.find("where").clear()
    page.find("where").send_keys(long_where)
    page.find("apply").click()
    page.wait(lambda: page.find("where-error").is_displayed())
    page.wait_idle()
    box = page.find("where-error")
    assert page.driver.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", box)
    assert page.find("where-error-mark").get_attribute("data-column") == str(len(long_where))
    assert page.horizontal_overflow() == 0

    # Fixed: the error goes, every panel answers.
    page.find("where").clear()
    page.find("where").send_keys('properties["$os"] == "iOS"')
    page.find("apply").click()
    page.wait_idle()
    assert not page.find("where-error").is_displayed()
    assert set(page.panel_states().values()) <= {"ready"}
    assert [row.value for row in page.top_rows("top-values")] == ["iOS"]


def test_an_unknown_event_name_says_what_exists(
    page: ExplorerPage, spiky: tuple[Project, seed.Traffic]
) -> None:
    project, _ = spiky
    page.sign_in(project.api_secret)
    names = "return [...document.querySelectorAll('#event-names option')].map(o => o.value)"
    page.wait(lambda: set(page.driver.execute_script(names)) == {*seed.EVENT_NAMES, seed.SPIKE_EVENT})
    page.find("event").send_keys("Purchase")
    page.find("apply").click()
    page.wait_idle()
    assert page.panel_states()["chart"] == "empty"
    assert page.panel_text("chart") == 'No event named "Purchase" in this range. Did you mean "purchase"?'


def test_excluding_a_value(page: ExplorerPage, spiky: tuple[Project, seed.Traffic]) -> None:
    project, traffic = spiky
    page.sign_in(project.api_secret)
    windows = next(row.count for row in page.top_rows("top-values") if row.value == "Windows")
    page.exclude("top-values", "Windows")
    assert page.chips() == ["$os is not Windows"]
    assert "Windows" not in [row.value for row in page.top_rows("top-values")]
    assert windows is not None
    assert page.find("total-line").text == f"{len(traffic.events) - windows:,} events in the range"


def test_the_page_fits_400_px_without_horizontal_scrolling(
    page: ExplorerPage, spiky: tuple[Project, seed.Traffic]
) -> None:
    project, traffic = spiky
    page.driver.set_window_size(400, 900)
    assert page.horizontal_overflow() == 0  # the sign-in form
    page.sign_in(project.api_secret)
    assert page.driver.execute_script("return window.innerWidth") <= 400
    assert page.horizontal_overflow() == 0
    _select_spike_hour(page, traffic)
    page.tick("top-users", "spike-a")
    page.click_value("top-users", "spike-b")
    for details in page.driver.find_elements(By.CSS_SELECTOR, "#events details")[:2]:
        details.click()
    assert page.horizontal_overflow() == 0
    # The ids and counts stay readable: a row is one line, not one character per line.
    heights = page.driver.execute_script(
        "return [...document.querySelectorAll('#top-users tbody tr')].map(r => r.offsetHeight)"
    )
    assert max(heights) < 40, heights


@pytest.mark.server
def test_a_busy_server_s_503_is_retried_after_its_retry_after(
    driver: webdriver.Chrome, tmp_path: Path
) -> None:
    """One query at a time and no queue: the page's concurrent requests get 503 + Retry-After,
    say so next to their panel, wait, and all answer in the end."""
    env = {"RAWEVENTS_EXPORT_MAX_RUNNING": "1", "RAWEVENTS_EXPORT_QUEUE_SECONDS": "0"}
    busy = LiveServer(tmp_path / "data", env=env).start()
    try:
        project = busy.create_project("busy", ZONE)
        traffic = seed.generate(ZONE, per_day=20)
        seed.ingest(busy.base_url, project.api_secret, traffic.events)
        page = ExplorerPage(driver, busy.base_url)
        page.open()
        page.driver.execute_script(
            "window.__seen = [];"
            "new MutationObserver(() => document.querySelectorAll('.state').forEach(s =>"
            " window.__seen.push(s.textContent))).observe(document.body, {subtree: true, childList: true});"
        )
        page.sign_in(project.api_secret)
        assert set(page.panel_states().values()) == {"ready"}
        seen = page.driver.execute_script("return window.__seen")
        assert any(text.startswith("The server is busy: retrying in 1 s") for text in seen)
        assert page.find("total-line").text == f"{len(traffic.events):,} events in the range"
    finally:
        busy.stop()


def test_the_page_is_served_with_a_strict_policy(server: LiveServer) -> None:
    for path in ("/explore", "/explore/app.js", "/explore/app.css"):
        response = requests.get(server.base_url + path, timeout=10)
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    assert requests.get(server.base_url + "/explore/other.js", timeout=10).status_code == 404


def test_a_service_account_signs_in_with_its_project(
    page: ExplorerPage, driver: webdriver.Chrome, server: LiveServer, spiky: tuple[Project, seed.Traffic]
) -> None:
    project, _ = spiky
    account = server.registry.create_service_account(project.project_id, "explorer-sa")
    driver.find_element(By.CSS_SELECTOR, "input[name=kind][value=account]").click()
    page.find("sa-user").send_keys(account.username)
    page.find("sa-secret").send_keys(account.secret)
    page.find("project-id").send_keys(str(project.project_id))
    driver.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
    page.wait(lambda: page.find("app").is_displayed())
    page.wait_idle()
    assert set(page.panel_states().values()) == {"ready"}
    stored = driver.execute_script("return sessionStorage.getItem('rawevents.explorer.auth')")
    assert orjson.loads(stored)["projectId"] == str(project.project_id)
    assert driver.execute_script("return localStorage.length + document.cookie.length") == 0
    assert account.secret not in page.fragment()
    curl = page.find("curl").text
    assert account.secret not in curl and f"project_id={project.project_id}" in curl
