"""The explorer in a real headless Chromium against a real server: find a spike, see who caused
it, filter to one user and download exactly that user's events in the window."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import defaultdict
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


@pytest.fixture(scope="module")
def spiky(server: LiveServer) -> tuple[Project, seed.Traffic]:
    project = server.create_project("explorer-spike", ZONE)
    traffic = seed.generate(ZONE)
    seed.ingest(server.base_url, project.api_secret, traffic.events)
    return project, traffic


@pytest.fixture
def page(driver: webdriver.Chrome, server: LiveServer) -> ExplorerPage:
    explorer = ExplorerPage(driver, server.base_url)
    explorer.open()
    return explorer


def _wait_download(folder: Path, before: set[Path]) -> Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = [p for p in folder.glob("*.jsonl") if p not in before]
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.1)
    raise AssertionError("no download appeared")


def test_find_spike_select_it_filter_to_one_user_and_download(
    page: ExplorerPage, spiky: tuple[Project, seed.Traffic], downloads: Path
) -> None:
    project, traffic = spiky
    page.sign_in(project.api_secret)
    page.set_range((traffic.today - dt.timedelta(days=29)).isoformat(), traffic.today.isoformat())
    assert page.find("unit").text == "hour"

    # The spike is the tallest stacked bar, and it is the spike's local hour.
    totals: dict[int, int] = defaultdict(int)
    labels: dict[int, str] = {}
    for bar in page.bars():
        totals[bar.bucket] += bar.count
        labels[bar.bucket] = bar.label
    spike = max(totals, key=lambda bucket: totals[bucket])
    expected_label = f"{traffic.spike_day.isoformat()} {seed.SPIKE_HOUR:02d}:00:00"
    assert labels[spike] == expected_label
    assert totals[spike] == len(traffic.in_window())

    # Drag across the spike with a bucket of margin on each side (a bar is ~1.5 px wide).
    page.drag_between(spike - 1, spike + 1)
    match = re.fullmatch(r"Window: (\S+ \S+) to (\S+ \S+) \(project time\)", page.find("window-text").text)
    assert match, page.find("window-text").text
    start, end = (dt.datetime.fromisoformat(text).replace(tzinfo=traffic.zone) for text in match.groups())
    spike_start, spike_end = traffic.spike_window
    window = (int(start.timestamp() * 1000), int(end.timestamp() * 1000))
    assert window[0] <= spike_start and spike_end <= window[1] and window[1] - window[0] <= 3 * 3_600_000
    window_total = len(traffic.in_window(window=window))
    assert page.find("total-line").text == f"{window_total} events in the window"

    # The three spike users on top, with their counts and share of the window.
    top = page.top_rows("top-users")
    assert [(user, count) for user, count, _ in top[:3]] == list(seed.SPIKE_USERS.items())
    assert top[0][2] == f"{100 * seed.SPIKE_USERS['spike-a'] / window_total:.1f}%"
    assert all(count < seed.SPIKE_USERS["spike-c"] for _, count, _ in top[3:])

    # Clicking a user adds it to the where filter, shown as an editable expression.
    page.click_top_value("top-users", "spike-a")
    assert page.find("where").get_attribute("value") == 'string(properties["distinct_id"]) == "spike-a"'
    assert page.top_rows("top-users") == [("spike-a", 60, "100.0%")]

    # Raw events page 50 at a time, newest first, all from that user.
    summaries = page.event_summaries()
    assert len(summaries) == 50 and all("spike-a" in s for s in summaries)
    assert summaries == sorted(summaries, reverse=True)
    page.find("more").click()
    page.wait(lambda: len(page.event_summaries()) == 60)
    assert not page.find("more").is_displayed()

    # The download is exactly that user's events in the window.
    before = set(downloads.glob("*.jsonl"))
    page.find("download").click()
    saved = _wait_download(downloads, before)
    rows = [orjson.loads(line) for line in saved.read_bytes().splitlines() if line]
    expected = {e["properties"]["$insert_id"] for e in traffic.in_window("spike-a", window=window)}
    assert len(rows) == len(expected) == 60
    assert {row["properties"]["$insert_id"] for row in rows} == expected

    # The curl command selects the same events and never carries the secret.
    curl = page.find("curl").text
    assert project.api_secret not in curl and "$RAWEVENTS_SECRET" in curl
    assert 'string(properties["distinct_id"]) == "spike-a"' in curl


def test_where_errors_point_at_their_column(page: ExplorerPage, spiky: tuple[Project, seed.Traffic]) -> None:
    project, _ = spiky
    page.sign_in(project.api_secret)
    page.find("where").send_keys('properties["$os"] == "iOS" and properties["x" == 1')
    page.find("apply").click()
    page.wait(lambda: page.find("where-error").is_displayed())
    message = page.find("where-error-message").text
    assert message.startswith("where: expected ']' at column 47")
    caret = page.find("where-error-caret")
    assert caret.get_attribute("data-column") == "47"
    assert (caret.get_attribute("textContent") or "").index("^") == 46


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
    assert page.status() == ""
    stored = driver.execute_script("return sessionStorage.getItem('rawevents.explorer.auth')")
    assert orjson.loads(stored)["projectId"] == str(project.project_id)
    assert driver.execute_script("return localStorage.length + document.cookie.length") == 0
    curl = page.find("curl").text
    assert account.secret not in curl and f"project_id={project.project_id}" in curl
