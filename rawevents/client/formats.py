"""Output formats of `rawevents export`: JSONL, JSONL.gz, CSV and Parquet, all in bounded memory.

Every writer reads the downloaded body (kept on disk), so memory does not grow with the day's
size. CSV and Parquet need their columns before the first row: CSV reads the body's lines twice,
once to learn the property names, once to write; Parquet parses it once, in blocks, keeping each
parsed block on disk until the types of every column are known, then writes them.

- CSV: columns `event`, `time`, `distinct_id`, then every other property in code-point order.
  Strings as they are; numbers as JSON numbers; booleans `true`/`false`; lists and objects as
  compact JSON; a missing property or null is an empty cell.
- Parquet: the same columns, one per property with the type its values have (int64, float64
  when ints and floats mix, bool, string); a property holding lists, objects or values of several
  types is a string column of JSON text, named in the file's `rawevents:json_columns` metadata.
  With `utc`, a numeric `time` is a `timestamp[ms, UTC]` column. Row groups of ROW_GROUP_ROWS
  rows (the last one: the rest).
- A property called `event` becomes the column `properties.event` (the event name owns `event`).

Parquet is vectorised (ParquetBuilder): Arrow's JSON reader parses blocks of about BLOCK_BYTES
of lines into columns, PARSE_THREADS at a time (C++, no Python object per value; blocks can be
fed while the body still downloads), and the types are fixed up per column. Python only touches
what Arrow cannot give exactly, reading those values from the line itself: JSON text of objects
(key order, null versus missing) and of lists holding floats, objects or nulls, floats of 2^63
and more (integers beyond int64 are JSON text), and blocks Arrow refuses whole (a property
changing type within the block, a duplicate key). Strings Arrow would read as timestamps are
declared strings. tests/client/test_formats.py holds the row-by-row writer this replaced and
compares the two on generated bodies.
"""

from __future__ import annotations

import csv
import gzip
import shutil
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.json as pj
import pyarrow.parquet as pq
from isal import igzip, isal_zlib

from rawevents.client.transport import TransferIncomplete

