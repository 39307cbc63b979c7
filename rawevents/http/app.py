"""ASGI application: mounts the ingestion, export, query and explorer route modules on shared services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rawevents.admin.runner import TaskRunner
from rawevents.errors import BadRequest
from rawevents.http import (
    explore_routes,
    export_routes,
    gdpr_routes,
    ingest_routes,
    ops_routes,
    pipeline_routes,
    query_routes,
)
from rawevents.http.headers import App
from rawevents.http.responses import json_response, query_api_error
from rawevents.pipelines.runner import PipelineRunner
from rawevents.service import Services
from rawevents.settings import Config

WELCOME = {"error": "Welcome. Get started with our API by visiting https://developer.mixpanel.com/"}


async def root(request: Request) -> Response:
    return json_response(WELCOME)


async def unknown_api(request: Request) -> Response:
    return query_api_error(request, BadRequest("Invalid API endpoint"))


def create_app(config: Config, services: Services | None = None) -> Starlette:
    """Build the app; `services` may be injected (tests), otherwise opened on startup."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services if services is not None else Services.open(config)
        # GDPR requests, retention and the CLI's hand-overs run here, in the background.
        runner = TaskRunner(
            app.state.services.registry,
            app.state.services.store,
            Path(app.state.services.config.data_dir),
            retention_interval_s=app.state.services.config.retention_interval_seconds,
            retrieval_expiry_s=app.state.services.config.gdpr_retrieval_expiry_seconds,
        )
        app.state.task_runner = runner.start()
        # Data pipelines (docs/pipelines.md) on a thread of their own, below ingestion's priority.
        pipelines = PipelineRunner(
            app.state.services.registry,
            app.state.services.store,
            Path(app.state.services.config.data_dir),
            observer=app.state.services.metrics,
            nice=app.state.services.config.export_nice,
            retry_max_s=app.state.services.config.pipeline_retry_max_seconds,
            object_rows=app.state.services.config.pipeline_object_rows,
        )
        app.state.pipeline_runner = pipelines.start()
        try:
            yield
        finally:
            pipelines.stop()
            runner.stop()
            if owned:
                app.state.services.close()

    routes: list[BaseRoute] = [Route("/", root, methods=["GET", "HEAD"])]
    routes += ingest_routes.routes()
    routes += export_routes.routes()
    routes += query_routes.routes()
    routes += ops_routes.routes()
    routes += gdpr_routes.routes()
    routes += explore_routes.routes()
    routes += pipeline_routes.routes()
    routes.append(Route("/api/{rest:path}", unknown_api, methods=["GET", "POST", "HEAD", "DELETE"]))
    # headers.App: `X-Content-Type-Options: nosniff` on every answer, error pages included.
    return App(routes=routes, lifespan=lifespan, middleware=[Middleware(ops_routes.ResponseMetrics)])
