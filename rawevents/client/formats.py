"""Output formats of `rawevents export`: JSONL, JSONL.gz, CSV and Parquet, all in bounded memory.

Every writer reads the downloaded body (kept on disk) as lines, so memory does not grow with
the day's size. CSV and Parquet need their columns before the first row: they read the body
twice, once to learn the property names (and, for Parquet, their types), once to write.

- CSV: columns `event`, `time`, `distinct_id`, then every other property in code-point order.
  Strings as they are; numbers as JSON numbers; booleans `true`/`false`; lists and objects as
  compact JSON; a missing property or null is an empty cell.
- Parquet: one column per property with the type its values have (int64, float64 when ints and
  floats mix, bool, string); a property holding lists, objects or values of several types is a
  string column of JSON text, named in the file's `rawevents:json_columns` metadata. Written in
  row groups of ROW_GROUP_ROWS rows.
- A property called `event` becomes the column `properties.event` (the event name owns `event`).
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from rawevents.client.transport import TransferIncomplete

Format = Literal["jsonl", "jsonl.gz", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("jsonl", "jsonl.gz", "csv", "parquet")
ROW_GROUP_ROWS = 50_000
JSON_COLUMNS_KEY = b"rawevents:json_columns"
_LEAD = ("event", "time", "distinct_id")
_INT64 = (-(2**63), 2**63 - 1)

Lines = Callable[[], Iterator[bytes]]  # re-openable: each call reads the body from the start
Record = dict[str, Any]
Transform = Callable[[], Callable[[Record], Record]]  # a fresh (stateful) row transform per pass


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


def _check_last_line(line: bytes) -> None:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise TransferIncomplete("the body ends in the middle of a line") from exc


def records(lines: Lines, transform: Transform | None) -> Iterator[Record]:
    apply = transform() if transform is not None else None
    for line in lines():
        record = orjson.loads(line)
        yield apply(record) if apply is not None else record


def write_jsonl(lines: Lines, out: Path, transform: Transform | None, *, gz: bool) -> int:
    rows = 0
    with gzip.open(out, "wb", compresslevel=6) if gz else out.open("wb") as sink:
        if transform is None:
            for line in lines():
                sink.write(line)
                rows += 1
        else:
            for record in records(lines, transform):
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


def write_csv(lines: Lines, out: Path, transform: Transform | None) -> int:
    keys: set[str] = set()
    for record in records(lines, transform):
        keys.update(record.get("properties") or {})
    columns = _ordered(keys)
    rows = 0
    with out.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(["event", *(_column_name(k) for k in columns)])
        for record in records(lines, transform):
            props = record.get("properties") or {}
            writer.writerow([csv_cell(record.get("event")), *(csv_cell(props.get(k)) for k in columns)])
            rows += 1
    return rows


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


def write_parquet(lines: Lines, out: Path, transform: Transform | None) -> int:
    kinds: dict[str, set[str]] = {}
    for record in records(lines, transform):
        for key, value in (record.get("properties") or {}).items():
            seen = kinds.setdefault(key, set())
            if (kind := _kind(value)) is not None:
                seen.add(kind)
    schema, json_columns = parquet_schema(kinds)
    keys = _ordered(set(kinds))
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        batch: list[Record] = []
        for record in records(lines, transform):
            batch.append(record)
            if len(batch) >= ROW_GROUP_ROWS:
                writer.write_table(_table(batch, keys, schema, json_columns))
                rows += len(batch)
                batch = []
        if batch or rows == 0:
            writer.write_table(_table(batch, keys, schema, json_columns))
            rows += len(batch)
    return rows


def _table(batch: list[Record], keys: list[str], schema: pa.Schema, json_columns: set[str]) -> pa.Table:
    columns: list[list[Any]] = [[r.get("event") for r in batch]]
    for key in keys:
        values = [(r.get("properties") or {}).get(key) for r in batch]
        if _column_name(key) in json_columns:
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        columns.append(values)
    arrays = [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def read_parquet_records(path: Path) -> Iterator[Record]:
    """Events back from a Parquet export: nulls dropped, JSON columns decoded."""
    parquet = pq.ParquetFile(path)
    raw = (parquet.schema_arrow.metadata or {}).get(JSON_COLUMNS_KEY, b"[]")
    json_columns = set(orjson.loads(raw))
    for batch in parquet.iter_batches(batch_size=ROW_GROUP_ROWS):
        for row in batch.to_pylist():
            props = {}
            for column, value in row.items():
                if column == "event" or value is None:
                    continue
                key = "event" if column == "properties.event" else column
                props[key] = orjson.loads(value) if column in json_columns else value
            yield {"event": row["event"], "properties": props}


WRITERS: dict[str, Callable[[Lines, Path, Transform | None], int]] = {
    "jsonl": lambda lines, out, transform: write_jsonl(lines, out, transform, gz=False),
    "jsonl.gz": lambda lines, out, transform: write_jsonl(lines, out, transform, gz=True),
    "csv": write_csv,
    "parquet": write_parquet,
}
