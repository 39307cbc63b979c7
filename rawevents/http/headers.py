"""Headers every answer carries, whichever route (or error path) wrote it."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")


class App(Starlette):
    """Starlette that adds `X-Content-Type-Options: nosniff` to every HTTP answer: JSON, export
    streams, zips, errors, and the 500s that Starlette's outermost middleware writes (a user
    middleware sits inside it and would miss those). A browser then never renders an answer
    holding event data as anything but its declared type."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == NOSNIFF[0] for name, _ in headers):
                    message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        await super().__call__(scope, receive, send_nosniff)
