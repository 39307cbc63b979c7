"""A data pipeline's definition and run state, as the registry keeps them (docs/pipelines.md).

The definition (project, destination, format, schedule, filters) never changes after creation;
the status (`active`, `paused`, `ended`) is changed by people (CLI, HTTP); the run state (cursor,
run number, the run in progress, failures) only by the runner that holds the pipeline's lease.
Keeping the three apart means a `pause` never races with a run's commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rawevents.errors import BadRequest

ACTIVE, PAUSED, ENDED = "active", "paused", "ended"
STATUSES = (ACTIVE, PAUSED, ENDED)
FORMATS = ("jsonl.gz", "parquet")
PipelineFormat = Literal["jsonl.gz", "parquet"]
SCHEMES = ("file", "s3", "gs", "gcs", "az", "abfs", "abfss")
DEFAULT_EVERY_S = 3600
MIN_EVERY_S = 1
FIRST_DAY = dt.date(1970, 1, 1)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_EVERY = re.compile(r"(\d+)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str | int) -> int:
    """`--every`: seconds, or a number with s/m/h/d (`90`, `15m`, `1h`, `1d`)."""
    match = _EVERY.fullmatch(str(text).strip().lower())
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if seconds < MIN_EVERY_S:
        raise BadRequest(
            f"every must be a number of seconds or like 15m, 1h, 1d (at least 1 s), got {text!r}"
        )
    return seconds


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BadRequest(
            f"pipeline name must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter or"
            f" digit), got {name!r}"
        )
    return name


def default_name(project_id: int, destination: str) -> str:
    """A stable name from the project and the destination (the same pipeline twice is refused)."""
    return f"p{project_id}-{hashlib.sha256(destination.encode()).hexdigest()[:8]}"


def check_destination(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise BadRequest(
            f"destination must be file:///path, s3://bucket/prefix, gs://bucket/prefix or"
            f" az://container/prefix, got {url!r}"
        )
    if scheme == "file" and not url.startswith("file:///"):
        raise BadRequest(f"a file destination needs an absolute path (file:///path), got {url!r}")
    return url


def check_format(fmt: str) -> PipelineFormat:
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt  # type: ignore[return-value]


def parse_day(text: str | None) -> dt.date:
    if text is None or not str(text).strip():
        return FIRST_DAY
    try:
        day = dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise BadRequest(f"from must be a day formatted YYYY-MM-DD, got {text!r}") from None
    if day < FIRST_DAY:
        raise BadRequest(f"from cannot be earlier than {FIRST_DAY.isoformat()}, got {text!r}")
    return day


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """What a pipeline delivers, where and how often: fixed at creation."""

    name: str
    project_id: int
    destination: str
    format: PipelineFormat = "jsonl.gz"
    every_s: int = DEFAULT_EVERY_S
    from_day: str = FIRST_DAY.isoformat()
    events: tuple[str, ...] = ()
    where: str | None = None
    created_at_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["events"] = list(self.events)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PipelineSpec:
        return cls(**{**data, "events": tuple(data.get("events") or ())})


@dataclass(slots=True)
class RunState:
    """Where the runner is: everything at or below `cursor` is delivered (committed runs
    1..`run`); `pending` is the run in progress (its slice pinned, its object names listed
    before each is written), redone with the same names after a crash or an error."""

    cursor: int = 0
    run: int = 0
    pending: dict[str, Any] | None = None
    attempt: int = 0  # attempts of the pending run that failed
    failures: int = 0  # consecutive failed attempts (backoff)
    next_attempt_ms: int = 0
    error: str | None = None
    last_run_ms: int = 0  # when the last run was committed
    pinned_ms: int = 0  # when the last run started (its slice was pinned): runs are `every` apart
    delivered_ms: int = 0  # when the committed cursor was read: the lag is measured from it
    rewrites: int = 0  # deletion rewrites done (names their objects)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RunState:
        if not data:
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class Pipeline:
    spec: PipelineSpec
    status: str
    state: RunState

    @property
    def name(self) -> str:
        return self.spec.name

    def public_dict(self) -> dict[str, Any]:
        """What the CLI and HTTP show."""
        spec = self.spec
        state = self.state
        return {
            "name": spec.name,
            "project_id": spec.project_id,
            "to": spec.destination,
            "format": spec.format,
            "every_seconds": spec.every_s,
            "from": spec.from_day,
            "events": list(spec.events),
            "where": spec.where,
            "status": self.status,
            "created": _iso(spec.created_at_ms),
            "runs_committed": state.run,
            "cursor_position": state.cursor,
            "running": state.pending is not None,
            "last_run": _iso(state.last_run_ms) if state.last_run_ms else None,
            "failures": state.failures,
            "error": state.error,
        }


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def run_public(run: dict[str, Any]) -> dict[str, Any]:
    """A run row (the registry's JSON) as `pipeline status` shows it."""
    shown = dict(run)
    for key in ("started_ms", "finished_ms"):
        if shown.get(key):
            shown[key.removesuffix("_ms")] = _iso(int(shown.pop(key)))
    return shown
