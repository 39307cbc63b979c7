"""`/explore`: the explorer page and its two assets, with a strict Content-Security-Policy.

The page shows event data anyone holding the project token can write, so the policy allows
scripts, styles and connections to this origin only: no inline script or style, no plugin, no
framing, no form posting elsewhere. The page itself renders every value as text.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rawevents.explore import FILES, asset

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def _serve(name: str) -> Response:
    return Response(asset(name), media_type=FILES[name], headers=HEADERS)


async def page(request: Request) -> Response:
    return _serve("index.html")


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in FILES:
        return Response("not found", status_code=404, media_type="text/plain", headers=HEADERS)
    return _serve(name)


def routes() -> list[BaseRoute]:
    methods = ["GET", "HEAD"]
    return [
        Route("/explore", page, methods=methods),
        Route("/explore/", page, methods=methods),
        Route("/explore/{name}", static, methods=methods),
    ]
