"""README screenshots of the explorer, taken by headless Chromium on the tests' generated traffic:
`python -m tests.explore.screenshots docs/img`."""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from collections import defaultdict
from pathlib import Path

from selenium.webdriver.common.by import By

from tests.explore import browser, seed
from tests.explore.page import ExplorerPage
from tests.live_server import LiveServer

ZONE = "Europe/Berlin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = LiveServer(root / "data").start()
        driver = browser.launch(root / "profile", root / "downloads")
        try:
            project = server.create_project("shop", ZONE)
            traffic = seed.generate(ZONE)
            seed.ingest(server.base_url, project.api_secret, traffic.events)
            page = ExplorerPage(driver, server.base_url)
            page.open()
            page.sign_in(project.api_secret)
            page.set_range((traffic.today - dt.timedelta(days=29)).isoformat(), traffic.today.isoformat())
            driver.save_screenshot(str(out / "explorer-range.png"))
            totals: dict[int, int] = defaultdict(int)
            for bar in page.bars():
                totals[bar.bucket] += bar.count
            spike = max(totals, key=lambda bucket: totals[bucket])
            page.drag_between(spike - 1, spike + 1)
            page.click_top_value("top-users", "spike-a")
            driver.find_elements(By.CSS_SELECTOR, "#events details")[0].click()
            driver.set_window_size(1280, 1500)
            driver.save_screenshot(str(out / "explorer-spike.png"))
        finally:
            driver.quit()
            server.stop()


if __name__ == "__main__":
    main()
