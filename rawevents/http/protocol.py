"""uvicorn's httptools protocol, with its one framework-made answer in Mixpanel's shapes.

A request the HTTP parser cannot read (a URL past the parser's limit, a malformed header line,
a control character in a header value) never reaches the app: uvicorn answers it itself with a
plain-text 400. Clients of every endpoint parse JSON error bodies, so this answer takes the shape
of the endpoint the request was for, as far as its path was read: `{"request", "error"}` under
/api/, `{"error", "status": 0}` for /track, /engage and /groups, `{"code", "error", "status"}`
otherwise (/import's shape).

ASGI has no way to drop a connection either: an app that stops mid-body only makes uvicorn close
the transport gracefully, which waits until the client has read what is buffered, so a client
that never reads would keep its connection and buffers for good. Each request's scope gets
`extensions["rawevents.connection"]["abort"]`, which resets the connection at once (the export
idle timeout uses it).
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rawevents.ingest import responses

CONNECTION_EXTENSION = "rawevents.connection"
INVALID_REQUEST = "invalid HTTP request: the request line or a header could not be parsed"
_PROFILE_OR_TRACK = ("/track", "/engage", "/groups")


def error_body(path: str) -> bytes:
    """The 400 body for an unparseable request whose path began with `path`."""
    if path.startswith("/api/"):
        return orjson.dumps({"request": path[:200], "error": INVALID_REQUEST})
    if path.rstrip("/") in _PROFILE_OR_TRACK:
        return orjson.dumps({"error": INVALID_REQUEST, "status": 0})
    return responses.import_error(400, INVALID_REQUEST).body


class MixpanelErrorsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        url = bytes(getattr(self, "url", b"") or b"")
        path = url.split(b"?", 1)[0].decode("latin-1")
        body = error_body(path)
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def on_headers_complete(self) -> None:
        scope: Any = self.scope
        scope.setdefault("extensions", {})[CONNECTION_EXTENSION] = {"abort": self.transport.abort}
        super().on_headers_complete()
