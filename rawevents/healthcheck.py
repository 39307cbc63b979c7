"""`python -m rawevents.healthcheck`: the container's HEALTHCHECK, GET /healthz on this server.

It reads the same settings as `serve` (environment variables), so it follows a changed port and
switches to HTTPS when TLS is on. The certificate is not verified: it names the public host, and
this check only asks whether the process on this machine answers. Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import ssl
import sys
import urllib.request

from rawevents.settings import Config, load_config

TIMEOUT_SECONDS = 3.0


def healthz_url(config: Config) -> str:
    scheme = "https" if config.ssl_certfile else "http"
    host = "[::1]" if ":" in config.host else "127.0.0.1"
    return f"{scheme}://{host}:{config.port}/healthz"


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def check(config: Config) -> int:
    context = _unverified() if config.ssl_certfile else None
    try:
        with urllib.request.urlopen(healthz_url(config), timeout=TIMEOUT_SECONDS, context=context) as reply:
            healthy = reply.status == 200
    except OSError as exc:
        print(f"rawevents unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(check(load_config()))