Format = Literal["jsonl", "jsonl.gz", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("jsonl", "jsonl.gz", "csv", "parquet")
ROW_GROUP_ROWS = 50_000
PARSE_THREADS = 2
BLOCK_BYTES = 2 << 20  # Arrow parses blocks of about this size (at most ROW_GROUP_ROWS lines)
JSON_COLUMNS_KEY = b"rawevents:json_columns"
MS_THRESHOLD = 100_000_000_000  # a `time` this large is milliseconds (as rawevents.client.localtime)
_READ = 4 << 20
_LEAD = ("event", "time", "distinct_id")
_INT64 = (-(2**63), 2**63 - 1)
_UTC_MS = pa.timestamp("ms", tz="UTC")
_GZIP_WBITS = 16 + isal_zlib.MAX_WBITS
_GZIP_ERRORS: tuple[type[BaseException], ...] = (EOFError, gzip.BadGzipFile, zlib.error, isal_zlib.error)  # type: ignore[assignment]

Record = dict[str, Any]
# A fresh converter of `time` values for each pass over a body (stateful: it reads them in order).
TimeMap = Callable[[], Callable[[Any], Any]]
# Rewrites a numeric `time` column: its new values, and columns to append after the properties.
TimeHook = Callable[[pa.Array], tuple[pa.Array, dict[str, pa.Array]]]


@dataclass(frozen=True, slots=True)
class Body:
    """A downloaded export body on disk (gzip-encoded as sent, or plain), read as often as needed."""

    path: Path
    gzipped: bool = False

    def lines(self) -> Iterator[bytes]:
        return read_lines(self.path, self.gzipped)

    def blocks(self) -> Iterator[bytes]:
        return read_blocks(self.path, self.gzipped)


def read_lines(path: Path, gzipped: bool) -> Iterator[bytes]:
    """The body's lines; raises TransferIncomplete for a truncated gzip stream or a cut last line."""
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as body:
            for line in body:
                if not line.endswith(b"\n"):
                    _check_last_line(line)
                if line.strip():
                    yield line if line.endswith(b"\n") else line + b"\n"
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise TransferIncomplete(f"incomplete gzip body: {exc}") from exc


def read_blocks(path: Path, gzipped: bool) -> Iterator[bytes]:
    """The body as blocks of whole lines (at most ROW_GROUP_ROWS, about BLOCK_BYTES), each ending
    in a newline; blank lines are kept. The same checks as read_lines."""
    cutter = BlockCutter()
    try:
        opened: BinaryIO = igzip.open(path, "rb") if gzipped else path.open("rb")  # type: ignore[no-untyped-call]
        with opened as body:
            while data := body.read(_READ):
                yield from cutter.add(data)
    except _GZIP_ERRORS as exc:
        raise TransferIncomplete(f"incomplete gzip body: {exc}") from exc
    yield from cutter.end()


class BlockCutter:
    """Cuts a body's bytes, however they arrive, into blocks of whole lines (see read_blocks)."""

    def __init__(self) -> None:
        self.max_lines, self.max_bytes = ROW_GROUP_ROWS, BLOCK_BYTES
        self._pending: list[bytes] = []
        self._lines = self._size = 0
        self._carry = b""

    def add(self, data: bytes) -> Iterator[bytes]:
        data = self._carry + data if self._carry else data
        end = data.rfind(b"\n") + 1
        self._carry, data = data[end:], data[:end]
        while data:
            count = data.count(b"\n")
            room = self.max_lines - self._lines
            if count <= room:
                self._pending.append(data)
                self._lines, self._size, data = self._lines + count, self._size + len(data), b""
            else:
                cut = int(np.flatnonzero(np.frombuffer(data, np.uint8) == 10)[room - 1]) + 1
                self._pending.append(data[:cut])
                self._lines, self._size, data = self.max_lines, self._size + cut, data[cut:]
            if self._lines >= self.max_lines or self._size >= self.max_bytes:
                yield self._flush()

    def end(self) -> Iterator[bytes]:
        """The last block; raises TransferIncomplete when the body ends in the middle of a line."""
        if self._carry:
            _check_last_line(self._carry)
            self._pending.append(self._carry + b"\n")
            self._carry = b""
        if self._pending:
            yield self._flush()

    def _flush(self) -> bytes:
        block = b"".join(self._pending)
        self._pending, self._lines, self._size = [], 0, 0
        return block


class BodyDecoder:
    """Decodes a body as it downloads (gzip-encoded or plain) into blocks for `sink`, with the
    checks of read_blocks: `end()` raises TransferIncomplete for a cut gzip stream or line."""

    def __init__(self, gzipped: bool, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        self.cutter = BlockCutter()
        self._inflate: Any = isal_zlib.decompressobj(_GZIP_WBITS) if gzipped else None

    def feed(self, chunk: bytes) -> None:
        data = chunk
        if self._inflate is not None:
            parts = []
            try:
                while data:
                    if self._inflate.eof:  # another gzip member
                        self._inflate = isal_zlib.decompressobj(_GZIP_WBITS)
                    parts.append(self._inflate.decompress(data))
                    data = self._inflate.unused_data
            except isal_zlib.error as exc:  # type: ignore[misc]
                raise TransferIncomplete(f"incomplete gzip body: {exc}") from exc
            data = b"".join(parts)
        for block in self.cutter.add(data):
            self.sink(block)

    def end(self) -> None:
        if self._inflate is not None and not self._inflate.eof:
            raise TransferIncomplete("incomplete gzip body: the stream ends before its end marker")
        for block in self.cutter.end():
            self.sink(block)


def _check_last_line(line: bytes) -> None:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise TransferIncomplete("the body ends in the middle of a line") from exc


def records(lines: Iterator[bytes], time_map: TimeMap | None) -> Iterator[Record]:
    convert = time_map() if time_map is not None else None
    for line in lines:
        record = orjson.loads(line)
        if convert is not None:
            props = record.get("properties")
            if isinstance(props, dict) and "time" in props:
                props["time"] = convert(props["time"])
        yield record


def write_jsonl(body: Body, out: Path, time_map: TimeMap | None, *, gz: bool) -> int:
    rows = 0
    with gzip.open(out, "wb", compresslevel=6) if gz else out.open("wb") as sink:
        if time_map is None:
            for line in body.lines():
                sink.write(line)
                rows += 1
        else:
            for record in records(body.lines(), time_map):
                sink.write(orjson.dumps(record) + b"\n")
                rows += 1
    return rows


def _column_name(key: str) -> str:
    return "properties.event" if key == "event" else key


def _ordered(keys: set[str]) -> list[str]:
    return [k for k in _LEAD[1:] if k in keys] + sorted(keys - set(_LEAD[1:]))


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def write_csv(body: Body, out: Path, time_map: TimeMap | None) -> int:
    keys: set[str] = set()
    for record in records(body.lines(), time_map):
        keys.update(record.get("properties") or {})
    columns = _ordered(keys)
    rows = 0
    with out.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(["event", *(_column_name(k) for k in columns)])
        for record in records(body.lines(), time_map):
            props = record.get("properties") or {}
            writer.writerow([csv_cell(record.get("event")), *(csv_cell(props.get(k)) for k in columns)])
            rows += 1
    return rows


# -- Parquet ------------------------------------------------------------------------------------


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "json"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


_TYPES: dict[frozenset[str], pa.DataType] = {
    frozenset({"int"}): pa.int64(),
    frozenset({"float"}): pa.float64(),
    frozenset({"int", "float"}): pa.float64(),
    frozenset({"bool"}): pa.bool_(),
    frozenset({"str"}): pa.string(),
    frozenset(): pa.string(),
}


def parquet_schema(kinds: dict[str, set[str]]) -> tuple[pa.Schema, set[str]]:
    """The Arrow schema for properties seen with these value kinds, and the JSON-text columns."""
    fields = [pa.field("event", pa.string())]
    json_columns: set[str] = set()
    for key in _ordered(set(kinds)):
        kind = frozenset(kinds[key])
        data_type = _TYPES.get(kind)
        if data_type is None:
            json_columns.add(_column_name(key))
            data_type = pa.string()
        fields.append(pa.field(_column_name(key), data_type))
    metadata = {JSON_COLUMNS_KEY: orjson.dumps(sorted(json_columns))}
    return pa.schema(fields, metadata=metadata), json_columns


def utc_timestamps(values: pa.Array) -> pa.Array:
    """Epoch seconds (milliseconds from 10^11 on, as the client reads `time` everywhere) as
    `timestamp[ms, UTC]`; fractions of a millisecond are rounded."""
    ms = pc.if_else(pc.greater_equal(pc.abs(values), MS_THRESHOLD), values, pc.multiply_checked(values, 1000))
    if pa.types.is_floating(ms.type):
        ms = pc.round(ms)
    return pc.cast(ms, pa.int64()).cast(_UTC_MS)


def utc_hook(utc: bool) -> TimeHook | None:
    """With `utc`, a numeric `time` becomes `timestamp[ms, UTC]` (utc_timestamps)."""
    return (lambda values: (utc_timestamps(values), {})) if utc else None


def write_parquet(body: Body, out: Path, time_map: TimeMap | None, *, utc: bool = False) -> int:
    """The client's typed columns; with `utc`, a numeric `time` as `timestamp[ms, UTC]`."""
    return write_typed_parquet(body.blocks, out, time_map=time_map, time_hook=utc_hook(utc))


def write_typed_parquet(
    blocks: Callable[[], Iterator[bytes]],
    out: Path,
    *,
    time_map: TimeMap | None = None,
    time_hook: TimeHook | None = None,
    force_time: bool = False,
) -> int:
    """Write the typed columns of the lines in `blocks` (see the module docstring) to `out`;
    returns the rows written. The options are ParquetBuilder's."""
    with ParquetBuilder(out.parent, time_map=time_map, time_hook=time_hook, force_time=force_time) as builder:
        for block in blocks():
            builder.add(block)
        return builder.write(out, blocks)


class ParquetBuilder:
    """Typed Parquet columns from blocks of lines, taken in as they come (also while the body is
    still downloading): Arrow parses each block in a worker thread, the parsed columns wait on
    disk (a hidden directory in `spill_parent`) until `write` knows every column's type.

    `time_map` converts `time` values first (in row order); `time_hook` then rewrites a numeric
    `time` column and may append columns (renamed `_NAME` when a property owns NAME);
    `force_time` makes `time` an int64 column even when no row has one.
    """

    def __init__(
        self,
        spill_parent: Path,
        *,
        time_map: TimeMap | None = None,
        time_hook: TimeHook | None = None,
        force_time: bool = False,
    ) -> None:
        self.spill = Path(tempfile.mkdtemp(prefix=".rawevents-parquet-", dir=spill_parent))
        self.scan = _Scan(self.spill, time_map)
        self.time_hook = time_hook
        self.force_time = force_time
        self._pool = ThreadPoolExecutor(max_workers=PARSE_THREADS, thread_name_prefix="rawevents-parquet")
        self._parsing: deque[tuple[bytes, Future[pa.Table | None]]] = deque()

    def add(self, block: bytes) -> None:
        self._parsing.append((block, self._pool.submit(_parse, block, frozenset(self.scan.strings))))
        while len(self._parsing) > PARSE_THREADS:
            self._take()

    def _take(self) -> None:
        block, parsed = self._parsing.popleft()
        self.scan.add(block, parsed.result())

    def write(self, out: Path, blocks: Callable[[], Iterator[bytes]]) -> int:
        """Write every block taken in to `out`; `blocks` reads them again (for the rare column
        whose JSON text must come from the lines). Returns the rows written."""
        while self._parsing:
            self._take()
        if self.force_time:
            self.scan.kinds.setdefault("time", set()).add("int")
        return _Assemble(self.scan, blocks, self.time_hook).write(out)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._parsing.clear()
        shutil.rmtree(self.spill, ignore_errors=True)

    def __enter__(self) -> ParquetBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse(block: bytes, strings: frozenset[str]) -> pa.Table | None:
    """The block read by Arrow, `strings` declared strings; None when Arrow refuses it."""
    props = pa.struct([pa.field(key, pa.string()) for key in sorted(strings)])
    schema = pa.schema([pa.field("event", pa.string()), pa.field("properties", props)])
    try:
        return pj.read_json(
            pa.BufferReader(block),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(block) + 1),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
        )
    except pa.ArrowException:
        return None


def _temporal(table: pa.Table) -> set[str]:
    """Properties Arrow took for timestamps or dates (it infers them from strings)."""
    found = table.schema.field("properties").type
    return {found.field(i).name for i in range(found.num_fields) if pa.types.is_temporal(found.field(i).type)}


@dataclass(frozen=True, slots=True)
class _Block:
    """One block after the scan: its rows on disk, as Arrow columns (`arrow`: IPC, the event and
    then one column per key) or, where Arrow refused the block, as JSON lines."""

    index: int
    rows: int
    path: Path
    arrow: bool
    keys: tuple[str, ...] = ()
    json_text: frozenset[str] = frozenset()  # keys whose column holds JSON text already


def _nonblank(block: bytes) -> list[bytes]:
    return [line for line in block.split(b"\n") if line.strip()]


def _dumpable(column: pa.Array) -> bool:
    """Whether dumping Arrow's values of this list column gives the lines' JSON text: lists (of
    lists) of strings, int64s or booleans (not floats: `1` is read as 1.0; not objects: key order,
    null versus missing), holding no null. Arrow's JSON reader drops a list's leading nulls when
    a later element fixes the type (`[null, false]`, then `[true]`, comes back as `[false, true]`
    and `[false]`), which leaves an array whose offsets overrun its values: such a column fails
    `validate()`; one whose lists hold no null never took that path."""
    values_type = column.type
    while pa.types.is_list(values_type):
        values_type = values_type.value_type
    if column.type == values_type or not (
        pa.types.is_string(values_type)
        or pa.types.is_int64(values_type)
        or pa.types.is_boolean(values_type)
        or pa.types.is_null(values_type)
    ):
        return False
    try:
        column.validate()
    except pa.ArrowInvalid:
        return False
    values = column
    while isinstance(values, pa.ListArray):
        values = values.flatten()
        if values.null_count:
            return False
    return True


def _dumped(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else orjson.dumps(v).decode() for v in values], pa.string())


