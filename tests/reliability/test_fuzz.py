"""Hypothesis against the real server: `where`, export parameters, ingestion payloads and headers.
Whatever arrives, the answer is a 2xx or a 4xx (never a 5xx, never a hang: every request has a
timeout that fails the test), and an export error is Mixpanel's `{"request", "error"}` JSON.
"""

from __future__ import annotations

import base64
import gzip
import json
import string
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawevents.projects import Project
from tests.live_server import LiveServer
from tests.reliability.harness import SIZES, Sizes, report
from tests.where.test_agreement import expressions

pytestmark = pytest.mark.reliability

TIMEOUT = 30  # a request not answered in this long is a hang: the test fails


@pytest.fixture(scope="module")
def target(server: LiveServer) -> Iterator[tuple[LiveServer, Project, requests.Session]]:
    project = server.create_project("fuzz")
    session = requests.Session()
    events = [
        {
            "event": "e",
            "properties": {
                "time": 1_706_184_000 + i,
                "distinct_id": f"u{i}",
                "$insert_id": f"f{i}",
                "n": i,
                "s": "x" * i,
                "l": [i, str(i)],
                "o": {"k": i},
            },
        }
        for i in range(50)
    ]
    response = session.post(f"{server.base_url}/import", json=events, auth=(project.api_secret, ""))
    assert response.status_code == 200
    yield server, project, session
    session.close()


def fuzz(strategy: st.SearchStrategy[Any], check: Callable[[Any], None], examples: int) -> int:
    """Run `check` on `examples` values of `strategy`; the number of cases tried."""
    tried = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(value: Any) -> None:
        nonlocal tried
        tried += 1
        check(value)

    run()
    return tried


def assert_not_5xx(response: requests.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])


def assert_export_answer(response: requests.Response) -> None:
    assert_not_5xx(response)
    if response.status_code >= 400:
        assert set(response.json()) == {"request", "error"}, response.text[:500]


# -- where ----------------------------------------------------------------------------------------

garbage = st.text(alphabet=string.printable + "\u00e9\u2028\x00\U0001f600", max_size=200)


@pytest.mark.parametrize("sizes", SIZES)
def test_where(target: tuple[LiveServer, Project, requests.Session], sizes: Sizes) -> None:
    server, project, session = target

    def check(where: str) -> None:
        response = session.get(
            f"{server.base_url}/api/2.0/export",
            params={"from_date": "2024-01-25", "to_date": "2024-01-26", "where": where},
            auth=(project.api_secret, ""),
            timeout=TIMEOUT,
        )
        assert_export_answer(response)
        response.close()

    tried = fuzz(st.one_of(expressions, garbage), check, sizes.fuzz_examples)
    report("fuzz", surface_name="where", sizes=sizes.name, cases=tried, status_5xx=0, hangs=0)


# -- export parameters ----------------------------------------------------------------------------

dates = st.one_of(
    st.dates().map(str),
    st.sampled_from(["2024-01-25", "2024-02-30", "0000-01-01", "9999-12-31", "", "today", "2024-1-5"]),
    garbage,
)
params = st.fixed_dictionaries(
    {"from_date": dates, "to_date": dates},
    optional={
        "event": st.one_of(
            st.lists(st.text(max_size=20), max_size=5).map(orjson.dumps).map(bytes.decode), garbage
        ),
        "limit": st.one_of(st.integers(-(2**70), 2**70).map(str), garbage),
        "time_in_ms": st.sampled_from(["true", "false", "1", "0", "", "yes", "🙂"]),
        "project_id": st.one_of(st.integers(-(2**70), 2**70).map(str), garbage),
        "where": garbage,
        "format": garbage,
    },
)


@pytest.mark.parametrize("sizes", SIZES)
def test_export_parameters(target: tuple[LiveServer, Project, requests.Session], sizes: Sizes) -> None:
    server, project, session = target

    def check(values: dict[str, str]) -> None:
        if "project_id" in values:
            values["project_id"] = values["project_id"] if len(values) % 2 else str(project.project_id)
        method = session.post if len(values) % 3 == 0 else session.get
        kwargs: dict[str, Any] = {"data": values} if method == session.post else {"params": values}
        response = method(
            f"{server.base_url}/api/2.0/export", auth=(project.api_secret, ""), timeout=TIMEOUT, **kwargs
        )
        assert_export_answer(response)
        response.close()

    tried = fuzz(params, check, sizes.fuzz_examples)
    report("fuzz", surface_name="export_parameters", sizes=sizes.name, cases=tried, status_5xx=0, hangs=0)


# -- ingestion payloads ---------------------------------------------------------------------------

