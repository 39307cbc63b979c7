"""`rawevents export` as an API: days to files, resumable, incremental, in any output format.

- Each piece (one project-local day, or the whole range with split "none") downloads to
  `NAME.part`, is read back in full (a truncated gzip stream or a cut last line is retried), is
  written in the output format to `NAME.tmp`, synced, and only then renamed to `NAME`: a file
  that exists is complete, so a rerun skips it and resumes with the next piece. Parquet is
  parsed while its piece downloads (the check happens on the way) and written while the next
  piece downloads: one piece at a time is being finished in the background, in order.
- Incremental runs keep a small JSON state file. Against rawevents they use the export cursor
  (docs/export.md): a run first pins the slice (after the previous run's cursor, up to now) in
  the state file, then fetches each piece of that slice, so a run cut short is finished by the
  next invocation with exactly the same slice. Each run's files carry the run number
  (`DAY.run0002.jsonl.gz`) and hold only what is new; days with nothing new get no file. Against
  a server without cursors (Mixpanel) each run re-fetches a lookback window of days before the
  previous run's last day, so late events are caught at the price of duplicates (deduplicate on
  `$insert_id`).
- Nothing is written before the server has accepted the whole request: one `HEAD` of the full
  range (no rows sent) lets it refuse a day after today, a bad `where` or bad credentials first.
- The output's name decides its layout (`output_layout`): `NAME.jsonl`, `.jsonl.gz`, `.csv`,
  `.parquet` is one file of that format; any other name a directory of day files.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson

from rawevents.client.formats import (
    FORMATS,
    WRITERS,
    Body,
    BodyDecoder,
    Format,
    ParquetBuilder,
    TimeMap,
    read_lines,
    utc_hook,
)
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
_LATEST_ZONE = dt.timedelta(hours=14)  # UTC+14: no project's today is later than UTC's + 14 h
Split = Literal["day", "none"]
SPLITS: tuple[Split, ...] = ("day", "none")
# Names that look like a file but are no output format: a directory of that name is a trap.
_NOT_FORMATS = (".json", ".ndjson", ".gz", ".txt", ".tsv", ".zst", ".csv.gz", ".parquet.gz")


def format_of(out: Path) -> Format | None:
    """The format `out`'s extension names (`x.jsonl.gz`: jsonl.gz), None for no known extension."""
    name = out.name.lower()
    for fmt in sorted(FORMATS, key=len, reverse=True):
        if name.endswith("." + fmt) and len(name) > len(fmt) + 1:
            return fmt
    return None