def _row_lines(block: bytes, rows: int) -> Callable[[int], bytes] | None:
    """The line of each of Arrow's rows (the block's non-blank lines); None if they do not match."""
    ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
    starts = np.concatenate((np.zeros(1, ends.dtype), ends[:-1] + 1))
    filled = ends > starts
    if int(filled.sum()) == rows:
        first, last = starts[filled].tolist(), ends[filled].tolist()
        return lambda row: block[first[row] : last[row]]
    lines = _nonblank(block)  # lines of blanks (spaces, a CR) too
    return lines.__getitem__ if len(lines) == rows else None


def _raw_json(
    lines: Callable[[int], bytes], keys: Sequence[str], columns: Sequence[pa.Array], total: int
) -> list[pa.Array]:
    """The JSON text of properties `keys` (null where their Arrow `columns` are null), read from
    the lines themselves, each line parsed once."""
    present = np.zeros(total, dtype=bool)
    for column in columns:
        present |= column.is_valid().to_numpy(zero_copy_only=False)
    cells: list[list[str | None]] = [[None] * total for _ in keys]
    for row in np.flatnonzero(present).tolist():
        props = orjson.loads(lines(row)).get("properties") or {}
        for found, key in zip(cells, keys, strict=True):
            if (value := props.get(key)) is not None:
                found[row] = orjson.dumps(value).decode()
    return [pa.array(found, pa.string()) for found in cells]


