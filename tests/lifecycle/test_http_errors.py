"""Requests the HTTP parser cannot read still get Mixpanel's JSON error shapes (uvicorn's own
answer to them is a plain-text 400)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import orjson
import pytest

from rawevents.http.protocol import INVALID_REQUEST
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("http-errors"), env={"RAWEVENTS_INGEST_PROCESSES": "0"})
    yield server.start()
    server.stop()


def _raw(server: LiveServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


LONG_URL = b"a" * 70_000


@pytest.mark.parametrize(
    ("request_bytes", "answer"),
    [
        (
            b"GET /track?data=" + LONG_URL + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            {"error": INVALID_REQUEST, "status": 0},
        ),
        (
            b"POST /engage/ HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
            {"error": INVALID_REQUEST, "status": 0},
        ),
        (
            b"POST /import?strict=1 HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
            {"code": 400, "error": INVALID_REQUEST, "status": "Bad Request"},
        ),
        (
            b"GET /api/2.0/export?from_date=" + LONG_URL + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            {"request": "/api/2.0/export", "error": INVALID_REQUEST},
        ),
        (
            b"GET /api/2.0/export HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            {"request": "/api/2.0/export", "error": INVALID_REQUEST},
        ),
    ],
    ids=["track-long-url", "engage-bad-header-line", "import-control-char", "export-long-url", "export-bad"],
)
def test_unparseable_requests_get_mixpanel_shapes(
    live: LiveServer, request_bytes: bytes, answer: dict[str, object]
) -> None:
    status, headers, body = _raw(live, request_bytes)
    assert (status, headers["content-type"]) == (400, "application/json")
    assert int(headers["content-length"]) == len(body)
    assert orjson.loads(body) == answer


def test_the_server_still_serves_after_them(live: LiveServer) -> None:
    _raw(live, b"GET /track HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n")
    assert live.get("/").status_code == 200
