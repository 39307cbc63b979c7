"""The explorer page as a test drives it: through its controls, as a user would."""

from __future__ import annotations

from dataclasses import dataclass

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 30


@dataclass(frozen=True)
class Bar:
    bucket: int
    label: str  # the segmentation label of the bucket
    total: int


@dataclass(frozen=True)
class TopRow:
    value: str
    count: int | None
    share: str
    picked: bool


class ExplorerPage:
    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def find(self, element_id: str) -> WebElement:
        return self.driver.find_element(By.ID, element_id)

    def wait(self, condition: object, message: str = "") -> object:
        return WebDriverWait(self.driver, TIMEOUT).until(lambda _: condition(), message)  # type: ignore[operator]

    def open(self, fragment: str = "") -> None:
        self.driver.get(self.base_url + "/explore" + fragment)
        if self.find("signout").is_displayed():
            self.find("signout").click()
        self.wait(lambda: self.find("signin").is_displayed())

    def sign_in(self, secret: str) -> None:
        self.find("secret").clear()
        self.find("secret").send_keys(secret)
        self.driver.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
        self.wait(lambda: self.find("app").is_displayed(), "sign-in did not open the app")
        self.wait_idle()

    def panel_states(self) -> dict[str, str]:
        """Each panel's state (`loading`, `ready`, `empty`, `error`) by its id, for those shown."""
        return dict(
            self.driver.execute_script(
                "return [...document.querySelectorAll('.state')].filter(s => s.dataset.state)"
                ".map(s => [s.id.replace(/-state$/, ''), s.dataset.state])"
            )
        )

    def panel_text(self, panel: str) -> str:
        return str(self.find(f"{panel}-state").text)

    def wait_idle(self) -> None:
        self.wait(
            lambda: (
                self.find("app").is_displayed()
                and "chart" in self.panel_states()
                and "loading" not in self.panel_states().values()
            ),
            "page still loading",
        )

    def set_range(self, from_date: str, to_date: str) -> None:
        for element_id, value in (("from-date", from_date), ("to-date", to_date)):
            # Date inputs take typed text in the browser's locale order; setting the value is
            # what typing a date does, without depending on that locale.
            self.driver.execute_script("arguments[0].value = arguments[1]", self.find(element_id), value)
        self.find("apply").click()
        self.wait_idle()

    def bars(self) -> list[Bar]:
        found = self.driver.execute_script(
            "return [...document.querySelectorAll('#chart g[data-bucket]')]"
            ".map(g => [g.dataset.bucket, g.dataset.label, g.dataset.total])"
        )
        return [Bar(int(bucket), label, int(total)) for bucket, label, total in found]

    def tallest(self) -> Bar:
        return max(self.bars(), key=lambda bar: bar.total)

    def _bucket_offset(self, bucket: int) -> int:
        """The x offset of a bucket's centre from the chart's centre (Selenium's origin)."""
        script = (
            "const c = arguments[0].getBoundingClientRect();"
            "const g = document.querySelector(`#chart g[data-bucket='${arguments[1]}']`);"
            "const r = g.getBoundingClientRect();"
            "return r.left + r.width / 2 - (c.left + c.width / 2);"
        )
        return round(float(self.driver.execute_script(script, self.find("chart"), bucket)))

    def click_bar(self, bucket: int) -> None:
        ActionChains(self.driver).move_to_element_with_offset(
            self.find("chart"), self._bucket_offset(bucket), 0
        ).click().perform()
        self.wait_idle()

    def hover_bar(self, bucket: int) -> str:
        ActionChains(self.driver).move_to_element_with_offset(
            self.find("chart"), self._bucket_offset(bucket), 0
        ).perform()
        self.wait(lambda: self.find("readout").is_displayed(), "no hover readout")
        return str(self.find("readout").text)

    def drag_between(self, first: int, last: int) -> None:
        """Press on bucket `first` and release on bucket `last`."""
        start, end = self._bucket_offset(first), self._bucket_offset(last)
        actions = ActionChains(self.driver)
        actions.move_to_element_with_offset(self.find("chart"), start, 0).click_and_hold()
        actions.move_by_offset(end - start, 0).release()
        actions.perform()
        self.wait_idle()

    def top_rows(self, table_id: str) -> list[TopRow]:
        # One script reads the whole table, so a re-render between reads cannot tear it.
        cells = self.driver.execute_script(
            "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)].map(r =>"
            " [r.cells[1].textContent, r.cells[2].textContent, r.cells[3].textContent,"
            " r.querySelector('input[type=checkbox]').checked])",
            table_id,
        )
        return [
            TopRow(value, None if count == "–" else int(count.replace(",", "")), share, picked)
            for value, count, share, picked in cells
        ]

    def _row(self, table_id: str, value: str) -> WebElement:
        for row in self.driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr"):
            if row.find_element(By.CSS_SELECTOR, "button.value").text == value:
                return row
        raise AssertionError(f"{value!r} not in {table_id}")

    def tick(self, table_id: str, value: str) -> None:
        """Tick a value's box: keep its events (several ticked: any of them)."""
        self._row(table_id, value).find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
        self.wait_idle()

    def exclude(self, table_id: str, value: str) -> None:
        self._row(table_id, value).find_element(By.CSS_SELECTOR, "button.exclude").click()
        self.wait_idle()

    def click_value(self, table_id: str, value: str) -> None:
        self._row(table_id, value).find_element(By.CSS_SELECTOR, "button.value").click()
        self.wait_idle()

    def chips(self) -> list[str]:
        return [
            chip.text.rstrip("×").strip() for chip in self.driver.find_elements(By.CSS_SELECTOR, "#chips li")
        ]

    def event_summaries(self, list_id: str = "events") -> list[str]:
        return list(
            self.driver.execute_script(
                "return [...document.querySelectorAll(`#${arguments[0]} summary`)].map(s => s.textContent)",
                list_id,
            )
        )

    def event_json_texts(self, list_id: str = "events") -> list[str]:
        return list(
            self.driver.execute_script(
                "return [...document.querySelectorAll(`#${arguments[0]} pre`)].map(p => p.textContent)",
                list_id,
            )
        )

    def profile_rows(self) -> list[list[str]]:
        return list(
            self.driver.execute_script(
                "return [...document.querySelectorAll('#profile tr')]"
                ".map(r => [r.cells[0].textContent, r.cells[1].textContent])"
            )
        )

    def fragment(self) -> str:
        return str(self.driver.execute_script("return location.hash"))

    def horizontal_overflow(self) -> int:
        """How many pixels the page is wider than the window (0: no horizontal scrolling)."""
        return int(
            self.driver.execute_script(
                "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
                " - document.documentElement.clientWidth"
            )
        )