class _Scan:
    """First and only parse: each block becomes Arrow columns on disk, and the value kinds of
    every property are gathered (the final types)."""

    def __init__(self, spill: Path, time_map: TimeMap | None) -> None:
        self.spill = spill
        self.convert = time_map() if time_map is not None else None
        self.kinds: dict[str, set[str]] = {}
        self.blocks: list[_Block] = []
        self.strings: set[str] = set()  # properties Arrow would read as timestamps: strings

    def add(self, block: bytes, table: pa.Table | None) -> None:
        """Take in a block and its Arrow table (None: Arrow refused it)."""
        index = len(self.blocks)
        if table is not None and (stamps := _temporal(table)):
            self.strings |= stamps  # those are strings: read the block again with them declared
            table = _parse(block, frozenset(self.strings))
            if table is not None and _temporal(table):  # never expected
                table = None
        if table is None:
            self.blocks.append(self._python(index, block))
            return
        chunks = table.column("properties").chunks  # one: the block is one Arrow block
        props = chunks[0] if len(chunks) == 1 else table.column("properties").combine_chunks()
        assert isinstance(props, pa.StructArray)
        keys = [props.type.field(i).name for i in range(props.type.num_fields)]
        columns = list(props.flatten())
        rows = table.num_rows
        if self.convert is not None and "time" in keys:
            at = keys.index("time")
            if pa.types.is_int64(columns[at].type):
                columns[at] = pa.array([self.convert(v) for v in columns[at].to_pylist()], pa.int64())
            elif not pa.types.is_null(columns[at].type):
                self.blocks.append(self._python(index, block))  # the converter wants Python values
                return
        lines = _row_lines(block, rows)
        if lines is None:  # never expected: Arrow and we disagree on the lines
            self.blocks.append(self._python(index, block))
            return
        texts: dict[int, str] = {}  # columns whose JSON text comes from the lines
        dumped: set[str] = set()  # columns whose JSON text is Arrow's values dumped
        block_kinds: list[tuple[str, set[str]]] = []
        for at, (key, column) in enumerate(zip(keys, columns, strict=True)):
            kinds = _arrow_kinds(column.type)
            if kinds == {"float"} and (big := _beyond_int64(column)):
                # Floats of 2^63 and more: integers beyond int64 are JSON text.
                values = [(orjson.loads(lines(r)).get("properties") or {}).get(key) for r in big]
                kinds = {"float", "json"} if any(isinstance(v, int) for v in values) else {"float"}
            if kinds is None:  # lists and objects: JSON text
                kinds = {"json"}
                if _dumpable(column):
                    columns[at] = _dumped(column.to_pylist())
                    dumped.add(key)
            if "json" in kinds and key not in dumped:
                texts[at] = key
            block_kinds.append((key, kinds))
        if texts:
            found = _raw_json(lines, list(texts.values()), [columns[at] for at in texts], rows)
            for at, text in zip(texts, found, strict=True):
                columns[at] = text
        for key, kinds in block_kinds:
            self.kinds.setdefault(key, set()).update(kinds)
        path = self.spill / f"{index:06d}.arrow"
        names = ["event", *(f"c{i}" for i in range(len(keys)))]
        event = table.column("event").combine_chunks()
        _write_ipc(path, pa.Table.from_arrays([event, *columns], names=names))
        self.blocks.append(
            _Block(index, rows, path, True, tuple(keys), frozenset({*texts.values(), *dumped}))
        )

    def _python(self, index: int, block: bytes) -> _Block:
        """A block Arrow refused (a property changing type within it, a duplicate key): its
        records read by orjson, kept as JSON lines (with `time` converted) for the writing."""
        kept: list[bytes] = []
        rows = 0
        for record in records(iter(_nonblank(block)), None):
            props = record.get("properties") or {}
            if self.convert is not None and "time" in props:
                props["time"] = self.convert(props["time"])
            for key, value in props.items():
                seen = self.kinds.setdefault(key, set())
                if (kind := _kind(value)) is not None:
                    seen.add(kind)
            kept.append(orjson.dumps(record))
            rows += 1
        path = self.spill / f"{index:06d}.jsonl"
        path.write_bytes(b"\n".join(kept))
        return _Block(index, rows, path, False)