def output_layout(out: Path, fmt: Format | None = None, split: Split | None = None) -> tuple[Format, Split]:
    """The format and split for `out`, as the CLI reads `--out`, `--format` and `--split`: a name
    with a format's extension is one file of that format (so `--split none`); any other name is a
    directory of day files (`--format` default jsonl.gz). Raises ClientError on a contradiction."""
    named = format_of(out)
    if named is None:
        lowered = out.name.lower()
        if lowered.endswith(_NOT_FORMATS):
            raise ClientError(
                f"--out {out.name}: not an output format's extension; name a file .jsonl, .jsonl.gz, "
                ".csv or .parquet, or a directory (one file per day)"
            )
        return fmt or "jsonl.gz", split or "day"
    if fmt is not None and fmt != named:
        raise ClientError(f"--out {out.name} names a {named} file, but --format is {fmt}")
    if split == "day":
        raise ClientError(
            f"--out {out.name} names one file, but --split day writes a directory of day files: "
            "pass a directory name"
        )
    return named, "none"


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
class _Fetched:
    """A downloaded, verified piece: `finish` completes it (returns its events), `discard` drops it."""

    finish: Callable[[], int]
    discard: Callable[[], None]


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
        latest = (dt.datetime.now(dt.UTC) + _LATEST_ZONE).date()
        if options.to_date > latest:
            raise ClientError(f"--to {options.to_date} is in the future (no time zone has reached it yet)")
        if options.format not in FORMATS or options.split not in SPLITS:
            raise ClientError(f"unknown format {options.format!r} or split {options.split!r}")
        if output_layout(options.out, options.format, options.split) != (options.format, options.split):
            raise ClientError(f"{options.out.name} names one file: export it with split 'none'")
        if options.timezone is not None:
            load_zone(options.timezone)  # an unknown zone fails now, used or not
        self.connection = connection
        self.options = options
        self.progress = progress or SilentProgress()
        self.result = ExportResult()
        self._local_to_utc: TimeMap | None = None  # built on first need (servers without time_utc)
        # The piece being finished in the background while the next one downloads.
        self._finisher = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rawevents-export")
        self._finishing: tuple[futures.Future[int], Callable[[int], None]] | None = None

    def run(self) -> ExportResult:
        started = time.monotonic()
        options = self.options
        state = None if options.incremental is None else self._state(options.incremental)
        self._preflight()
        if options.split == "day":
            options.out.mkdir(parents=True, exist_ok=True)
        else:
            options.out.parent.mkdir(parents=True, exist_ok=True)
        try:
            if options.incremental is None or state is None:
                self._full()
            else:
                self._incremental(options.incremental, state)
        finally:  # failed or interrupted: the piece being finished completes (or cleans up) first
            if self._finishing is not None:
                futures.wait([self._finishing[0]])
            self._finisher.shutdown()
        self.progress.end()
        self.result.seconds = time.monotonic() - started
        return self.result

    def _preflight(self) -> None:
        """Have the server check the whole request (days, filters, credentials) with one HEAD, so
        a refusal comes before any file. A HEAD answer has no body: a refusal is asked again as a
        GET of one event for the server's message. Servers without HEAD are not asked."""
        params = self._range_params(self.options.from_date, self.options.to_date)
        try:
            self.connection.call(
                "HEAD",
                EXPORT_PATH,
                lambda r: None,
                params=params,
                accept=lambda r: r.status_code in (404, 405),
            )
        except HttpError as refused:
            try:
                self.connection.call("GET", EXPORT_PATH, lambda r: None, params={**params, "limit": "1"})
            except HttpError as explained:
                raise explained from None
            raise refused from None

    def _transform(self, reply: httpx.Response) -> TimeMap | None:
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
                self._settle()
                self._done(FileResult(piece.label, path, 0, skipped=True))
                continue
            self._then(self._fetch(piece, path, {}, keep_empty=True), self._report(piece, path))
        self._settle()

    def _report(self, piece: _Piece, path: Path) -> Callable[[int], None]:
        return lambda events: self._done(FileResult(piece.label, path, events))

    # -- incremental export -----------------------------------------------------------------

    def _state(self, state_path: Path) -> _State:
        """The state file, checked against this export (before anything is asked or written)."""
        state = _State.load(state_path, self.connection.url)
        filters = {"events": list(self.options.events), "where": self.options.where}
        if state.filters is not None and state.filters != filters:
            # Events the old filters left out are behind the cursor: they would never come.
            raise ClientError(
                f"{state_path} was made with other --event/--where filters: use a new state file"
            )
        state.filters = filters
        return state

    def _incremental(self, state_path: Path, state: _State) -> None:
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

        def done(piece: _Piece, path: Path, skipped: bool = False) -> Callable[[int], None]:
            def record(events: int) -> None:
                pending["next"] = (piece.last + dt.timedelta(days=1)).isoformat()
                state.save(state_path)
                self._done(FileResult(piece.label, path if events or skipped else None, events, skipped))

            return record

        for piece in pieces:
            path = self._path(piece, int(pending["run"]))
            if path.exists():  # written just before the previous invocation stopped
                self._settle()
                done(piece, path, skipped=True)(0)
                continue
            self._then(self._fetch(piece, path, params, keep_empty=False), done(piece, path))
        self._settle()
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

    def _then(self, fetched: _Fetched, done: Callable[[int], None]) -> None:
        """Finish the previous piece (its `done` runs now, in order), then start finishing this
        one in the background."""
        try:
            self._settle()
        except BaseException:
            fetched.discard()
            raise
        self._finishing = (self._finisher.submit(fetched.finish), done)

    def _settle(self) -> None:
        if self._finishing is None:
            return
        finishing, done = self._finishing
        self._finishing = None
        try:
            events = finishing.result()
        except BaseException:  # it failed (and removed its files), or Ctrl-C: let it end first
            futures.wait([finishing])
            raise
        done(events)

    def _fetch(self, piece: _Piece, path: Path, extra: dict[str, str], *, keep_empty: bool) -> _Fetched:
        """Download and verify one piece; what is left to do (the rest of its conversion, the
        sync and the rename to its name) is returned, to run while the next piece downloads."""
        part = path.with_name(path.name + ".part")
        tmp = path.with_name(path.name + ".tmp")
        writer = WRITERS[self.options.format]

        def handle(reply: httpx.Response) -> _Fetched:
            gzipped = reply.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip")
            if self.options.format == "parquet":
                return self._parquet(reply, part, tmp, gzipped)
            self._download(reply, part, None)
            transform = self._transform(reply)
            if self.options.format == "jsonl.gz" and gzipped and transform is None:
                events = sum(1 for _ in read_lines(part, True))  # reading it through is the check
                os.replace(part, tmp)
            else:
                events = writer(Body(part, gzipped), tmp, transform, self.options.utc)
                part.unlink()
            return _Fetched(lambda: events, lambda: None)

        def discard(fetched: _Fetched | None = None) -> None:  # leave no partial file behind
            if fetched is not None:
                fetched.discard()
            part.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)

        params = {**self._range_params(piece.first, piece.last), **extra}
        try:
            fetched = self.connection.call(
                "GET", EXPORT_PATH, handle, params=params, headers={"Accept-Encoding": "gzip"}
            )
        except BaseException:  # failed or interrupted (Ctrl-C)
            discard()
            raise

        def finish() -> int:
            try:
                events = fetched.finish()
                if events == 0 and not keep_empty:
                    tmp.unlink()
                else:
                    _sync(tmp)
                    os.replace(tmp, path)
                    _sync_dir(path.parent)
            except BaseException:
                discard(fetched)
                raise
            return events

        return _Fetched(finish, lambda: discard(fetched))

    def _download(self, reply: httpx.Response, part: Path, decoder: BodyDecoder | None) -> None:
        with part.open("wb") as sink:
            for chunk in reply.iter_raw(_COPY):
                sink.write(chunk)
                if decoder is not None:
                    decoder.feed(chunk)
                self.result.bytes += len(chunk)
                self.progress.transferred(len(chunk))

    def _parquet(self, reply: httpx.Response, part: Path, tmp: Path, gzipped: bool) -> _Fetched:
        """Parquet is built while the body downloads (Arrow parses each block of lines as it
        arrives, which is also the check); written once every column's type is known."""
        hook = utc_hook(self.options.utc)
        builder = ParquetBuilder(tmp.parent, time_map=self._transform(reply), time_hook=hook)
        try:
            decoder = BodyDecoder(gzipped, builder.add)
            self._download(reply, part, decoder)
            decoder.end()
        except BaseException:
            builder.close()
            raise

        def finish() -> int:
            try:
                return builder.write(tmp, Body(part, gzipped).blocks)
            finally:
                builder.close()
                part.unlink(missing_ok=True)

        return _Fetched(finish, builder.close)

    def _done(self, result: FileResult) -> None:
        self.result.files.append(result)
        self.progress.unit_done(result.label, result.events, skipped=result.skipped)


def export(connection: Connection, options: ExportOptions, progress: Progress | None = None) -> ExportResult:
    """Run one export (see ExportOptions); raises ClientError when the server or network fails."""
    return Exporter(connection, options, progress).run()


def _utc_transform(zone_name: str) -> TimeMap:
    zone = load_zone(zone_name)
    return lambda: LocalToUtc(zone)


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
