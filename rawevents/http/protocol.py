"""uvicorn's httptools protocol, with its one framework-made answer in Mixpanel's shapes.

A request the HTTP parser cannot read (a URL past the parser's limit, a malformed header line,
a control character in a header value) never reaches the app: uvicorn answers it itself with a
plain-text 400. Clients of every endpoint parse JSON error bodies, so this answer takes the shape
of the endpoint the request was for, as far as its path was read: `{"request", "error"}` under
/api/, `{"error", "status": 0}` for /track, /engage and /groups, `{"code", "error", "status"}`
otherwise (/import's shape).
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rawevents.ingest import responses

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
