"""A run's export lines cut by project-local day into objects, as JSONL.gz or Parquet.

Layout (docs/pipelines.md): `events/date=YYYY-MM-DD/run-<run:08d>-<seq:04d>.<format>`, the day
being the event's calendar day in the project's time zone (the export's days), `seq` counting
the run's objects of that day from 0. A day's lines of one run are cut into objects of at most
`max_rows` lines, at line boundaries, so an object's content depends only on the run's slice:
a redo of the run writes the same names with the same content.

- `jsonl.gz`: the export's lines, byte for byte, in one gzip member (ISA-L, level 1).
- `parquet`: the client's typed columns (rawevents.client.formats: `event`, `time`,
  `distinct_id`, then each property with the type its values have, JSON text for mixed ones),
  `time` being project-local seconds as in the export, plus `time_utc`, the event's true instant
  as a UTC timestamp (milliseconds). The lines are read with `time` in UTC milliseconds (the
  export's `time_utc` + `time_in_ms` rendering, exact), and `time` is rendered back locally.
  Arrow parses an object's lines in worker threads while the scan goes on; they are also spooled,
  for the rare column whose JSON text must be read from them again.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rawevents.client.formats import BlockCutter, ParquetBuilder, TimeHook, read_blocks
from rawevents.export.stream import GZIP_HEADER, CompressedBlock, GzipFramer, compress_block
from rawevents.timeutil import TimeSegment

EPOCH = dt.date(1970, 1, 1)
DAY_S = 86_400
DAY_MS = 86_400_000
TIME_KEY = b',"properties":{"time":'
MAX_OBJECT_ROWS = 1_000_000
IN_FLIGHT = 8  # blocks being compressed at once (bounded memory)
UTC_COLUMN = "time_utc"
_DIGITS = frozenset(b"-0123456789")

Chunk = bytes | memoryview


class BrokenExport(Exception):
    """The export's bytes were not whole lines with a `time` (never expected)."""


def day_text(day: int) -> str:
    return (EPOCH + dt.timedelta(days=day)).isoformat()


def line_time(data: bytes, start: int) -> int:
    """The `time` value of the line starting at `start`."""
    at = data.find(TIME_KEY, start)
    if at < 0:
        raise BrokenExport(f"an exported line without time: {data[start : start + 200]!r}")
    begin = end = at + len(TIME_KEY)
    size = len(data)
    while end < size and data[end] in _DIGITS:
        end += 1
    return int(data[begin:end])


class LocalDays:
    """Day of a line whose `time` is project-local seconds (the export's default rendering)."""

    def __call__(self, time_value: int) -> int:
        return time_value // DAY_S


class UtcMsDays:
    """Day of a line whose `time` is UTC milliseconds, through the plan's offset segments."""

    def __init__(self, segments: Iterable[TimeSegment]) -> None:
        self.segments = list(segments)
        self.starts = [s.start_ms for s in self.segments]

    def offset(self, utc_ms: int) -> int:
        index = max(0, bisect.bisect_right(self.starts, utc_ms) - 1)
        return self.segments[index].offset_ms if self.segments else 0

    def __call__(self, time_value: int) -> int:
        return (time_value + self.offset(time_value)) // DAY_MS


def split_days(chunks: Iterable[Chunk], day_of: Callable[[int], int]) -> Iterator[tuple[int, bytes]]:
    """(day, whole lines of that day) in export order; chunks may cut lines anywhere. Only the
    first and last line of a chunk are read unless the day changes within it."""
    carry = b""
    for chunk in chunks:
        data = carry + bytes(chunk) if carry else bytes(chunk)
        end = data.rfind(b"\n") + 1
        if end == 0:
            carry = data
            continue
        carry = data[end:]
        first = day_of(line_time(data, 0))
        last_start = data.rfind(b"\n", 0, end - 1) + 1
        if day_of(line_time(data, last_start)) == first:
            yield first, data[:end] if carry else data
            continue
        run_start, run_day, pos = 0, first, 0
        while pos < end:
            day = day_of(line_time(data, pos))
            if day != run_day:
                yield run_day, data[run_start:pos]
                run_start, run_day = pos, day
            pos = data.index(b"\n", pos) + 1
        yield run_day, data[run_start:end]
    if carry:
        raise BrokenExport("the export ended in the middle of a line")


@dataclass(frozen=True, slots=True)
class WrittenObject:
    key: str
    day: str
    rows: int
    bytes: int


class ObjectSink:
    """Receives each finished object: `intend(key)` before it is uploaded (the runner records
    the name first, so a crash cannot leave an object it does not know about), then
    `upload(key, path)` returning its size."""

    def intend(self, key: str) -> None:
        raise NotImplementedError

    def upload(self, key: str, path: Path) -> int:
        raise NotImplementedError


