"""Every setting in one declarative table: name, default, environment variable, help.

The CLI builds its flags from this table and README documents every row (a test checks both),
so a setting cannot exist without being documented.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: Any
    env: str
    help: str
    parse: Callable[[str], Any] = str


def _bool(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        "./data",
        "RAWEVENTS_DATA_DIR",
        "Directory holding the event store and the project registry.",
    ),
    Setting("host", "127.0.0.1", "RAWEVENTS_HOST", "Address the HTTP server binds to."),
    Setting("port", 8000, "RAWEVENTS_PORT", "TCP port the HTTP server listens on.", int),
    Setting(
        "max_request_bytes",
        10 * 1024 * 1024,
        "RAWEVENTS_MAX_REQUEST_BYTES",
        "Largest accepted ingestion body in bytes, after gzip decoding (413 above it).",
        int,
    ),
    Setting(
        "max_batch_events",
        2000,
        "RAWEVENTS_MAX_BATCH_EVENTS",
        "Most events or profile updates per request.",
        int,
    ),
    Setting(
        "ingest_max_concurrent",
        128,
        "RAWEVENTS_INGEST_MAX_CONCURRENT",
        "Ingestion requests handled at once before 429 + Retry-After (backpressure); 0 disables.",
        int,
    ),
    Setting(
        "track_max_age_days",
        0,
        "RAWEVENTS_TRACK_MAX_AGE_DAYS",
        "Drop /track events older than this many days (Mixpanel uses 5); 0 keeps every age.",
        int,
    ),
    Setting(
        "commit_interval_ms",
        2,
        "RAWEVENTS_COMMIT_INTERVAL_MS",
        "How long the writer waits to gather concurrent requests into one durable commit.",
        int,
    ),
    Setting(
        "export_rate_per_hour",
        0,
        "RAWEVENTS_EXPORT_RATE_PER_HOUR",
        "Export queries per project per rolling hour before 429 (Mixpanel: 60); 0 disables.",
        int,
    ),
    Setting(
        "export_rate_per_second",
        0,
        "RAWEVENTS_EXPORT_RATE_PER_SECOND",
        "Export queries per project per second before 429 (Mixpanel: 3); 0 disables.",
        int,
    ),
    Setting(
        "export_max_concurrent",
        0,
        "RAWEVENTS_EXPORT_MAX_CONCURRENT",
        "Concurrent exports per project before 429 (Mixpanel: 100); 0 disables.",
        int,
    ),
    Setting(
        "export_max_running",
        8,
        "RAWEVENTS_EXPORT_MAX_RUNNING",
        "Exports streaming at once, server-wide; more wait for a slot, then get 503 + Retry-After.",
        int,
    ),
    Setting(
        "export_queue_seconds",
        30,
        "RAWEVENTS_EXPORT_QUEUE_SECONDS",
        "How long an export over the server-wide cap waits for a slot before its 503.",
        int,
    ),
    Setting(
        "export_memory_budget_mb",
        256,
        "RAWEVENTS_EXPORT_MEMORY_BUDGET_MB",
        "MiB shared by the running exports for engine windows and buffered output (equal shares).",
        int,
    ),
    Setting(
        "export_idle_timeout_seconds",
        60,
        "RAWEVENTS_EXPORT_IDLE_TIMEOUT_SECONDS",
        "End an export whose client accepts no data for this long (frees its slot); 0 waits forever.",
        int,
    ),
    Setting(
        "legacy_signature_auth",
        True,
        "RAWEVENTS_LEGACY_SIGNATURE_AUTH",
        "Accept the retired api_key + expire + sig request signature on query endpoints.",
        _bool,
    ),
    Setting(
        "ingest_processes",
        2,
        "RAWEVENTS_INGEST_PROCESSES",
        "Worker processes that parse and normalise large /import bodies off the server's GIL; 0: in process.",
        int,
    ),
    Setting(
        "engine_memory_limit",
        "192MB",
        "RAWEVENTS_ENGINE_MEMORY_LIMIT",
        "Memory the embedded engine may use before it spills sorts to disk (DuckDB memory_limit).",
    ),
    Setting(
        "demo",
        False,
        "RAWEVENTS_DEMO",
        "Create a demo project on start when none exists and print it.",
        _bool,
    ),
    Setting("log_level", "info", "RAWEVENTS_LOG_LEVEL", "Server log level (debug, info, warning, error)."),
)

SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Config:
    """Resolved settings; field names match the table above."""

    data_dir: str = field(default=SETTINGS_BY_NAME["data_dir"].default)
    host: str = field(default=SETTINGS_BY_NAME["host"].default)
    port: int = field(default=SETTINGS_BY_NAME["port"].default)
    max_request_bytes: int = field(default=SETTINGS_BY_NAME["max_request_bytes"].default)
    max_batch_events: int = field(default=SETTINGS_BY_NAME["max_batch_events"].default)
    ingest_max_concurrent: int = field(default=SETTINGS_BY_NAME["ingest_max_concurrent"].default)
    track_max_age_days: int = field(default=SETTINGS_BY_NAME["track_max_age_days"].default)
    commit_interval_ms: int = field(default=SETTINGS_BY_NAME["commit_interval_ms"].default)
    export_rate_per_hour: int = field(default=SETTINGS_BY_NAME["export_rate_per_hour"].default)
    export_rate_per_second: int = field(default=SETTINGS_BY_NAME["export_rate_per_second"].default)
    export_max_concurrent: int = field(default=SETTINGS_BY_NAME["export_max_concurrent"].default)
    export_max_running: int = field(default=SETTINGS_BY_NAME["export_max_running"].default)
    export_queue_seconds: int = field(default=SETTINGS_BY_NAME["export_queue_seconds"].default)
    export_memory_budget_mb: int = field(default=SETTINGS_BY_NAME["export_memory_budget_mb"].default)
    export_idle_timeout_seconds: int = field(default=SETTINGS_BY_NAME["export_idle_timeout_seconds"].default)
    legacy_signature_auth: bool = field(default=SETTINGS_BY_NAME["legacy_signature_auth"].default)
    ingest_processes: int = field(default=SETTINGS_BY_NAME["ingest_processes"].default)
    engine_memory_limit: str = field(default=SETTINGS_BY_NAME["engine_memory_limit"].default)
    demo: bool = field(default=SETTINGS_BY_NAME["demo"].default)
    log_level: str = field(default=SETTINGS_BY_NAME["log_level"].default)

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_config(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Defaults, then environment variables, then explicit overrides (CLI flags)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.env in env:
            values[setting.name] = setting.parse(env[setting.env])
    return Config(**values).with_overrides(**overrides)


assert {f.name for f in fields(Config)} == set(SETTINGS_BY_NAME), (
    "Config and SETTINGS must list the same names"
)
