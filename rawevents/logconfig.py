"""Server logging: uvicorn's loggers and ours through one handler, as text or JSON lines.

Access lines carry the request target, and clients put credentials in query strings (`api_secret`,
the legacy `sig`, `api_key` on old `/import` SDKs) and whole events in `data`: those values are
replaced by `[REDACTED]` before any formatter sees the line. Headers are never logged.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import orjson

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[REDACTED]"
# Query parameters whose values never reach a log line (compared in lower case, after decoding).
SECRET_PARAMS = frozenset(
    {"api_secret", "secret", "sig", "api_key", "token", "password", "access_token", "data"}
)
# Fast path: a query string without any of those names (nor escapes that could spell one) is kept.
_MAYBE_SECRET = re.compile(
    r"%|\+|(?:^|&)(?:" + "|".join(sorted(SECRET_PARAMS)) + r")=", re.IGNORECASE | re.ASCII
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def redact_target(target: str) -> str:
    """`path?query` with the values of SECRET_PARAMS replaced; everything else kept as sent."""
    path, sep, query = target.partition("?")
    if not sep or _MAYBE_SECRET.search(query) is None:
        return target
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if eq and unquote_plus(name).lower() in SECRET_PARAMS else pair)
    return f"{path}?{'&'.join(pairs)}"


def _access_args(record: logging.LogRecord) -> tuple[Any, ...] | None:
    """uvicorn's access record arguments: (client, method, path?query, HTTP version, status)."""
    args = record.args
    if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == len(_ACCESS_FIELDS):
        return args
    return None


class RedactQuerySecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = _access_args(record)
        if args is not None:
            record.args = (args[0], args[1], redact_target(str(args[2])), *args[3:])
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message; access lines also
    carry their fields (client, method, path, http_version, status); exceptions their traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        args = _access_args(record)
        if args is not None:
            entry.update(zip(_ACCESS_FIELDS, args, strict=True))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` document: every logger (uvicorn's propagate) goes to stderr
    through the redaction filter, at `level`."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"redact": {"()": RedactQuerySecrets}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["redact"],
            }
        },
        "loggers": {
            name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error", ACCESS_LOGGER)
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }
