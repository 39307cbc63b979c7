"""Start uvicorn on the app (uvloop + httptools; access log off: it would cost throughput)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys

import uvicorn
from starlette.applications import Starlette

from rawevents.errors import BadRequest
from rawevents.http.app import create_app
from rawevents.service import Services, ensure_demo_project
from rawevents.settings import SETTINGS, Config, load_config
from rawevents.storage.factory import SINGLE_PROCESS, store_kind

_M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads their own malloc arenas; with DuckDB's, the compressors' and the
    writer's threads, buffers freed after an export stay mapped and RSS creeps up export after
    export (355 → 387 MiB over three 1M-row exports). Two arenas keep it flat (≤ 367 MiB over
    six). Must run before those threads start; a no-op where libc has no mallopt."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas)


def worker_app() -> Starlette:
    """The app of one `serve --workers N` process: settings come from the environment the
    parent filled, services open in the app's lifespan."""
    return create_app(load_config())


def _serve_workers(config: Config) -> None:
    if store_kind(config) in SINGLE_PROCESS:
        raise BadRequest(
            "serve --workers above 1 needs a clickhouse:// store: an embedded store is owned by one process"
        )
    os.environ.update({s.env: str(getattr(config, s.name)) for s in SETTINGS})
    print(
        f"rawevents listening on http://{config.host}:{config.port} ({config.workers} workers)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        "rawevents.server:worker_app",
        factory=True,
        workers=config.workers,
        host=config.host,
        port=config.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=config.log_level,
        timeout_keep_alive=75,
    )


def serve(config: Config) -> None:
    limit_malloc_arenas()
    if config.workers > 1:
        _serve_workers(config)
        return
    services = Services.open(config)
    try:
        if services.ingest_workers is not None:
            services.ingest_workers.warm()
        if config.demo:
            project = ensure_demo_project(services.registry)
            print("rawevents demo project:", json.dumps(project.public_dict()), file=sys.stderr, flush=True)
        print(f"rawevents listening on http://{config.host}:{config.port}", file=sys.stderr, flush=True)
        uvicorn.run(
            create_app(config, services),
            host=config.host,
            port=config.port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level=config.log_level,
            timeout_keep_alive=75,
        )
    finally:
        services.close()
