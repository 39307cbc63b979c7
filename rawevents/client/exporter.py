"""`rawevents export` as an API: days to files, resumable, incremental, in any output format.

- Each piece (one project-local day, or the whole range with split "none") downloads to
  `NAME.part`, is read back in full (a truncated gzip stream or a cut last line is retried), is
  written in the output format to `NAME.tmp`, synced, and only then renamed to `NAME`: a file
  that exists is complete, so a rerun skips it and resumes with the next piece.
- Incremental runs keep a small JSON state file. Against rawevents they use the export cursor
  (docs/export.md): a run first pins the slice (after the previous run's cursor, up to now) in
  the state file, then fetches each piece of that slice, so a run cut short is finished by the
  next invocation with exactly the same slice. Each run's files carry the run number
  (`DAY.run0002.jsonl.gz`) and hold only what is new; days with nothing new get no file. Against
  a server without cursors (Mixpanel) each run re-fetches a lookback window of days before the
  previous run's last day, so late events are caught at the price of duplicates (deduplicate on
  `$insert_id`).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson

from rawevents.client.formats import WRITERS, Format, Record, Transform, read_lines
from rawevents.client.localtime import LocalToUtc, load_zone
from rawevents.client.mappings import fetch_mappings, write_mappings
from rawevents.client.progress import Progress, SilentProgress
from rawevents.client.transport import ClientError, Connection, HttpError

EXPORT_PATH = "/api/2.0/export"
PROJECT_PATH = "/api/rawevents/project"
CURSOR_HEADER = "x-rawevents-cursor"
TIME_HEADER = "x-rawevents-time"
STATE_VERSION = 1
_COPY = 1 << 20
Split = Literal["day", "none"]


@dataclass(frozen=True, slots=True)
class ExportOptions:
    from_date: dt.date
    to_date: dt.date
    out: Path  # a directory with split "day", the file with split "none"
    format: Format = "jsonl.gz"
    split: Split = "day"
    utc: bool = False  # turn project-local `time` into a UTC epoch
    timezone: str | None = None  # the project's zone for `utc`; None: ask the server
    events: tuple[str, ...] = ()
    where: str | None = None
    incremental: Path | None = None  # the state file of incremental runs
    lookback_days: int = 5  # incremental against servers without cursors


@dataclass(frozen=True, slots=True)
class FileResult:
    label: str  # the day, or "all" with split "none"
    path: Path | None  # None: an incremental piece with nothing new
    events: int
    skipped: bool = False  # complete from an earlier run


@dataclass
class ExportResult:
    files: list[FileResult] = field(default_factory=list)
    bytes: int = 0  # transferred, as on the wire
    seconds: float = 0.0
    mode: str = "full"  # "full", "cursor" or "lookback"
    cursor: str | None = None  # where the next incremental run starts
    mappings: int = 0  # identity mappings written (changed within an incremental run's slice)

    @property
    def events(self) -> int:
        return sum(f.events for f in self.files if not f.skipped)


@dataclass(frozen=True, slots=True)
class _Piece:
    label: str
    first: dt.date
    last: dt.date


@dataclass
class _State:
    """The incremental state file: where the last run ended, and the run in progress."""

    url: str
    mode: str | None = None
    cursor: str | None = None
    last_to: str | None = None
    run: int = 0
    pending: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None  # --event/--where the runs were made with
    version: int = STATE_VERSION

    @classmethod
    def load(cls, path: Path, url: str) -> _State:
        if not path.exists():
            return cls(url)
        try:
            data = orjson.loads(path.read_bytes())
            state = cls(**data)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ClientError(f"{path} is not a rawevents export state file") from exc
        if state.url != url:
            raise ClientError(f"{path} belongs to {state.url}, not {url}: use another state file")
        return state

    def save(self, path: Path) -> None:
        _write_atomically(path, orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))


class Exporter:
    def __init__(
        self, connection: Connection, options: ExportOptions, progress: Progress | None = None
    ) -> None:
        if options.from_date > options.to_date:
            raise ClientError(f"--from {options.from_date} is after --to {options.to_date}")
        self.connection = connection
        self.options = options
        self.progress = progress or SilentProgress()
        self.result = ExportResult()
        self._local_to_utc: Transform | None = None  # built on first need (servers without time_utc)

    def run(self) -> ExportResult:
        started = time.monotonic()
        options = self.options
        if options.split == "day":
            options.out.mkdir(parents=True, exist_ok=True)
        else:
            options.out.parent.mkdir(parents=True, exist_ok=True)
        if options.incremental is None:
            self._full()
        else:
            self._incremental(options.incremental)
        self.progress.end()
        self.result.seconds = time.monotonic() - started
        return self.result

    def _transform(self, reply: httpx.Response) -> Transform | None:
        """None when the body's `time` is already what was asked for: always without `utc`, and
        with it when the server rendered UTC itself (rawevents' `time_utc`, exact). Otherwise
        the local times are converted here, with the project's zone."""
        if not self.options.utc or reply.headers.get(TIME_HEADER) == "utc":
            return None
        if self._local_to_utc is None:
            self._local_to_utc = _utc_transform(self.options.timezone or self.project_timezone())
        return self._local_to_utc

    def project_timezone(self) -> str:
        try:
            info = self.connection.get_json(PROJECT_PATH)
        except HttpError as exc:
            if exc.status in (404, 405):
                raise ClientError(
                    "the server does not tell its project's time zone: pass --timezone"
                ) from exc
            raise
        return str(info["timezone"])

    # -- full export ------------------------------------------------------------------------

    def _full(self) -> None:
        pieces = list(self._pieces(self.options.from_date, self.options.to_date))
        self.progress.begin("days" if self.options.split == "day" else "files", len(pieces))
        for piece in pieces:
            path = self._path(piece, None)
            if path.exists():
                self._done(FileResult(piece.label, path, 0, skipped=True))
                continue
            events = self._fetch(piece, path, {}, keep_empty=True)
            self._done(FileResult(piece.label, path, events))

    # -- incremental export -----------------------------------------------------------------

    def _incremental(self, state_path: Path) -> None:
        state = _State.load(state_path, self.connection.url)
        filters = {"events": list(self.options.events), "where": self.options.where}
        if state.filters is not None and state.filters != filters:
            # Events the old filters left out are behind the cursor: they would never come.
            raise ClientError(
                f"{state_path} was made with other --event/--where filters: use a new state file"
            )
        state.filters = filters
        if state.pending is None:
            state.pending = self._plan_run(state)
            state.save(state_path)
        pending = state.pending
        self.result.mode = str(state.mode)
        first, last = dt.date.fromisoformat(pending["next"]), dt.date.fromisoformat(pending["to"])
        pieces = list(self._pieces(first, last)) if first <= last else []
        self.progress.begin("days" if self.options.split == "day" else "files", len(pieces))
        params = {
            name: pending[key]
            for name, key in (("after_cursor", "after"), ("upto_cursor", "upto"))
            if pending[key]
        }
        for piece in pieces:
            path = self._path(piece, int(pending["run"]))
            if path.exists():  # written just before the previous invocation stopped
                result = FileResult(piece.label, path, 0, skipped=True)
            else:
                events = self._fetch(piece, path, params, keep_empty=False)
                result = FileResult(piece.label, path if events else None, events)
            pending["next"] = (piece.last + dt.timedelta(days=1)).isoformat()
            state.save(state_path)
            self._done(result)
        if state.mode == "cursor":
            self._changed_mappings(pending)
            state.cursor = pending["upto"]
        state.last_to = pending["to"]
        state.run = int(pending["run"])
        state.pending = None
        state.save(state_path)
        self.result.cursor = state.cursor

    def _changed_mappings(self, pending: dict[str, Any]) -> None:
        """Write the identity mappings that changed within the run's slice (none: no file), so
        events of earlier runs can be resolved again downstream."""
        rows, _ = fetch_mappings(self.connection, pending["after"], pending["upto"])
        if rows:
            name = f"identity_mappings.run{int(pending['run']):04d}.{self.options.format}"
            folder = self.options.out if self.options.split == "day" else self.options.out.parent
            write_mappings(rows, folder / name, self.options.format)
            self.result.mappings = len(rows)

    def _plan_run(self, state: _State) -> dict[str, Any]:
        """Pin the next run's slice: the days, and (with cursors) the upper end of the slice."""
        options = self.options
        first, last = options.from_date, options.to_date
        upto = None
        if state.mode in (None, "cursor"):
            upto = self._probe_cursor(state.cursor)
            if upto is None and state.mode == "cursor":
                raise ClientError("the server no longer answers with export cursors; use a new state file")
            state.mode = "cursor" if upto is not None else "lookback"
        if state.mode == "lookback" and state.last_to is not None:
            resume = dt.date.fromisoformat(state.last_to) - dt.timedelta(days=options.lookback_days - 1)
            first = max(first, min(resume, last))
        return {
            "run": state.run + 1,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "next": first.isoformat(),
            "after": state.cursor,
            "upto": upto,
        }

    def _probe_cursor(self, after: str | None) -> str | None:
        """The server's current cursor from a HEAD request (no rows sent); None if it has none."""
        params = {**self._range_params(self.options.from_date, self.options.to_date), "cursor": "1"}
        if after:
            params["after_cursor"] = after

        def handle(reply: httpx.Response) -> str | None:
            return reply.headers.get(CURSOR_HEADER) if reply.is_success else None

        return self.connection.call(
            "HEAD", EXPORT_PATH, handle, params=params, accept=lambda r: r.status_code in (404, 405)
        )

    # -- pieces -----------------------------------------------------------------------------

    def _pieces(self, first: dt.date, last: dt.date) -> Iterator[_Piece]:
        if self.options.split == "none":
            yield _Piece("all", first, last)
            return
        day = first
        while day <= last:
            yield _Piece(day.isoformat(), day, day)
            day += dt.timedelta(days=1)

    def _path(self, piece: _Piece, run: int | None) -> Path:
        options = self.options
        ext = "." + options.format
        tag = "" if run is None else f".run{run:04d}"
        if options.split == "day":
            return options.out / f"{piece.label}{tag}{ext}"
        name = options.out.name
        if name.endswith(ext):
            return options.out.with_name(name[: -len(ext)] + tag + ext)
        return options.out.with_name(name + tag)

    def _range_params(self, first: dt.date, last: dt.date) -> dict[str, str]:
        params = {"from_date": first.isoformat(), "to_date": last.isoformat()}
        if self.options.events:
            params["event"] = orjson.dumps(list(self.options.events)).decode()
        if self.options.where:
            params["where"] = self.options.where
        if self.options.utc:
            params["time_utc"] = "1"  # rawevents renders UTC itself; others ignore it
        return params

    def _fetch(self, piece: _Piece, path: Path, extra: dict[str, str], *, keep_empty: bool) -> int:
        """Download, verify, convert and rename one piece; returns its events."""
        part = path.with_name(path.name + ".part")
        tmp = path.with_name(path.name + ".tmp")
        writer = WRITERS[self.options.format]

        def handle(reply: httpx.Response) -> int:
            gzipped = reply.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip")
            with part.open("wb") as sink:
                for chunk in reply.iter_raw(_COPY):
                    sink.write(chunk)
                    self.result.bytes += len(chunk)
                    self.progress.transferred(len(chunk))
            transform = self._transform(reply)
            if self.options.format == "jsonl.gz" and gzipped and transform is None:
                events = sum(1 for _ in read_lines(part, True))  # reading it through is the check
                os.replace(part, tmp)
            else:
                events = writer(lambda: read_lines(part, gzipped), tmp, transform)
                part.unlink()
            return events

        params = {**self._range_params(piece.first, piece.last), **extra}
        try:
            events = self.connection.call(
                "GET", EXPORT_PATH, handle, params=params, headers={"Accept-Encoding": "gzip"}
            )
        except BaseException:  # failed or interrupted (Ctrl-C): leave no partial file behind
            part.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)
            raise
        if events == 0 and not keep_empty:
            tmp.unlink()
        else:
            _sync(tmp)
            os.replace(tmp, path)
            _sync_dir(path.parent)
        return events

    def _done(self, result: FileResult) -> None:
        self.result.files.append(result)
        self.progress.unit_done(result.label, result.events, skipped=result.skipped)


def export(connection: Connection, options: ExportOptions, progress: Progress | None = None) -> ExportResult:
    """Run one export (see ExportOptions); raises ClientError when the server or network fails."""
    return Exporter(connection, options, progress).run()


def _utc_transform(zone_name: str) -> Transform:
    zone = load_zone(zone_name)

    def fresh() -> Any:
        convert = LocalToUtc(zone)

        def apply(record: Record) -> Record:
            props = record.get("properties")
            if isinstance(props, dict) and "time" in props:
                props["time"] = convert(props["time"])
            return record

        return apply

    return fresh


def _sync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as sink:
        sink.write(data)
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(tmp, path)