limit_numbers = st.one_of(
    st.sampled_from(
        [0, -0.0, 1e308, -1e308, 5e-324, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]
    ),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_leaf = st.one_of(st.none(), st.booleans(), limit_numbers, st.text(max_size=50))
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


DEEP = "__deep_%d__"  # replaced by that many levels of nesting once encoded (no recursion)


def nest(body: bytes) -> bytes:
    for depth in (50, 500, 5000):
        marker = b'"' + (DEEP % depth).encode() + b'"'
        body = body.replace(marker, b'{"d":[' * depth + b'"bottom"' + b"]}" * depth)
    return body


time_values = st.one_of(limit_numbers, st.sampled_from(["-1e308", "1e308", "nan", "", "1706184000", None]))


@st.composite
def events(draw: st.DrawFn, token: str) -> dict[str, Any]:
    properties = draw(st.dictionaries(st.text(max_size=20), json_values, max_size=6))
    properties["token"] = token
    for key, strategy in (
        ("time", time_values),
        ("distinct_id", st.one_of(json_leaf, st.text(max_size=300))),
        ("$insert_id", st.one_of(json_leaf, st.text(max_size=100))),
    ):
        if draw(st.booleans()):
            properties[key] = draw(strategy)
    if draw(st.integers(0, 20)) == 0:
        properties["deep"] = DEEP % draw(st.sampled_from([50, 500, 5000]))
    if draw(st.integers(0, 20)) == 0:
        properties["huge"] = "x" * draw(st.sampled_from([255, 256, 65536, 1_000_000]))
    name = draw(st.one_of(st.text(max_size=50), json_leaf))
    return {"event": name, "properties": properties}


def bodies(token: str) -> st.SearchStrategy[tuple[str, str, bytes, dict[str, str]]]:
    """(endpoint, query, body, headers): JSON, form `data=` (raw, base64, broken base64), gzip
    (valid and not), invalid UTF-8."""
    # The stdlib encoder: integers of any size, lone surrogates as \udxxx escapes.
    batch = st.lists(events(token), min_size=1, max_size=5).map(lambda evs: nest(json.dumps(evs).encode()))

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
        raw = draw(batch)
        endpoint = draw(st.sampled_from(["track", "import", "engage", "groups"]))
        encoding = draw(
            st.sampled_from(["json", "form", "base64", "bad-base64", "gzip", "bad-gzip", "bad-utf8"])
        )
        headers = {"Content-Type": "application/json"}
        if encoding == "form":
            body = b"data=" + quote(raw).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        elif encoding == "base64":
            body = b"data=" + quote(base64.b64encode(raw)).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        elif encoding == "bad-base64":
            body = b"data=" + base64.b64encode(raw)[: draw(st.integers(1, 50))] + b"%%%!"
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        elif encoding == "gzip":
            body = gzip.compress(raw)
            headers["Content-Encoding"] = "gzip"
        elif encoding == "bad-gzip":
            body = gzip.compress(raw)[: draw(st.integers(0, 30))] + draw(st.binary(max_size=20))
            headers["Content-Encoding"] = "gzip"
        elif encoding == "bad-utf8":
            body = raw.replace(b'"', b'"\xff\xfe', 1) if draw(st.booleans()) else raw + b"\xc3\x28"
        else:
            body = raw
        query = draw(st.sampled_from(["", "strict=1", "verbose=1", "ip=1", "strict=1&verbose=1"]))
        return endpoint, query, body, headers

    return build()


@pytest.mark.parametrize("sizes", SIZES)
def test_ingestion_payloads(target: tuple[LiveServer, Project, requests.Session], sizes: Sizes) -> None:
    server, project, session = target

    def check(case: tuple[str, str, bytes, dict[str, str]]) -> None:
        endpoint, query, body, headers = case
        response = session.post(
            f"{server.base_url}/{endpoint}?{query}",
            data=body,
            headers=headers,
            auth=(project.api_secret, "") if endpoint == "import" else None,
            timeout=TIMEOUT,
        )
        assert_not_5xx(response)

    tried = fuzz(bodies(project.token), check, sizes.fuzz_examples)
    report("fuzz", surface_name="ingestion_payloads", sizes=sizes.name, cases=tried, status_5xx=0, hangs=0)


# -- headers --------------------------------------------------------------------------------------

# Leading whitespace is stripped: HTTP drops it anyway, and requests refuses to send it.
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200).map(
    str.lstrip
)
header_sets = st.fixed_dictionaries(
    {},
    optional={
        "Authorization": st.one_of(
            header_text,
            header_text.map(lambda t: "Basic " + t),
            st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
        ),
        "Content-Type": st.one_of(
            header_text, st.sampled_from(["application/json", "text/plain; charset=x"])
        ),
        "Content-Encoding": st.one_of(header_text, st.sampled_from(["gzip", "deflate", "br", "gzip, gzip"])),
        "Accept-Encoding": st.one_of(header_text, st.sampled_from(["gzip;q=0", "*;q=0.5", "gzip;q=abc"])),
        # Not a length above the body's: the server would rightly wait for the missing bytes.
        "Content-Length": st.sampled_from(["0", "-1", "99999999999999999999", "abc", "1e3"]),
        "X-Forwarded-For": header_text,
        "Origin": header_text,
    },
)


@pytest.mark.parametrize("sizes", SIZES)
def test_headers(target: tuple[LiveServer, Project, requests.Session], sizes: Sizes) -> None:
    server, project, session = target
    body = orjson.dumps([{"event": "h", "properties": {"token": project.token, "$insert_id": "h1"}}])

    def check(case: tuple[str, dict[str, str]]) -> None:
        path, headers = case
        headers = {k: v.encode("latin-1").decode("latin-1") for k, v in headers.items()}
        try:
            if path.startswith("/api"):
                headers.pop("Content-Length", None)
                response = session.get(server.base_url + path, headers=headers, timeout=TIMEOUT)
            else:
                prepared = requests.Request(
                    "POST", server.base_url + path, data=body, headers=headers
                ).prepare()
                if "Content-Length" in headers:
                    prepared.headers["Content-Length"] = headers["Content-Length"]
                response = session.send(prepared, timeout=TIMEOUT)
        except requests.ConnectionError:
            # The HTTP layer may refuse a malformed request line or header by closing the
            # connection (e.g. a Content-Length it cannot parse): not a 5xx, not a hang.
            session.close()
            return
        assert_not_5xx(response)
        response.close()

    paths = st.sampled_from(
        ["/import", "/track", "/engage", "/api/2.0/export?from_date=2024-01-25&to_date=2024-01-25"]
    )
    tried = fuzz(st.tuples(paths, header_sets), check, sizes.fuzz_examples)
    report("fuzz", surface_name="headers", sizes=sizes.name, cases=tried, status_5xx=0, hangs=0)
