"""Start uvicorn on the app (uvloop + httptools), with our logging, TLS and trusted proxies.

Logging is configured here (not by uvicorn) so every line, uvicorn's and ours, has one format and
passes the query-string redaction. The client address comes from X-Forwarded-For only when the
connecting peer is one of `forwarded_allow_ips` (uvicorn's proxy-headers middleware).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging.config
import ssl
import sys
from typing import Any

import uvicorn

from rawevents.errors import StartupError
from rawevents.http.app import create_app
from rawevents.logconfig import log_config
from rawevents.service import Services, ensure_demo_project
from rawevents.settings import Config

_M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads their own malloc arenas; with DuckDB's, the compressors' and the
    writer's threads, buffers freed after an export stay mapped and RSS creeps up export after
    export (355 → 387 MiB over three 1M-row exports). Two arenas keep it flat (≤ 367 MiB over
    six). Must run before those threads start; a no-op where libc has no mallopt."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas)


def tls_options(config: Config) -> dict[str, Any]:
    """uvicorn's TLS arguments, after loading the pair once so a bad file fails in one line."""
    if not config.ssl_certfile:
        if config.ssl_keyfile:
            raise StartupError("setting ssl_keyfile needs ssl_certfile (the certificate) too")
        return {}
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            config.ssl_certfile, config.ssl_keyfile or None
        )
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(
            f"settings ssl_certfile/ssl_keyfile: cannot load {config.ssl_certfile}: {exc.strerror or exc}"
        ) from None
    return {"ssl_certfile": config.ssl_certfile, "ssl_keyfile": config.ssl_keyfile or None}


def serve(config: Config) -> None:
    limit_malloc_arenas()
    tls = tls_options(config)
    logging.config.dictConfig(log_config(config.log_format, config.log_level))
    services = Services.open(config)
    try:
        if services.ingest_workers is not None:
            services.ingest_workers.warm()
        if config.demo:
            project = ensure_demo_project(services.registry)
            print("rawevents demo project:", json.dumps(project.public_dict()), file=sys.stderr, flush=True)
        scheme = "https" if tls else "http"
        print(f"rawevents listening on {scheme}://{config.host}:{config.port}", file=sys.stderr, flush=True)
        uvicorn.run(
            create_app(config, services),
            host=config.host,
            port=config.port,
            loop="uvloop",
            http="httptools",
            access_log=config.access_log,
            log_config=None,
            log_level=config.log_level,
            timeout_keep_alive=75,
            proxy_headers=True,
            forwarded_allow_ips=config.forwarded_allow_ips,
            **tls,
        )
    finally:
        services.close()
