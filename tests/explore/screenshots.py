"""The explorer's pictures in docs/img, taken by headless Chromium on `serve --demo`'s data, at
1400 and 400 px: `python -m tests.explore.screenshots docs/img`."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from selenium.webdriver.common.by import By

from rawevents import demo
from tests.explore import browser
from tests.explore.page import ExplorerPage
from tests.live_server import LiveServer

WIDE, NARROW = 1400, 400


def _demo_secret(server: LiveServer) -> str:
    for line in server.log_text().splitlines():
        if line.startswith("rawevents demo project: "):
            return str(json.loads(line.split(": ", 1)[1])["api_secret"])
    raise RuntimeError("serve --demo printed no project")


def _shoot(page: ExplorerPage, path: Path, width: int, element_id: str | None = None) -> None:
    """The whole page (or one element of it) at `width` px."""
    driver = page.driver
    driver.set_window_size(width, 1000)
    page.wait_idle()
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(height + 140, 6000))
    page.wait_idle()
    if element_id:
        # The element at the top of a window as tall as it (the width, so the layout, unchanged).
        element = driver.find_element(By.ID, element_id)
        driver.set_window_size(width, int(element.size["height"]) + 200)
        page.wait_idle()
        driver.execute_script(
            "window.scrollTo(0, arguments[0].getBoundingClientRect().top + scrollY - 8)", element
        )
        inner = int(driver.execute_script("return innerHeight"))
        driver.set_window_size(
            width, int(element.size["height"]) + 200 + int(element.size["height"]) + 16 - inner
        )
        driver.execute_script(
            "window.scrollTo(0, arguments[0].getBoundingClientRect().top + scrollY - 8)", element
        )
        driver.save_screenshot(str(path))
    else:
        driver.save_screenshot(str(path))
    print(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = LiveServer(root / "data", args=["--demo"], env={"RAWEVENTS_INGEST_PROCESSES": "0"}).start()
        driver = browser.launch(root / "profile", root / "downloads")
        try:
            page = ExplorerPage(driver, server.base_url)
            driver.set_window_size(WIDE, 1000)
            page.open()
            page.sign_in(_demo_secret(server))
            # 30 days, the hover readout on the spike's day.
            driver.set_window_size(WIDE, 1000)
            page.wait_idle()
            spike_day = page.tallest()
            page.hover_bar(spike_day.bucket)
            driver.save_screenshot(str(out / "explorer-range.png"))
            print(out / "explorer-range.png")

            # The spike's day, its hour selected, its 3 people ticked.
            page.click_bar(spike_day.bucket)
            page.find("zoom-in").click()
            page.wait_idle()
            page.click_bar(page.tallest().bucket)
            for person in demo.SPIKE_PEOPLE:
                page.tick("top-users", person.user_id)
            prop = page.find("property")
            prop.clear()
            prop.send_keys("utm_campaign")
            driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", prop)
            page.wait_idle()
            page.driver.find_elements(By.CSS_SELECTOR, "#events details")[0].click()
            _shoot(page, out / "explorer-spike.png", WIDE)
            _shoot(page, out / "explorer-spike-400.png", NARROW)

            # One of them: profile and timeline, their devices' anonymous events included.
            driver.set_window_size(WIDE, 1000)
            page.click_value("top-users", demo.SPIKE_PEOPLE[0].user_id)
            _shoot(page, out / "explorer-user.png", WIDE, "user")
            _shoot(page, out / "explorer-user-400.png", NARROW, "user")

            # A where error, at its column, wrapped.
            driver.set_window_size(NARROW, 1000)
            where = page.find("where")
            where.clear()
            where.send_keys('properties["utm_campaign"] == "spring-giveaway" and properties["$os"] = = "iOS"')
            page.find("apply").click()
            page.wait(lambda: page.find("where-error").is_displayed())
            page.wait_idle()
            driver.execute_script("window.scrollTo(0, 0)")
            driver.set_window_size(NARROW, 900)
            driver.save_screenshot(str(out / "explorer-where-error-400.png"))
            print(out / "explorer-where-error-400.png")
        finally:
            driver.quit()
            server.stop()


if __name__ == "__main__":
    main()
