"""Every setting in one declarative table: name, default, environment variable, help.

The CLI builds its flags from this table and README documents every row (a test checks both),
so a setting cannot exist without being documented.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rawevents.errors import RawEventsError


class SettingError(RawEventsError):
    """A setting with a value it cannot take; the message names the setting and where it came from."""

    code = "bad_setting"


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: Any
    env: str
    help: str
    parse: Callable[[str], Any] = str


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false")


def _int(minimum: int = 0, maximum: int | None = None) -> Callable[[str], int]:
    """An integer parser with bounds, so a negative size or a port of 70000 fails at start."""
    bounds = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected {bounds}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(f"expected {bounds}")
        return value

    return parse


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a non-empty value")
    return text


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


_SIZE = re.compile(r"\d+(\.\d+)?\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?", re.IGNORECASE)


def _size(text: str) -> str:
    if not _SIZE.fullmatch(text.strip()):
        raise ValueError("expected a size such as 192MB or 1GB")
    return text.strip()


def redact_store(store: str) -> str:
    """The store setting with any password replaced by `***` (for logs and messages)."""
    return re.sub(r"^([a-z]+://[^:/@]*:)[^/?#]*@", r"\1***@", store)


def _store(text: str) -> str:
    value = text.strip()
    if value in ("duckdb", "chdb"):
        return value
    parts = urlsplit(value)
    if parts.scheme == "clickhouse" and parts.hostname:
        return value
    # Raised as SettingError here, not ValueError: the message must not echo a password.
    raise SettingError(
        f"setting store: expected duckdb, chdb or clickhouse://user:password@host:8123/database,"
        f" got {redact_store(value)!r}"
    )


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        "./data",
        "RAWEVENTS_DATA_DIR",
        "Directory holding the event store and the project registry.",
        _text,
    ),
    Setting(
        "store",
        "duckdb",
        "RAWEVENTS_STORE",
        "Event store: `duckdb` (embedded, under data_dir), `chdb` (ClickHouse engine in process,"
        " under data_dir) or `clickhouse://user:password@host:8123/database[?cluster=NAME]`"
        " (a ClickHouse server or cluster over HTTP).",
        _store,
    ),
    Setting(
        "workers",
        1,
        "RAWEVENTS_WORKERS",
        "Server processes (`serve --workers N`); above 1 only with a `clickhouse://` store.",
        _int(1),
    ),
    Setting("host", "127.0.0.1", "RAWEVENTS_HOST", "Address the HTTP server binds to.", _text),
    Setting("port", 8000, "RAWEVENTS_PORT", "TCP port the HTTP server listens on.", _int(1, 65535)),
    Setting(
        "max_request_bytes",
        10 * 1024 * 1024,
        "RAWEVENTS_MAX_REQUEST_BYTES",
        "Largest accepted ingestion body in bytes, after gzip decoding (413 above it).",
        _int(1),
    ),
    Setting(
        "max_batch_events",
        2000,
        "RAWEVENTS_MAX_BATCH_EVENTS",
        "Most events or profile updates per request.",
        _int(1),
    ),
    Setting(
        "ingest_max_concurrent",
        128,
        "RAWEVENTS_INGEST_MAX_CONCURRENT",
        "Ingestion requests handled at once before 429 + Retry-After (backpressure); 0 disables.",
        _int(),
    ),
    Setting(
        "track_max_age_days",
        0,
        "RAWEVENTS_TRACK_MAX_AGE_DAYS",
        "Drop /track events older than this many days (Mixpanel uses 5); 0 keeps every age.",
        _int(),
    ),
    Setting(
        "commit_interval_ms",
        2,
        "RAWEVENTS_COMMIT_INTERVAL_MS",
        "How long the writer waits to gather concurrent requests into one durable commit.",
        _int(),
    ),
    Setting(
        "export_rate_per_hour",
        0,
        "RAWEVENTS_EXPORT_RATE_PER_HOUR",
        "Export queries per project per rolling hour before 429 (Mixpanel: 60); 0 disables.",
        _int(),
    ),
    Setting(
        "export_rate_per_second",
        0,
        "RAWEVENTS_EXPORT_RATE_PER_SECOND",
        "Export queries per project per second before 429 (Mixpanel: 3); 0 disables.",
        _int(),
    ),
    Setting(
        "export_max_concurrent",
        0,
        "RAWEVENTS_EXPORT_MAX_CONCURRENT",
        "Concurrent exports per project before 429 (Mixpanel: 100); 0 disables.",
        _int(),
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
        "export_nice",
        10,
        "RAWEVENTS_EXPORT_NICE",
        "Lower CPU priority (added nice, 0-19) of export scan and compression threads, so ingestion"
        " gets the cores first while exports run; 0: same priority.",
        _int(0, 19),
    ),
    Setting(
        "query_max_cells",
        1_000_000,
        "RAWEVENTS_QUERY_MAX_CELLS",
        "Most cells (`limit` x buckets) one segmentation answer may hold; more is a 400 naming a smaller"
        " `limit`, a coarser `unit` or a shorter range. Query answers also stay within one export's"
        " share of `export_memory_budget_mb`.",
        _int(1),
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
        _int(),
    ),
    Setting(
        "engine_memory_limit",
        "144MB",
        "RAWEVENTS_ENGINE_MEMORY_LIMIT",
        "Memory the embedded engine may use before it spills sorts to disk (DuckDB memory_limit); a full"
        " export fills it with cached blocks, so the server's peak RSS is about this plus 230 MB.",
        _size,
    ),
    Setting(
        "compact_rows",
        50_000,
        "RAWEVENTS_COMPACT_ROWS",
        "Events the store gathers before its background compactor sorts them into time-ordered runs.",
        _int(1),
    ),
    Setting(
        "line_compression",
        "uncompressed",
        "RAWEVENTS_LINE_COMPRESSION",
        "How the embedded store keeps event lines on disk: `uncompressed` (fastest exports) or `zstd`"
        " (about 4x smaller files, full exports about 1.5x slower to read). Applies to a new store.",
        _choice("uncompressed", "zstd"),
    ),
    Setting(
        "demo",
        False,
        "RAWEVENTS_DEMO",
        "Create a demo project on start when none exists, fill it with 30 days of sample traffic when it"
        " has no events (rawevents.demo), and print it with the explorer's address.",
        _bool,
    ),
    Setting(
        "retention_interval_seconds",
        3600,
        "RAWEVENTS_RETENTION_INTERVAL_SECONDS",
        "How often the server drops events older than each project's retention; 0: only on start.",
        _int(),
    ),
    Setting(
        "gdpr_deletion_delay_seconds",
        0,
        "RAWEVENTS_GDPR_DELETION_DELAY_SECONDS",
        "How long a GDPR deletion waits (PENDING, cancellable) before it runs.",
        _int(),
    ),
    Setting(
        "gdpr_retrieval_expiry_seconds",
        259_200,
        "RAWEVENTS_GDPR_RETRIEVAL_EXPIRY_SECONDS",
        "How long a GDPR retrieval's zip is kept after it is written (3 days); then it is deleted, the"
        " task's `results` link is empty and its download a 404. 0 keeps zips until their project is"
        " deleted.",
        _int(),
    ),
    Setting(
        "pipeline_retry_max_seconds",
        60,
        "RAWEVENTS_PIPELINE_RETRY_MAX_SECONDS",
        "Longest wait before a failed data-pipeline run is tried again (waits start at 1 s and double).",
        _int(1),
    ),
    Setting(
        "pipeline_object_rows",
        1_000_000,
        "RAWEVENTS_PIPELINE_OBJECT_ROWS",
        "Most events in one data-pipeline object; a run's day with more is cut into several objects.",
        _int(1),
    ),
    Setting(
        "log_level",
        "info",
        "RAWEVENTS_LOG_LEVEL",
        "Server log level (debug, info, warning, error, critical).",
        _choice("debug", "info", "warning", "error", "critical"),
    ),
    Setting(
        "shutdown_timeout_s",
        10,
        "RAWEVENTS_SHUTDOWN_TIMEOUT_S",
        "On SIGTERM/SIGINT, seconds in-flight requests and exports get to finish before they are cut.",
        _int(),
    ),
    Setting(
        "ingest_job_timeout_s",
        60,
        "RAWEVENTS_INGEST_JOB_TIMEOUT_S",
        "Seconds an ingest worker process may spend on one body before it is killed and replaced (503).",
        _int(1),
    ),
    Setting(
        "log_format",
        "text",
        "RAWEVENTS_LOG_FORMAT",
        "Server log lines as `text` or `json` (one JSON object per line).",
        _choice("text", "json"),
    ),
    Setting(
        "access_log",
        True,
        "RAWEVENTS_ACCESS_LOG",
        "Log one line per HTTP request (query-string credentials and `data` redacted).",
        _bool,
    ),
    Setting(
        "ssl_certfile",
        "",
        "RAWEVENTS_SSL_CERTFILE",
        "PEM certificate (chain) file: serve HTTPS instead of HTTP. Needs `ssl_keyfile`.",
    ),
    Setting("ssl_keyfile", "", "RAWEVENTS_SSL_KEYFILE", "PEM private key file of `ssl_certfile`."),
    Setting(
        "forwarded_allow_ips",
        "127.0.0.1",
        "RAWEVENTS_FORWARDED_ALLOW_IPS",
        "Comma-separated proxy addresses/networks whose X-Forwarded-For gives the client IP; `*` trusts any.",
    ),
)

SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Config:
    """Resolved settings; field names match the table above."""

    data_dir: str = field(default=SETTINGS_BY_NAME["data_dir"].default)
    store: str = field(default=SETTINGS_BY_NAME["store"].default)
    workers: int = field(default=SETTINGS_BY_NAME["workers"].default)
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
    export_nice: int = field(default=SETTINGS_BY_NAME["export_nice"].default)
    query_max_cells: int = field(default=SETTINGS_BY_NAME["query_max_cells"].default)
    legacy_signature_auth: bool = field(default=SETTINGS_BY_NAME["legacy_signature_auth"].default)
    ingest_processes: int = field(default=SETTINGS_BY_NAME["ingest_processes"].default)
    engine_memory_limit: str = field(default=SETTINGS_BY_NAME["engine_memory_limit"].default)
    compact_rows: int = field(default=SETTINGS_BY_NAME["compact_rows"].default)
    line_compression: str = field(default=SETTINGS_BY_NAME["line_compression"].default)
    demo: bool = field(default=SETTINGS_BY_NAME["demo"].default)
    retention_interval_seconds: int = field(default=SETTINGS_BY_NAME["retention_interval_seconds"].default)
    gdpr_deletion_delay_seconds: int = field(default=SETTINGS_BY_NAME["gdpr_deletion_delay_seconds"].default)
    gdpr_retrieval_expiry_seconds: int = field(
        default=SETTINGS_BY_NAME["gdpr_retrieval_expiry_seconds"].default
    )
    pipeline_retry_max_seconds: int = field(default=SETTINGS_BY_NAME["pipeline_retry_max_seconds"].default)
    pipeline_object_rows: int = field(default=SETTINGS_BY_NAME["pipeline_object_rows"].default)
    log_level: str = field(default=SETTINGS_BY_NAME["log_level"].default)
    shutdown_timeout_s: int = field(default=SETTINGS_BY_NAME["shutdown_timeout_s"].default)
    ingest_job_timeout_s: int = field(default=SETTINGS_BY_NAME["ingest_job_timeout_s"].default)
    log_format: str = field(default=SETTINGS_BY_NAME["log_format"].default)
    access_log: bool = field(default=SETTINGS_BY_NAME["access_log"].default)
    ssl_certfile: str = field(default=SETTINGS_BY_NAME["ssl_certfile"].default)
    ssl_keyfile: str = field(default=SETTINGS_BY_NAME["ssl_keyfile"].default)
    forwarded_allow_ips: str = field(default=SETTINGS_BY_NAME["forwarded_allow_ips"].default)

    def __repr__(self) -> str:
        # The store URL may carry a password: never print it (logs, tracebacks).
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["store"] = redact_store(self.store)
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


CONFIG_ENV = "RAWEVENTS_CONFIG"
PRIVATE_UMASK = 0o077  # files 0600, directories 0700: event data and secrets are nobody else's


def load_config(
    environ: Mapping[str, str] | None = None,
    *,
    config_file: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Config:
    """Defaults, then the TOML config file (`config_file`, else $RAWEVENTS_CONFIG), then environment
    variables, then command-line `flags` (text, parsed like the others), then `overrides` (already
    typed; for tests and callers). Any bad value raises SettingError naming the setting."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get(CONFIG_ENV)
    if path:
        values.update(_from_file(Path(path)))
    for setting in SETTINGS:
        if setting.env in env:
            values[setting.name] = _parse(setting, env[setting.env], setting.env)
    for name, value in (flags or {}).items():
        if value is not None:
            setting = SETTINGS_BY_NAME[name]
            values[name] = value if isinstance(value, bool) else _parse(setting, value, _flag(name))
    return Config(**values).with_overrides(**overrides)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(setting: Setting, text: str, source: str) -> Any:
    try:
        return setting.parse(text)
    except ValueError as exc:
        raise SettingError(f"setting {setting.name} ({source}): {exc}, got {text!r}") from None


def _from_file(path: Path) -> dict[str, Any]:
    """Settings from a TOML file whose top-level keys are setting names; unknown keys fail."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingError(f"config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingError(f"config file {path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in document.items():
        setting = SETTINGS_BY_NAME.get(key)
        if setting is None:
            raise SettingError(f"config file {path}: unknown setting {key!r} (see README, Settings)")
        values[key] = _parse(setting, _toml_text(value), f"{key} in {path}")
    return values


def _toml_text(value: Any) -> str:
    """A TOML scalar as the text the setting's parser reads (true → "true", 8000 → "8000")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    return repr(value)  # floats, arrays, tables: the parser rejects them and the message shows them


assert {f.name for f in fields(Config)} == set(SETTINGS_BY_NAME), (
    "Config and SETTINGS must list the same names"
)