class RunObjects:
    """Builds a run's objects from (day, lines) pieces, in order, one object open at a time."""

    def __init__(
        self,
        sink: ObjectSink,
        spool: Path,
        run: int,
        fmt: str,
        *,
        prefix: str = "events",
        name: str = "run",
        local: UtcMsDays | None = None,
        max_rows: int = MAX_OBJECT_ROWS,
        pool: Executor | None = None,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.run = run
        self.fmt = fmt
        self.prefix = prefix
        self.name = name
        self.local = local  # parquet: renders `time` back to local seconds
        self.max_rows = max_rows
        self.written: list[WrittenObject] = []
        self._seq: dict[int, int] = {}
        self._day: int | None = None
        self._rows = 0
        self._file: BinaryIO | None = None
        self._framer: GzipFramer | None = None
        self._pool = pool  # compresses blocks while the scan goes on (the export's scheme)
        self._parquet: tuple[ParquetBuilder, BlockCutter] | None = None
        self._blocks: deque[Future[CompressedBlock] | CompressedBlock] = deque()
        spool.mkdir(parents=True, exist_ok=True)

    def add(self, day: int, lines: bytes) -> None:
        while lines:
            if self._day != day or self._rows >= self.max_rows:
                self._close()
                self._open(day)
            room = self.max_rows - self._rows
            count = lines.count(b"\n")
            if count <= room:
                self._write(lines, count)
                return
            cut = -1
            for _ in range(room):
                cut = lines.index(b"\n", cut + 1)
            self._write(lines[: cut + 1], room)
            lines = lines[cut + 1 :]

    def finish(self) -> list[WrittenObject]:
        self._close()
        return self.written

    def abandon(self) -> None:
        self._blocks.clear()
        self._framer = None
        if self._parquet is not None:
            self._parquet[0].close()
            self._parquet = None
        if self._file is not None:
            self._file.close()
            self._file = None
        for leftover in self.spool.glob("object-*"):
            leftover.unlink(missing_ok=True)

    def _open(self, day: int) -> None:
        self._day, self._rows = day, 0
        path = self.spool / ("object-lines" if self.fmt == "parquet" else "object-jsonl.gz")
        self._file = path.open("wb")
        if self.fmt != "parquet":
            self._framer = GzipFramer()
            self._file.write(GZIP_HEADER)
        else:
            assert self.local is not None
            builder = ParquetBuilder(self.spool, time_hook=_local_time(self.local), force_time=True)
            self._parquet = (builder, BlockCutter())

    def _write(self, lines: bytes, count: int) -> None:
        assert self._file is not None
        self._rows += count
        if self._framer is None:
            self._file.write(lines)
            if self._parquet is not None:
                builder, cutter = self._parquet
                for block in cutter.add(lines):
                    builder.add(block)
            return
        # One gzip member of independently compressed blocks, as the export's body.
        self._blocks.append(self._pool.submit(compress_block, lines) if self._pool else compress_block(lines))
        while len(self._blocks) > IN_FLIGHT or (self._blocks and _done(self._blocks[0])):
            self._drain_one()

    def _drain_one(self) -> None:
        assert self._file is not None and self._framer is not None
        block = self._blocks.popleft()
        self._file.write(self._framer.add(block.result() if isinstance(block, Future) else block))

    def _close(self) -> None:
        if self._file is None or self._day is None:
            return
        day, rows = self._day, self._rows
        if self._framer is not None:
            while self._blocks:
                self._drain_one()
            self._file.write(self._framer.trailer())
            self._framer = None
        raw = Path(self._file.name)
        self._file.close()
        self._file = None
        seq = self._seq.get(day, 0)
        self._seq[day] = seq + 1
        key = f"{self.prefix}/date={day_text(day)}/{self.name}-{self.run:08d}-{seq:04d}.{self.fmt}"
        path = raw
        if self._parquet is not None:
            builder, cutter = self._parquet
            path = self.spool / "object.parquet"
            try:
                for block in cutter.end():
                    builder.add(block)
                builder.write(path, lambda: read_blocks(raw, False))
            finally:
                builder.close()
                self._parquet = None
            raw.unlink()
        try:
            self.sink.intend(key)
            size = self.sink.upload(key, path)
        finally:
            path.unlink(missing_ok=True)
        self.written.append(WrittenObject(key, day_text(day), rows, size))


def _done(block: Future[CompressedBlock] | CompressedBlock) -> bool:
    return not isinstance(block, Future) or block.done()


def _local_time(days: UtcMsDays) -> TimeHook:
    """Parquet's `time` from lines whose `time` is UTC ms: local seconds, and `time_utc`."""
    starts = np.array(days.starts, np.int64)
    offsets = np.array([s.offset_ms for s in days.segments], np.int64)

    def hook(values: pa.Array) -> tuple[pa.Array, dict[str, pa.Array]]:
        utc = pc.fill_null(values, 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        shift = offsets[np.maximum(np.searchsorted(starts, utc, side="right") - 1, 0)] if len(starts) else 0
        local = pa.array((utc + shift) // 1000, pa.int64())
        return local, {UTC_COLUMN: pa.array(utc, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}

    return hook
