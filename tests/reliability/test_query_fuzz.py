"""Issue 26: the query endpoints under random and hostile parameters, against the real server.

Like the export's fuzz (test_fuzz.py): whatever arrives, the answer is a 2xx or a 4xx in
Mixpanel's `{"request", "error"}` shape with `nosniff`, never a 5xx and never a
hang (every request has a timeout that fails the test); and the server's RSS, sampled throughout,
stays under RSS_BOUND. Cases per endpoint: 1.5 x the Hypothesis profile's count in CI (300 with
the `ci` profile), 1,500 in the `reliability_full` run.
"""

from __future__ import annotations

import string
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import psutil
import pytest
import requests
from hypothesis import settings
from hypothesis import strategies as st

from rawevents.projects import Project
from tests.live_server import LiveServer
from tests.reliability.harness import SIZES, Sizes, report
from tests.reliability.test_fuzz import TIMEOUT, assert_not_5xx, fuzz
from tests.where.test_agreement import expressions

pytestmark = pytest.mark.reliability

RSS_BOUND = 1024 * 2**20  # the heaviest allowed answer is 32 MiB; the server idles near 250 MB
EVENTS = 2000


@pytest.fixture(scope="module")
def target(server: LiveServer) -> Iterator[tuple[LiveServer, Project, requests.Session]]:
    project = server.create_project("query-fuzz")
    session = requests.Session()
    numbers: list[Any] = [2**63, -(2**63), 1e308, -0.0, 5e-324, 1.8446744073709552e19, "123", None, True]
    events = [
        {
            "event": f"e{i % 7}",
            "properties": {
                "time": 1_706_184_000 + i * 37,  # 2024-01-25, over ~20 hours
                "distinct_id": f"u{i % 50}",
                "$insert_id": f"q{i}",
                "n": numbers[i % len(numbers)],
                "s": "<script>" if i % 11 == 0 else f"v{i % 13}",
                "l": [i, str(i)],
                "o": {"k": i},
            },
        }
        for i in range(EVENTS)
    ]
    response = session.post(f"{server.base_url}/import", json=events, auth=(project.api_secret, ""))
    assert response.status_code == 200, response.text
    session.post(
        f"{server.base_url}/engage",
        data={
            "data": orjson.dumps([{"$token": project.token, "$distinct_id": "u1", "$set": {"a": 1}}]).decode()
        },
    )
    yield server, project, session
    session.close()


class PeakRss:
    """The server's RSS sampled every 0.1 s while the block runs."""

    def __init__(self, server: LiveServer) -> None:
        assert server.process is not None
        self.process = psutil.Process(server.process.pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


garbage = st.text(alphabet=string.printable + "\u00e9\u2028\x00\U0001f600", max_size=120)
days = st.one_of(
    st.sampled_from(["2024-01-25", "2024-01-26", "2024-01-01", "2023-01-25", "1970-01-01", "2299-12-31"]),
    st.sampled_from(["9999-12-31", "9999-12-30", "2300-01-01", "0001-01-01", "2024-02-30", "", "today"]),
    st.dates().map(str),
    garbage,
)
integers = st.one_of(
    st.sampled_from(["1", "10", "60", "1000", "10000", "10001", "0", "-1", "99999999999999999999"]),
    st.integers(-(2**70), 2**70).map(str),
    garbage,
)
units = st.one_of(st.sampled_from(["minute", "hour", "day", "week", "month", "MINUTE", "year"]), garbage)
where_texts = st.one_of(expressions, garbage)
on_texts = st.one_of(
    st.sampled_from(['properties["$insert_id"]', 'properties["n"]', 'properties["s"]', '"all events"']),
    expressions,
    garbage,
)
events_param = st.one_of(
    st.lists(st.sampled_from(["e1", "e2", "nope", ""]), max_size=3).map(orjson.dumps).map(bytes.decode),
    garbage,
)


id_lists = st.lists(st.text(max_size=8), max_size=3).map(orjson.dumps).map(bytes.decode)


def _params(required: dict[str, st.SearchStrategy[str]], optional: dict[str, st.SearchStrategy[str]]) -> Any:
    return st.fixed_dictionaries(required, optional=optional)


ENDPOINTS: dict[str, Any] = {
    "segmentation": (
        ["/api/query/segmentation", "/api/2.0/segmentation"],
        _params(
            {"from_date": days, "to_date": days},
            {"unit": units, "limit": integers, "on": on_texts, "where": where_texts, "event": events_param,
             "type": st.sampled_from(["general", "unique", "average", "sum", ""])},
        ),
    ),
    "values": (
        ["/api/query/events/properties/values", "/api/2.0/events/properties/values"],
        _params(
            {"name": st.one_of(st.sampled_from(["n", "s", "$insert_id", "l", "o", ""]), garbage)},
            {"from_date": days, "to_date": days, "limit": integers, "where": where_texts,
             "event": events_param},
        ),
    ),
    "page": (
        ["/api/query/events/page"],
        _params(
            {"from_date": days, "to_date": days},
            {"limit": integers, "where": where_texts, "event": events_param,
             "order": st.sampled_from(["oldest", "newest", "sideways"]),
             "cursor": st.one_of(st.sampled_from(["1706184000000.5", "-1.-1", "9" * 30 + ".1"]), garbage)},
        ),
    ),
    "profiles_and_properties": (
        ["/api/2.0/engage", "/api/query/engage", "/api/query/events/properties/top",
         "/api/query/engage/properties"],
        _params(
            {},
            {"page": integers, "page_size": integers, "limit": integers, "event": garbage,
             "distinct_ids": st.one_of(id_lists, garbage),
             "output_properties": garbage, "session_id": garbage},
        ),
    ),
}  # fmt: skip


def _examples(sizes: Sizes) -> int:
    return sizes.fuzz_examples if sizes.name == "full" else settings.default.max_examples * 3 // 2


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_query_endpoint(
    target: tuple[LiveServer, Project, requests.Session], sizes: Sizes, endpoint: str
) -> None:
    server, project, session = target
    paths, strategy = ENDPOINTS[endpoint]
    answered: dict[int, int] = {}

    def check(case: tuple[int, dict[str, str]]) -> None:
        which, values = case
        path = paths[which % len(paths)]
        if which % 4 == 3:
            response = session.post(
                server.base_url + path, data=values, auth=(project.api_secret, ""), timeout=TIMEOUT
            )
        else:
            response = session.get(
                server.base_url + path, params=values, auth=(project.api_secret, ""), timeout=TIMEOUT
            )
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        assert_not_5xx(response)  # one client at a time: never busy either
        assert response.headers.get("x-content-type-options") == "nosniff"
        if response.status_code >= 400:
            assert set(response.json()) == {"request", "error"}, response.text[:300]
        else:
            response.json()  # a whole JSON body
        response.close()

    with PeakRss(server) as rss:
        tried = fuzz(st.tuples(st.integers(0, 7), strategy), check, _examples(sizes))
    assert rss.peak < RSS_BOUND, rss.peak
    report(
        "query_fuzz",
        endpoint=endpoint,
        sizes=sizes.name,
        cases=tried,
        status_5xx=0,
        hangs=0,
        peak_rss_mib=round(rss.peak / 2**20, 1),
        statuses=answered,
    )
