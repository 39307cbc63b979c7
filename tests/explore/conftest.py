from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from tests.explore import browser


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[webdriver.Chrome]:
    problem = browser.missing()
    if problem is not None:
        pytest.fail(problem)
    chrome = browser.launch(tmp_path_factory.mktemp("chromium-profile"), downloads)
    yield chrome
    chrome.quit()
