"""The explorer page as a test drives it: through its controls, as a user would."""

from __future__ import annotations

import re
from dataclasses import dataclass

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 30
_TITLE = re.compile(r"^(.*) · (.*): (\d+)$", re.S)


@dataclass(frozen=True)
class Bar:
    bucket: int
    label: str
    event: str
    count: int


class ExplorerPage:
    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def find(self, element_id: str) -> WebElement:
        return self.driver.find_element(By.ID, element_id)

    def wait(self, condition: object, message: str = "") -> object:
        return WebDriverWait(self.driver, TIMEOUT).until(lambda _: condition(), message)  # type: ignore[operator]

    def open(self) -> None:
        self.driver.get(self.base_url + "/explore")
        if self.find("signout").is_displayed():
            self.find("signout").click()
        self.wait(lambda: self.find("signin").is_displayed())

    def sign_in(self, secret: str) -> None:
        self.find("secret").clear()
        self.find("secret").send_keys(secret)
        self.driver.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
        self.wait(lambda: self.find("app").is_displayed(), "sign-in did not open the app")
        self.wait_idle()

    def set_range(self, from_date: str, to_date: str) -> None:
        for element_id, value in (("from-date", from_date), ("to-date", to_date)):
            # Date inputs take typed text in the browser's locale order; setting the value is
            # what typing a date does, without depending on that locale.
            self.driver.execute_script("arguments[0].value = arguments[1]", self.find(element_id), value)
        self.find("apply").click()
        self.wait_idle()

    def wait_idle(self) -> None:
        self.wait(lambda: self.find("status").text in ("", "curl command copied."), "page still loading")

    def status(self) -> str:
        return self.find("status").text

    def bars(self) -> list[Bar]:
        found = []
        titles = self.driver.execute_script(
            "return [...document.querySelectorAll('#chart rect[data-bucket]')]"
            ".map(r => [r.dataset.bucket, r.querySelector('title').textContent])"
        )
        for bucket, title in titles:
            match = _TITLE.match(title)
            assert match, title
            found.append(Bar(int(bucket), match[1], match[2], int(match[3])))
        return found

    def drag_between(self, first: int, last: int) -> None:
        """Press on bucket `first`'s bar area and release on bucket `last`'s."""
        chart = self.find("chart")
        centre = (
            "const c = arguments[0].getBoundingClientRect();"
            "const width = arguments[0].viewBox.baseVal.width;"
            "const r = document.querySelector(`#chart rect[data-bucket='${arguments[1]}']`);"
            "const x = (r.x.baseVal.value + r.width.baseVal.value / 2) * c.width / width;"
            "return Math.round(x - c.width / 2);"
        )
        start = int(self.driver.execute_script(centre, chart, first))
        end = int(self.driver.execute_script(centre, chart, last))
        actions = ActionChains(self.driver)
        actions.move_to_element_with_offset(chart, start, 0).click_and_hold()
        actions.move_by_offset(end - start, 0).release()
        actions.perform()
        self.wait_idle()

    def top_rows(self, table_id: str) -> list[tuple[str, int, str]]:
        # One script reads the whole table, so a re-render between reads cannot tear it.
        cells = self.driver.execute_script(
            "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)]"
            ".map(r => [...r.cells].map(c => c.textContent))",
            table_id,
        )
        return [(row[0], int(row[1]), row[2]) for row in cells if len(row) == 3]

    def click_top_value(self, table_id: str, value: str) -> None:
        for button in self.driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody button.value"):
            if button.text == value:
                button.click()
                self.wait_idle()
                return
        raise AssertionError(f"{value!r} not in {table_id}")

    def event_summaries(self) -> list[str]:
        return list(
            self.driver.execute_script(
                "return [...document.querySelectorAll('#events summary')].map(s => s.textContent)"
            )
        )

    def event_json_texts(self) -> list[str]:
        return list(
            self.driver.execute_script(
                "return [...document.querySelectorAll('#events pre')].map(p => p.textContent)"
            )
        )
