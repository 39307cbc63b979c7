"""Retries, errors and credentials of rawevents.client, against scripted HTTP answers."""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from rawevents.client import (
    ClientError,
    Connection,
    Credentials,
    ExportOptions,
    HttpError,
    RetryPolicy,
    export,
)
from tests.client.helpers import leftovers
from tests.live_server import free_port

Handler = Callable[[httpx.Request], httpx.Response]


def _connection(answers: list[httpx.Response], sleeps: list[float], seen: list[httpx.Request]) -> Connection:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":  # an export's preflight: the request is accepted
            return httpx.Response(200)
        seen.append(request)
        return answers.pop(0)

    return Connection(
        "http://rawevents.test",
        Credentials("s3cret"),
        sleep=sleeps.append,
        transport=httpx.MockTransport(handler),
    )


def _ok(request: httpx.Response | None = None) -> httpx.Response:
    return httpx.Response(200, json={"timezone": "UTC"})


def _streamed(body: bytes, *, gzip: bool = False) -> httpx.Response:
    headers = {"Content-Encoding": "gzip"} if gzip else {}
    return httpx.Response(200, headers=headers, stream=httpx.ByteStream(body))


def test_retry_after_seconds_and_dates_are_honoured() -> None:
    sleeps: list[float] = []
    seen: list[httpx.Request] = []
    later = email.utils.formatdate(time.time() + 20, usegmt=True)
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"}),
        httpx.Response(503, headers={"Retry-After": later}, json={"error": "busy"}),
        _ok(),
    ]
    assert _connection(answers, sleeps, seen).get_json("/x") == {"timezone": "UTC"}
    assert 7 <= sleeps[0] <= 7.25 and 18 <= sleeps[1] <= 20.25
    assert seen[0].headers["authorization"] == "Basic czNjcmV0Og=="  # "s3cret:"


def test_5xx_backs_off_with_jitter_then_gives_up_with_the_server_message() -> None:
    sleeps: list[float] = []
    answers = [httpx.Response(500, json={"error": "disk on fire"}) for _ in range(6)]
    with pytest.raises(ClientError, match=r"HTTP 500: disk on fire \(gave up after 6 tries\)"):
        _connection(answers, sleeps, []).get_json("/x")
    assert len(sleeps) == 5 and all(0.25 <= s <= 30 for s in sleeps)


def test_other_4xx_are_not_retried_and_show_the_server_message() -> None:
    sleeps: list[float] = []
    seen: list[httpx.Request] = []
    answers = [httpx.Response(400, json={"request": "/x", "error": "to_date cannot be later than today"})]
    with pytest.raises(HttpError, match="HTTP 400: to_date cannot be later than today") as caught:
        _connection(answers, sleeps, seen).get_json("/x")
    assert caught.value.status == 400 and len(seen) == 1 and sleeps == []


def test_control_characters_from_the_server_are_escaped() -> None:
    answers = [httpx.Response(403, json={"error": "no\x1b[31m access"})]
    with pytest.raises(HttpError) as caught:
        _connection(answers, [], []).get_json("/x")
    assert "\x1b" not in caught.value.message and "\\x1b[31m" in caught.value.message


def test_connection_refused_fails_after_a_few_quick_tries() -> None:
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"
    server = Connection(url, Credentials("s"), sleep=sleeps.append, retry=RetryPolicy(connect_tries=3))
    with pytest.raises(ClientError, match=f"cannot connect to {url}: connection refused"):
        server.get_json("/x")
    assert len(sleeps) == 2 and sum(sleeps) < 5


def test_a_body_cut_short_is_downloaded_again_and_never_left_behind(tmp_path: Path) -> None:
    body = gzip.compress(b'{"event":"e","properties":{"time":1,"distinct_id":"u"}}\n' * 1000)
    answers = [
        _streamed(body[: len(body) // 2], gzip=True),
        _streamed(body, gzip=True),
    ]
    sleeps: list[float] = []
    with _connection(answers, sleeps, []) as server:
        day = dt.date(2024, 1, 1)
        result = export(server, ExportOptions(day, day, tmp_path))
    assert result.files[0].events == 1000 and len(sleeps) == 1
    assert (tmp_path / "2024-01-01.jsonl.gz").read_bytes() == body and leftovers(tmp_path) == []


def test_plain_text_bodies_are_gzipped_for_jsonl_gz(tmp_path: Path) -> None:
    line = b'{"event":"e","properties":{"time":1}}\n'
    with _connection([_streamed(line * 3)], [], []) as server:
        day = dt.date(2024, 1, 1)
        export(server, ExportOptions(day, day, tmp_path))
    assert gzip.decompress((tmp_path / "2024-01-01.jsonl.gz").read_bytes()) == line * 3


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("s", None, None), {}, Credentials("s")),
        ((None, None, None), {"RAWEVENTS_SECRET": "e"}, Credentials("e")),
        ((None, "bob:pw", 3), {}, Credentials("pw", "bob", 3)),
        (
            (None, None, None),
            {"RAWEVENTS_SERVICE_ACCOUNT": "bob:pw", "RAWEVENTS_PROJECT_ID": "4"},
            Credentials("pw", "bob", 4),
        ),
        (
            ("s", None, None),
            {"RAWEVENTS_SERVICE_ACCOUNT": "bob:pw", "RAWEVENTS_PROJECT_ID": "4"},
            Credentials("s", None, 4),
        ),
    ],
)
def test_credentials_from_flags_or_environment(
    args: tuple[str | None, str | None, int | None], env: dict[str, str], expected: Credentials
) -> None:
    assert Credentials.resolve(*args, env=env) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, None, None), "no credentials"),
        ((None, "bob", 3), "USER:SECRET"),
        ((None, "bob:pw", None), "needs --project-id"),
    ],
)
def test_credentials_errors(args: tuple[str | None, str | None, int | None], message: str) -> None:
    with pytest.raises(ClientError, match=message):
        Credentials.resolve(*args, env={})


def test_a_failed_day_leaves_no_partial_file(tmp_path: Path) -> None:
    body = gzip.compress(b'{"event":"e","properties":{"time":1}}\n' * 100)
    answers = [_streamed(body[:40], gzip=True), httpx.Response(403, json={"error": "revoked"})]
    with _connection(answers, [], []) as server, pytest.raises(HttpError, match="revoked"):
        day = dt.date(2024, 1, 1)
        export(server, ExportOptions(day, day, tmp_path))
    assert list(tmp_path.iterdir()) == []