def _arrow_kinds(data_type: pa.DataType) -> set[str] | None:
    """The kinds of values Arrow read as this type; None: JSON text that must come from the line."""
    if pa.types.is_null(data_type):
        return set()
    if pa.types.is_boolean(data_type):
        return {"bool"}
    if pa.types.is_int64(data_type):
        return {"int"}
    if pa.types.is_floating(data_type):
        return {"float"}
    if pa.types.is_string(data_type):
        return {"str"}
    return None


def _beyond_int64(column: pa.Array) -> list[int] | None:
    """Rows of a float column of magnitude 2^63 or more (maybe integers beyond int64), or None."""
    largest = pc.max(pc.abs(column)).as_py()
    if largest is None or largest < 2.0**63:
        return None
    big = pc.greater_equal(pc.abs(column), 2.0**63).to_numpy(zero_copy_only=False)
    return np.flatnonzero(big).tolist()


def _write_ipc(path: Path, table: pa.Table) -> None:
    with ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)


def _read_ipc(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


class _Assemble:
    """Second step: every block's columns cast to the final types, written as a row group."""

    def __init__(
        self, scan: _Scan, blocks: Callable[[], Iterator[bytes]], time_hook: TimeHook | None
    ) -> None:
        self.scan = scan
        self.blocks = blocks
        self.hook = time_hook
        base, self.json_columns = parquet_schema(scan.kinds)
        self.keys = _ordered(set(scan.kinds))
        self.types = {key: base.field(_column_name(key)).type for key in self.keys}
        self.hooked = time_hook is not None and self.types.get("time") in (pa.int64(), pa.float64())
        fields = list(base)
        self.extra: list[str] = []
        if self.hooked:
            assert time_hook is not None
            values, extra = time_hook(pa.array([], self.types["time"]))
            fields[fields.index(base.field("time"))] = pa.field("time", values.type)
            for name, column in extra.items():
                unique = name if name not in base.names else f"_{name}"
                fields.append(pa.field(unique, column.type))
                self.extra.append(unique)
        self.schema = pa.schema(fields, metadata=base.metadata)
        self._raw: Iterator[tuple[int, bytes]] | None = None

    def write(self, out: Path) -> int:
        """Blocks' tables, gathered into row groups of ROW_GROUP_ROWS rows (the last: the rest)."""
        rows = 0
        group: list[pa.Table] = []
        with pq.ParquetWriter(out, self.schema, compression="zstd") as writer:
            for block in self.scan.blocks:
                group.append(self._arrow(block) if block.arrow else self._python(block))
                block.path.unlink()
                rows += group[-1].num_rows
                gathered = sum(t.num_rows for t in group)
                if gathered >= ROW_GROUP_ROWS:
                    table = pa.concat_tables(group)
                    whole = gathered - gathered % ROW_GROUP_ROWS
                    writer.write_table(table.slice(0, whole), row_group_size=ROW_GROUP_ROWS)
                    group = [table.slice(whole)]
            rest = pa.concat_tables(group) if group else self.schema.empty_table()
            if rest.num_rows or rows == 0:
                writer.write_table(rest)
        return rows

    def _finish(self, event: pa.Array, columns: dict[str, pa.Array]) -> pa.Table:
        arrays = [event.cast(pa.string())]
        extra: dict[str, pa.Array] = {}
        for key in self.keys:
            column = columns[key]
            if key == "time" and self.hooked:
                assert self.hook is not None
                column, appended = self.hook(column)
                extra = dict(zip(self.extra, appended.values(), strict=True))
            arrays.append(column)
        arrays += [extra[name] for name in self.extra]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _arrow(self, block: _Block) -> pa.Table:
        table = _read_ipc(block.path)
        found = dict(zip(block.keys, table.columns[1:], strict=True))
        columns: dict[str, pa.Array] = {}
        for key in self.keys:
            final = self.types[key]
            chunked = found.get(key)
            if chunked is None:
                columns[key] = pa.nulls(block.rows, final)
                continue
            column = chunked.combine_chunks()
            if _column_name(key) not in self.json_columns:
                columns[key] = column if column.type == final else column.cast(final, safe=False)
            elif key in block.json_text:
                columns[key] = column
            else:
                columns[key] = self._as_json(block, key, column)
        return self._finish(table.column("event").combine_chunks(), columns)

    def _as_json(self, block: _Block, key: str, column: pa.Array) -> pa.Array:
        """A typed column of this block as JSON text (other blocks made the property mixed)."""
        data_type = column.type
        if pa.types.is_null(data_type):
            return pa.nulls(len(column), pa.string())
        if pa.types.is_int64(data_type):
            return column.cast(pa.string())
        if pa.types.is_boolean(data_type):
            return pc.if_else(column, "true", "false")
        if pa.types.is_string(data_type):
            return _dumped(column.to_pylist())
        # Floats: whether `1` or `1.0` was written is only in the line.
        return _raw_json(self._lines(block.index, block.rows), [key], [column], len(column))[0]

    def _lines(self, index: int, rows: int) -> Callable[[int], bytes]:
        """The lines of block `index`, read again from the body (blocks are asked in order)."""
        if self._raw is None:
            self._raw = enumerate(self.blocks())
        for at, block in self._raw:
            if at == index and (lines := _row_lines(block, rows)) is not None:
                return lines
        raise TransferIncomplete("the body changed while it was being converted")

    def _python(self, block: _Block) -> pa.Table:
        rows = [orjson.loads(line) for line in _nonblank(block.path.read_bytes())]
        props = [r.get("properties") or {} for r in rows]
        events = [r.get("event") for r in rows]
        columns: dict[str, pa.Array] = {}
        for key in self.keys:
            values = [p.get(key) for p in props]
            if _column_name(key) in self.json_columns:
                columns[key] = _dumped(values)
            else:
                columns[key] = pa.array(values, self.types[key])
        return self._finish(pa.array(events, pa.string()), columns)


def read_parquet_records(path: Path) -> Iterator[Record]:
    """Events back from a Parquet export: nulls dropped, JSON columns decoded, a timestamp `time`
    (`--utc`) back to epoch seconds (milliseconds when not a whole second)."""
    parquet = pq.ParquetFile(path)
    raw = (parquet.schema_arrow.metadata or {}).get(JSON_COLUMNS_KEY, b"[]")
    json_columns = set(orjson.loads(raw))
    stamped = "time" in parquet.schema_arrow.names and pa.types.is_timestamp(
        parquet.schema_arrow.field("time").type
    )
    for batch in parquet.iter_batches(batch_size=ROW_GROUP_ROWS):
        if stamped:
            at = batch.schema.get_field_index("time")
            ms = batch.column(at).cast(_UTC_MS).cast(pa.int64())
            epoch = pa.array(
                [None if v is None else (v // 1000 if v % 1000 == 0 else v) for v in ms.to_pylist()],
                pa.int64(),
            )
            batch = batch.set_column(at, "time", epoch)
        for row in batch.to_pylist():
            props = {}
            for column, value in row.items():
                if column == "event" or value is None:
                    continue
                key = "event" if column == "properties.event" else column
                props[key] = orjson.loads(value) if column in json_columns else value
            yield {"event": row["event"], "properties": props}


Writer = Callable[[Body, Path, TimeMap | None, bool], int]
WRITERS: dict[str, Writer] = {
    "jsonl": lambda body, out, time_map, utc: write_jsonl(body, out, time_map, gz=False),
    "jsonl.gz": lambda body, out, time_map, utc: write_jsonl(body, out, time_map, gz=True),
    "csv": lambda body, out, time_map, utc: write_csv(body, out, time_map),
    "parquet": lambda body, out, time_map, utc: write_parquet(body, out, time_map, utc=utc),
}
