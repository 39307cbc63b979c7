"""Event data is written by anyone holding the (public) project token: hostile event names,
property names and values must show up as text everywhere the page shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By

from rawevents.projects import Project
from tests.explore import seed
from tests.explore.page import ExplorerPage
from tests.live_server import LiveServer

HOSTILE = (
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "javascript:window.__pwned=1",
    "<svg onload=window.__pwned=1>",
    "'); window.__pwned=1; ('",
)


@pytest.fixture(scope="module")
def hostile(server: LiveServer) -> Project:
    project = server.create_project("explorer-hostile", "UTC")
    now = dt.datetime.now(dt.UTC)
    events: list[dict[str, Any]] = []
    for n, text in enumerate(HOSTILE):
        for copy in range(len(HOSTILE) - n):  # distinct counts keep the order stable
            events.append(
                {
                    "event": text,
                    "properties": {
                        "time": int((now - dt.timedelta(hours=2 + n, minutes=copy)).timestamp() * 1000),
                        "distinct_id": text,
                        "$insert_id": f"h{n}-{copy}",
                        "$os": text,
                        text: text,
                        "link": text,
                        "$current_url": text,
                    },
                }
            )
    seed.ingest(server.base_url, project.api_secret, events)
    profile = {"$token": project.token, "$distinct_id": HOSTILE[0], "$set": {text: text for text in HOSTILE}}
    response = requests.post(f"{server.base_url}/engage?verbose=1", json=[profile], timeout=30)
    assert response.json()["status"] == 1, response.text
    return project


def test_hostile_strings_render_as_text(
    driver: webdriver.Chrome, server: LiveServer, hostile: Project
) -> None:
    page = ExplorerPage(driver, server.base_url)
    page.open()
    page.sign_in(hostile.api_secret)
    today = dt.datetime.now(dt.UTC).date()
    page.set_range((today - dt.timedelta(days=1)).isoformat(), today.isoformat())

    legend = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#legend li")]
    assert sorted(legend) == sorted(HOSTILE)
    assert [row.value for row in page.top_rows("top-users")] == list(HOSTILE)
    assert [row.value for row in page.top_rows("top-values")] == list(HOSTILE)  # $os
    # The hover readout names the events of a bucket as text.
    busiest = page.tallest()
    readout = page.hover_bar(busiest.bucket)
    assert any(text in readout for text in HOSTILE)

    # A hostile property name chosen as the property to rank.
    prop = page.find("property")
    prop.clear()
    prop.send_keys(HOSTILE[1])
    driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", prop)
    count = len(HOSTILE) - 1  # events of HOSTILE[1] carry the property named HOSTILE[1]
    page.wait(lambda: [(r.value, r.count) for r in page.top_rows("top-values")] == [(HOSTILE[1], count)])

    summaries = page.event_summaries()
    assert all(any(text in summary for text in HOSTILE) for summary in summaries)
    for element in driver.find_elements(By.CSS_SELECTOR, "#events details"):
        element.click()
    dumps = page.event_json_texts()
    assert len(dumps) == sum(range(1, len(HOSTILE) + 1))
    assert all(HOSTILE[0] in d or HOSTILE[2] in d or "img" in d or "svg" in d or "pwned" in d for d in dumps)

    # Ticking a hostile user builds a valid filter, shown as a chip and in the where expression.
    page.tick("top-users", HOSTILE[1])
    assert set(page.panel_states().values()) <= {"ready"}
    assert page.chips() == [f"distinct_id is {HOSTILE[1]}"]
    assert [(r.value, r.count, r.picked) for r in page.top_rows("top-users")][1] == (HOSTILE[1], count, True)
    assert page.find("total-line").text == f"{count} events in the range"
    assert '\\"><img src=x onerror=' in page.find("where-effective").text  # JSON-escaped quotes
    # Excluding a hostile value: a chip of its own.
    page.exclude("top-values", HOSTILE[1])
    assert page.chips() == [f"distinct_id is {HOSTILE[1]}", f"{HOSTILE[1]} is not {HOSTILE[1]}"]

    # A hostile user's view: id, profile (hostile names and values) and timeline, as text.
    page.click_value("top-users", HOSTILE[0])
    assert page.find("user-id").text == HOSTILE[0]
    profile = page.profile_rows()
    assert sorted(row for row in profile if row[0] != "$last_seen") == sorted(
        [text, text] for text in HOSTILE
    )
    timeline = page.event_summaries("timeline")
    assert len(timeline) == len(HOSTILE) and all(HOSTILE[0] in s for s in timeline)

    # A hostile event name that matches nothing: the empty state quotes it as text.
    page.find("event").send_keys(HOSTILE[3] + "?")
    page.find("apply").click()
    page.wait_idle()
    assert page.panel_text("chart").startswith(f'No event named "{HOSTILE[3]}?" in this range.')
    # A hostile where expression: the error shows it as text.
    page.find("event").clear()
    page.find("where").send_keys(HOSTILE[0])
    page.find("apply").click()
    page.wait(lambda: page.find("where-error").is_displayed())
    assert page.find("where-error-text").text == HOSTILE[0]
    _assert_nothing_ran(driver)

    # The state in the URL carries the hostile strings; a reload renders them as text again.
    driver.refresh()
    page.wait_idle()
    assert page.find("where").get_attribute("value") == HOSTILE[0]
    assert page.find("user-id").text == HOSTILE[0]
    assert page.chips() == [f"distinct_id is {HOSTILE[1]}", f"{HOSTILE[1]} is not {HOSTILE[1]}"]
    _assert_nothing_ran(driver)


def _assert_nothing_ran(driver: webdriver.Chrome) -> None:
    assert driver.execute_script("return window.__pwned === undefined")
    assert driver.execute_script("return document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert driver.execute_script("return document.scripts.length") == 1  # app.js
    assert driver.execute_script("return document.querySelectorAll('svg').length") == 1  # the chart
    # No event handler attribute anywhere, no URL attribute that runs script (datalist options
    # legitimately carry hostile property names as their `value`).
    assert (
        driver.execute_script(
            "return [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a =>"
            " a.name.startsWith('on')"
            " || (['href', 'src', 'action', 'formaction', 'xlink:href'].includes(a.name)"
            " && /^\\s*javascript:/i.test(a.value)))).length"
        )
        == 0
    )
