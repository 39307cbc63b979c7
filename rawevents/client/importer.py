"""`rawevents import` as an API: JSONL / JSONL.gz / Parquet files to a server's `/import`.

- Batches hold at most `batch_events` events and `max_body_bytes` of JSON (the server's limits
  are 2000 events and 10 MB after decoding by default; a server configured lower answers 413 and
  the batch is split in halves), sent gzip-compressed, `concurrency` at a time, with `strict=1`
  so each bad record comes back with its reason; failures are reported as FILE:LINE with the
  server's message, the rest of the file is still imported.
- Export files are sorted by time, and the server orders equal times by arrival. Batches are cut
  where `time` changes, so concurrent batches can commit in any order and a re-export is still
  byte-identical; a run of equal times longer than a batch is sent in order, one batch at a time.
- `restore=1` (a rawevents extension, ignored by Mixpanel) asks the server to store the events
  as given, without adding its own `mp_processing_time_ms` & co: an export imported elsewhere
  exports again byte for byte.
- `timezone` converts Mixpanel exports' project-local `time` back to UTC (rawevents.client.localtime).
- Progress is in bytes of the files read (compressed bytes for JSONL.gz, a share of the rows for
  Parquet), so one big file moves the bar and has an ETA.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq

from rawevents.client.formats import read_parquet_records
from rawevents.client.localtime import LocalToUtc, load_zone
from rawevents.client.progress import Progress, SilentProgress
from rawevents.client.transport import ClientError, Connection, HttpError, printable

IMPORT_PATH = "/import"
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True, slots=True)
class ImportOptions:
    timezone: str | None = None  # the files' `time` is local to this zone (Mixpanel exports)
    batch_events: int = 2000
    max_body_bytes: int = 9 * 1024 * 1024  # JSON bytes per request, under the server's 10 MB
    concurrency: int = 4
    restore: bool = True  # keep the events as given (no server-added properties)


@dataclass(frozen=True, slots=True)
class RecordFailure:
    file: str
    line: int
    message: str


@dataclass
class ImportResult:
    imported: int = 0
    failures: list[RecordFailure] = field(default_factory=list)
    files: int = 0
    bytes: int = 0  # request bodies as sent (gzip)
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Unreadable:
    message: str


@dataclass(slots=True)
class _Line:
    where: tuple[str, int]
    data: bytes  # one JSON object, no newline
    time: Any
    offset: int = 0  # bytes of the file read up to this line


@dataclass
class _Batch:
    lines: list[_Line]
    ordered: bool  # continues a run of equal times: earlier batches must be stored first


def expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory means its export files, in name (so day) order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and _importable(p.name))
        elif path.name.endswith(".csv"):
            raise ClientError(
                f"{path}: CSV cannot be imported (it does not keep types): use JSONL or Parquet"
            )
        elif path.is_file():
            files.append(path)
        else:
            raise ClientError(f"{path}: no such file or directory")
    return files


def _importable(name: str) -> bool:
    return name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson", ".parquet"))


class Importer:
    def __init__(
        self, connection: Connection, options: ImportOptions, progress: Progress | None = None
    ) -> None:
        self.connection = connection
        self.options = options
        self.progress = progress or SilentProgress()
        self.result = ImportResult()
        self._zone = load_zone(options.timezone) if options.timezone else None
        self._lock = threading.Lock()  # batches finish in pool threads

    def run(self, paths: Sequence[Path]) -> ImportResult:
        started = time.monotonic()
        files = expand(paths)
        sizes = [path.stat().st_size for path in files]
        self.progress.begin("bytes", sum(sizes))
        with ThreadPoolExecutor(max_workers=max(1, self.options.concurrency)) as pool:
            in_flight: list[Future[None]] = []
            for path, size in zip(files, sizes, strict=True):
                read = 0
                for batch in self._batches(path):
                    if batch.ordered or len(in_flight) >= self.options.concurrency:
                        in_flight = self._drain(
                            in_flight, keep=0 if batch.ordered else self.options.concurrency - 1
                        )
                    in_flight.append(pool.submit(self._send, batch))
                    offset = min(batch.lines[-1].offset, size)
                    self.progress.advance(offset - read)
                    read = max(read, offset)
                in_flight = self._drain(in_flight, keep=0)
                self.progress.advance(size - read)
                self.result.files += 1
                self.progress.unit_done(path.name, 0)
        self.progress.end()
        self.result.seconds = time.monotonic() - started
        return self.result

    @staticmethod
    def _drain(in_flight: list[Future[None]], keep: int) -> list[Future[None]]:
        while len(in_flight) > keep:
            in_flight.pop(0).result()  # raises the first failure: the import stops there
        return in_flight

    # -- reading ----------------------------------------------------------------------------

    def _fail(self, failure: RecordFailure) -> None:
        with self._lock:
            self.result.failures.append(failure)

    def _lines(self, path: Path) -> Iterator[_Line]:
        convert = LocalToUtc(self._zone) if self._zone is not None else None
        for number, record, raw, offset in _read(path):
            if isinstance(record, _Unreadable):
                self._fail(RecordFailure(str(path), number, record.message))
                continue
            if not isinstance(record, dict):
                self._fail(RecordFailure(str(path), number, "not a JSON object"))
                continue
            props = record.get("properties")
            stamp = props.get("time") if isinstance(props, dict) else None
            if convert is not None and isinstance(props, dict) and "time" in props:
                props["time"] = stamp = convert(props["time"])
                raw = None
            yield _Line((str(path), number), raw if raw is not None else orjson.dumps(record), stamp, offset)

    def _batches(self, path: Path) -> Iterator[_Batch]:
        limit_events, limit_bytes = self.options.batch_events, self.options.max_body_bytes
        pending: list[_Line] = []
        size = 2
        ordered = False
        for line in self._lines(path):
            if pending and (len(pending) >= limit_events or size + len(line.data) + 1 > limit_bytes):
                cut = _last_time_change(pending)
                if cut == 0:  # one run of equal times fills the batch: send it whole, in order
                    yield _Batch(pending, ordered)
                    pending, ordered = [], True
                else:
                    yield _Batch(pending[:cut], ordered)
                    pending, ordered = pending[cut:], False
                size = 2 + sum(len(x.data) + 1 for x in pending)
            if len(line.data) + 2 > limit_bytes:
                self._fail(RecordFailure(*line.where, "event larger than a request body"))
                continue
            pending.append(line)
            size += len(line.data) + 1
        if pending:
            yield _Batch(pending, ordered)

    # -- sending ----------------------------------------------------------------------------

    def _send(self, batch: _Batch) -> None:
        """Post one batch; a 413 (the server's limits are lower than ours) splits it in two halves
        sent in order, down to a single event, which is then reported as failed."""
        try:
            self._post(batch.lines)
        except HttpError as exc:
            if exc.status != 413:
                raise
            if len(batch.lines) == 1:
                self._fail(RecordFailure(*batch.lines[0].where, exc.message))
                return
            half = len(batch.lines) // 2
            self._send(_Batch(batch.lines[:half], batch.ordered))
            self._send(_Batch(batch.lines[half:], batch.ordered))

    def _post(self, lines: list[_Line]) -> None:
        body = gzip.compress(b"[" + b",".join(line.data for line in lines) + b"]", compresslevel=5)
        params = {"strict": "1"}
        if self.options.restore:
            params["restore"] = "1"

        def handle(reply: httpx.Response) -> Any:
            return orjson.loads(reply.read())

        answer = self.connection.call(
            "POST",
            IMPORT_PATH,
            handle,
            params=params,
            content=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            accept=lambda r: r.status_code == 400 and b"failed_records" in r.read(),
        )
        imported = int(answer.get("num_records_imported", 0)) if isinstance(answer, dict) else 0
        with self._lock:
            self.result.bytes += len(body)
            self.result.imported += imported
        self.progress.transferred(len(body))
        self.progress.events(imported)
        for failed in answer.get("failed_records", []) if isinstance(answer, dict) else []:
            index = failed.get("index")
            if isinstance(index, int) and 0 <= index < len(lines):
                message = printable(str(failed.get("message", "rejected")))
                self._fail(RecordFailure(*lines[index].where, message))


def import_files(
    connection: Connection,
    paths: Sequence[Path],
    options: ImportOptions | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import every file (directories: their export files); raises ClientError on a failed request."""
    return Importer(connection, options or ImportOptions(), progress).run(paths)


def _last_time_change(lines: list[_Line]) -> int:
    """The index after which `time` last changes (0: every line has the same time)."""
    for index in range(len(lines) - 1, 0, -1):
        if lines[index].time != lines[index - 1].time:
            return index
    return 0


def _read(path: Path) -> Iterator[tuple[int, Any, bytes | None, int]]:
    """(line number, parsed record, original bytes, bytes of the file read so far) for every
    non-blank line or Parquet row."""
    with path.open("rb") as probe:
        magic = probe.read(4)
    if magic == PARQUET_MAGIC:
        size, rows = path.stat().st_size, max(1, pq.ParquetFile(path).metadata.num_rows)
        for number, record in enumerate(read_parquet_records(path), 1):
            yield number, record, None, size * number // rows
        return
    try:
        with path.open("rb") as raw:
            lines = gzip.GzipFile(fileobj=raw, mode="rb") if magic.startswith(GZIP_MAGIC) else raw
            for number, line in enumerate(lines, 1):
                text = line.strip()
                if not text:
                    continue
                try:
                    yield number, orjson.loads(text), text, raw.tell()
                except orjson.JSONDecodeError as exc:
                    yield number, _Unreadable(f"invalid JSON: {exc}"), None, raw.tell()
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        raise ClientError(f"{path}: cannot read: {exc}") from exc
