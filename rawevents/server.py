"""Start and stop the server (uvicorn on uvloop + httptools), with our logging, TLS and proxies.

Start: private file modes, then the checks that turn an operator's mistake into one line instead
of a traceback (TLS files unreadable, data directory not writable, port taken, store in use by
another server), then the store and the ingest workers, and only then "listening".

Logging is configured here (not by uvicorn) so every line, uvicorn's and ours, has one format
(`log_format`) and passes the query-string redaction (rawevents.logconfig). The client address
comes from X-Forwarded-For only when the connecting peer is one of `forwarded_allow_ips`
(uvicorn's proxy-headers middleware).

Stop (SIGTERM, SIGINT): uvicorn stops accepting and gives in-flight requests and exports
`shutdown_timeout_s` to finish; then the workers stop and the store closes, and the process exits
0. uvicorn re-raises the captured signal once it is done, which would kill the process (SIGTERM)
before the store is closed or print a KeyboardInterrupt traceback (SIGINT): `_Server` does not.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging.config
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from rawevents import demo
from rawevents.errors import StartupError
from rawevents.http.app import create_app
from rawevents.http.protocol import MixpanelErrorsProtocol
from rawevents.logconfig import log_config
from rawevents.service import Services, ensure_demo_project
from rawevents.settings import PRIVATE_UMASK, SETTINGS, Config, load_config
from rawevents.storage.factory import SINGLE_PROCESS, store_kind

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


def announce_demo_project(services: Services, config: Config) -> list[str]:
    """Print the demo project (its secret only when just created: later it exists as a digest),
    fill it with the demo data when it has no events, and return the lines to print once the
    server listens: where the explorer is and what to look for (rawevents.demo)."""
    project, created = ensure_demo_project(services.registry)
    print("rawevents demo project:", json.dumps(project.public_dict()), file=sys.stderr, flush=True)
    if not created:
        print(
            "rawevents: the demo project's secret was printed when it was created; for a new one run"
            f" `rawevents project rotate-secret --project {project.project_id} --data-dir {config.data_dir}`",
            file=sys.stderr,
            flush=True,
        )
    data = None
    if not demo.has_events(services.store, project.project_id):
        print(
            f"rawevents demo: writing {demo.DAYS} days of a shop's traffic into the demo project…",
            file=sys.stderr,
            flush=True,
        )
        data = demo.populate(services.store, project)
    return demo.hints(data, f"{_base_url(config)}/explore", project.api_secret if created else None)


def _base_url(config: Config) -> str:
    """The address a browser on this machine reaches the server at."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(config.host, config.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "https" if config.ssl_certfile else "http"
    return f"{scheme}://{host}:{config.port}"


def check_data_dir(path: str) -> None:
    """Create the data directory (0700) and prove it writable, or fail in one line."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot use data directory {path}: {exc.strerror}") from None
    if os.stat(path).st_mode & 0o077:
        with contextlib.suppress(OSError):  # made by an older version or another tool: close it
            os.chmod(path, 0o700)
    probe = os.path.join(path, f".write-test-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise StartupError(f"data directory {path} is not writable: {exc.strerror}") from None


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening address bound now, so a taken port fails before anything is opened or
    printed; uvicorn serves on this very socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use (another server?); choose another with"
                " --port or RAWEVENTS_PORT"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal, and saying "listening" only once the
    socket really listens (followed by `after_listening`, the demo's hints)."""

    after_listening: tuple[str, ...] = ()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.config.host, self.config.port
            scheme = "https" if self.config.is_ssl else "http"
            print(f"rawevents listening on {scheme}://{host}:{port}", file=sys.stderr, flush=True)
            for line in self.after_listening:
                print(line, file=sys.stderr, flush=True)


def worker_app() -> Starlette:
    """The app of one `serve --workers N` process: its settings come from the environment the
    parent filled; its services open in the app's lifespan."""
    return create_app(load_config())


def _uvicorn_config(config: Config, app: Any, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        loop="uvloop",
        http=MixpanelErrorsProtocol,
        access_log=config.access_log,
        log_config=None,
        log_level=config.log_level,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=config.shutdown_timeout_s,
        proxy_headers=True,
        forwarded_allow_ips=config.forwarded_allow_ips,
        **tls_options(config),
        **extra,
    )


def _serve_workers(config: Config, sock: socket.socket) -> None:
    """N server processes on one listening socket (a server store: all state is in ClickHouse)."""
    os.environ.update({s.env: str(getattr(config, s.name)) for s in SETTINGS})
    uv_config = _uvicorn_config(config, "rawevents.server:worker_app", factory=True, workers=config.workers)
    print(
        f"rawevents: {config.workers} workers on http://{config.host}:{config.port}",
        file=sys.stderr,
        flush=True,
    )
    Multiprocess(uv_config, sockets=[sock]).run()


def serve(config: Config) -> None:
    if config.workers > 1 and store_kind(config) in SINGLE_PROCESS:
        raise StartupError(
            "serve --workers above 1 needs a clickhouse:// store: an embedded store is owned by one process"
        )
    os.umask(PRIVATE_UMASK)
    limit_malloc_arenas()
    tls_options(config)  # a bad certificate or key fails here, in one line, before anything starts
    logging.config.dictConfig(log_config(config.log_format, config.log_level))
    check_data_dir(config.data_dir)
    sock = bind_socket(config.host, config.port)
    with contextlib.closing(sock):
        if config.workers > 1:
            _serve_workers(config, sock)
            return
        services = Services.open(config)
        try:
            if services.ingest_workers is not None:
                services.ingest_workers.warm()
            hints = announce_demo_project(services, config) if config.demo else []
            server = _Server(_uvicorn_config(config, create_app(config, services)))
            server.after_listening = tuple(hints)
            server.run(sockets=[sock])
        finally:
            services.close()
