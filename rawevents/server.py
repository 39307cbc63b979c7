"""Start and stop the server (uvicorn on uvloop + httptools; access log off: it costs throughput).

Start: private file modes, then the checks that turn an operator's mistake into one line instead
of a traceback (data directory not writable, port taken, store in use by another server), then
the store and the ingest workers, and only then "listening".

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
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import uvicorn

from rawevents.errors import StartupError
from rawevents.http.app import create_app
from rawevents.http.protocol import MixpanelErrorsProtocol
from rawevents.service import Services, ensure_demo_project
from rawevents.settings import PRIVATE_UMASK, Config

_M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads their own malloc arenas; with DuckDB's, the compressors' and the
    writer's threads, buffers freed after an export stay mapped and RSS creeps up export after
    export (355 → 387 MiB over three 1M-row exports). Two arenas keep it flat (≤ 367 MiB over
    six). Must run before those threads start; a no-op where libc has no mallopt."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas)


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
    socket really listens."""

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
            print(f"rawevents listening on http://{host}:{port}", file=sys.stderr, flush=True)


def serve(config: Config) -> None:
    os.umask(PRIVATE_UMASK)
    limit_malloc_arenas()
    check_data_dir(config.data_dir)
    sock = bind_socket(config.host, config.port)
    with contextlib.closing(sock):
        services = Services.open(config)
        try:
            if services.ingest_workers is not None:
                services.ingest_workers.warm()
            if config.demo:
                project = ensure_demo_project(services.registry)
                print(
                    "rawevents demo project:", json.dumps(project.public_dict()), file=sys.stderr, flush=True
                )
            server = _Server(
                uvicorn.Config(
                    create_app(config, services),
                    host=config.host,
                    port=config.port,
                    loop="uvloop",
                    http=MixpanelErrorsProtocol,
                    access_log=False,
                    log_level=config.log_level,
                    timeout_keep_alive=75,
                    timeout_graceful_shutdown=config.shutdown_timeout_s,
                )
            )
            server.run(sockets=[sock])
        finally:
            services.close()
