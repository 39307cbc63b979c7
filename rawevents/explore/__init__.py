"""The explorer page's static files (HTML, JS, CSS), shipped inside the package: no build step,
no CDN. The page talks only to the public query and export APIs, with the user's credential."""

from __future__ import annotations

from functools import cache
from importlib import resources

# Served name -> media type; nothing else under static/ is reachable.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


@cache
def asset(name: str) -> bytes:
    """The bytes of one of FILES (read once; they are part of the installed package)."""
    if name not in FILES:
        raise KeyError(name)
    return (resources.files(__name__) / "static" / name).read_bytes()
