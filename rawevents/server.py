"""Start uvicorn on the app (uvloop + httptools; access log off: it would cost throughput)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import sys

import uvicorn

from rawevents.http.app import create_app
from rawevents.http.protocol import MixpanelHttpToolsProtocol
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


def serve(config: Config) -> None:
    limit_malloc_arenas()
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
            http=MixpanelHttpToolsProtocol,
            access_log=False,
            log_level=config.log_level,
            timeout_keep_alive=75,
        )
    finally:
        services.close()
