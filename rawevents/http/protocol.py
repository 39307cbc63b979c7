"""uvicorn's httptools protocol with two changes rawevents needs, both below the ASGI app.

1. A request uvicorn cannot parse never reaches the app: a URL over ~64 KiB, a header with a
   control character, a Content-Length that is not a number. uvicorn answers those itself with a
   plain-text `400 Invalid HTTP request received.`; here the same 400 is JSON in the shape of the
   endpoint the URL was for, as far as it was read (`send_400_response` is the one hook uvicorn
   has for it; h11 has no such hook, so the server runs httptools).
2. ASGI has no way to drop a connection: an app that stops mid-body only makes uvicorn close the
   transport gracefully, which waits for the client to read what is buffered, so a client that
   never reads would keep its connection and buffers forever. Each request's scope gets
   `extensions["rawevents.connection"]["abort"]`, which resets the connection at once (used by
   the export idle timeout).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rawevents.http.responses import unparsed_request_error

CONNECTION_EXTENSION = "rawevents.connection"
UNPARSED_MESSAGE = "Invalid HTTP request: the request line or a header could not be parsed"


class MixpanelHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        url = bytes(getattr(self, "url", b"") or b"")
        # uvicorn's `msg` names no cause, and the parser does not report one either.
        body = unparsed_request_error(url.decode("latin-1"), UNPARSED_MESSAGE)
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
