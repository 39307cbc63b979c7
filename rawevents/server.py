"""Start uvicorn on the app (uvloop + httptools; access log off: it would cost throughput)."""

from __future__ import annotations

import json
import sys

import uvicorn

from rawevents.http.app import create_app
from rawevents.service import Services, ensure_demo_project
from rawevents.settings import Config


def serve(config: Config) -> None:
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
