"""Event data is written by anyone holding the (public) project token: hostile event names,
property names and values must show up as text everywhere the page shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
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
                    },
                }
            )
    seed.ingest(server.base_url, project.api_secret, events)
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
    assert [user for user, _, _ in page.top_rows("top-users")] == list(HOSTILE)
    assert [value for value, _, _ in page.top_rows("top-values")] == list(HOSTILE)  # $os

    # A hostile property name chosen as the property to rank.
    prop = page.find("property")
    prop.clear()
    prop.send_keys(HOSTILE[1])
    driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", prop)
    count = len(HOSTILE) - 1  # events of HOSTILE[1] carry the property named HOSTILE[1]
    page.wait(lambda: [(v, n) for v, n, _ in page.top_rows("top-values")] == [(HOSTILE[1], count)])

    summaries = page.event_summaries()
    assert all(any(text in summary for text in HOSTILE) for summary in summaries)
    for element in driver.find_elements(By.CSS_SELECTOR, "#events details"):
        element.click()
    dumps = page.event_json_texts()
    assert len(dumps) == sum(range(1, len(HOSTILE) + 1))
    assert all(HOSTILE[0] in d or HOSTILE[2] in d or "img" in d or "svg" in d or "pwned" in d for d in dumps)

    # Clicking a hostile value builds a valid where expression that selects exactly its events.
    page.click_top_value("top-users", HOSTILE[1])
    assert page.status() == ""
    assert page.top_rows("top-users") == [(HOSTILE[1], count, "100.0%")]

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
