"""rawevents.client.formats: the vectorised Parquet writer against the row-by-row one it replaced
(kept here as the reference), on generated bodies full of traps: types mixed within a property
and across blocks, dates Arrow would take for timestamps, integers beyond int64, floats written
`1.0`, objects with keys in any order, lists of anything, blank lines, a last line without its
newline; read from a file and fed as a download in arbitrary chunks."""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawevents.client import formats
from rawevents.client.formats import (
    JSON_COLUMNS_KEY,
    Body,
    BodyDecoder,
    ParquetBuilder,
    read_parquet_records,
    write_parquet,
)
from rawevents.client.localtime import LocalToUtc, load_zone
from rawevents.client.transport import TransferIncomplete

BERLIN = load_zone("Europe/Berlin")

# -- the reference: the row-by-row writer, as it was ----------------------------------------------

_INT64 = (-(2**63), 2**63 - 1)
_TYPES: dict[frozenset[str], pa.DataType] = {
    frozenset({"int"}): pa.int64(),
    frozenset({"float"}): pa.float64(),
    frozenset({"int", "float"}): pa.float64(),
    frozenset({"bool"}): pa.bool_(),
    frozenset({"str"}): pa.string(),
    frozenset(): pa.string(),
}


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


def _name(key: str) -> str:
    return "properties.event" if key == "event" else key


def _ordered(keys: set[str]) -> list[str]:
    return [k for k in ("time", "distinct_id") if k in keys] + sorted(keys - {"time", "distinct_id"})


def reference_table(lines: list[bytes], convert: Callable[[Any], Any] | None = None) -> pa.Table:
    rows = [orjson.loads(line) for line in lines if line.strip()]
    for row in rows:
        props = row.get("properties")
        if convert is not None and isinstance(props, dict) and "time" in props:
            props["time"] = convert(props["time"])
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for key, value in (row.get("properties") or {}).items():
            seen = kinds.setdefault(key, set())
            if (kind := _kind(value)) is not None:
                seen.add(kind)
    fields = [pa.field("event", pa.string())]
    json_columns: set[str] = set()
    columns: list[list[Any]] = [[r.get("event") for r in rows]]
    for key in _ordered(set(kinds)):
        data_type = _TYPES.get(frozenset(kinds[key]))
        values = [(r.get("properties") or {}).get(key) for r in rows]
        if data_type is None:
            json_columns.add(_name(key))
            data_type = pa.string()
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        elif data_type == pa.float64():  # the one change: integers beyond 2^53 no longer fail
            values = [None if v is None else float(v) for v in values]
        fields.append(pa.field(_name(key), data_type))
        columns.append(values)
    schema = pa.schema(fields, metadata={JSON_COLUMNS_KEY: orjson.dumps(sorted(json_columns))})
    arrays = [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def assert_same(written: Path, expected: pa.Table) -> None:
    table = pq.read_table(written)
    assert table.schema.names == expected.schema.names
    assert [f.type for f in table.schema] == [f.type for f in expected.schema]
    assert table.schema.metadata[JSON_COLUMNS_KEY] == expected.schema.metadata[JSON_COLUMNS_KEY]
    assert table.to_pylist() == expected.to_pylist()


# -- generated bodies ------------------------------------------------------------------------------

INTS = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from([_INT64[0], _INT64[1], 2**63, 2**64 - 1]),
    st.integers(_INT64[0], 2**64 - 1),
)
SAFE_INTS = st.integers(-(2**53), 2**53)  # exact as floats: what a float column may hold
FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, -0.0, 0.5, 1e20, 2.0**63, -(2.0**64), 1e-7, 123456789.125]),
)
DATES = st.sampled_from(
    ["2024-01-01", "2024-01-01T10:00:00", "2024-01-01 10:00:00", "2024-01-01T10:00:00Z", "12:00:00"]
)
STRINGS = st.one_of(st.text(max_size=8), DATES, st.sampled_from(["1", "true", "null", '"q"', "a\nb\\"]))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, STRINGS)
NESTED = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["x", "y", "z", "é"]), inner, max_size=3)
    ),
    max_leaves=6,
)
KINDS: dict[str, st.SearchStrategy[Any]] = {
    "int": INTS,
    "float": FLOATS,
    "number": st.one_of(SAFE_INTS, FLOATS),
    "bool": st.booleans(),
    "str": STRINGS,
    "date": DATES,
    "list of strings": st.lists(st.text(max_size=4), max_size=3),
    "list of ints": st.lists(INTS, max_size=3),
    "list": st.lists(NESTED, max_size=3),
    "object": st.dictionaries(st.sampled_from(["x", "y", "z"]), NESTED, max_size=3),
    "anything": NESTED,
    "null": st.none(),
}
KEYS = ["time", "distinct_id", "event", "a", "b", "$c", "d.e", "é", ""]


@st.composite
def bodies(draw: st.DrawFn) -> list[bytes]:
    """Export lines: each property keeps the kind it was given (so typed columns occur), with
    nulls and absences, or takes anything; blank lines here and there."""
    kinds = {key: draw(st.sampled_from(sorted(KINDS))) for key in draw(st.sets(st.sampled_from(KEYS)))}
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from([b"", b"  ", b"\r"])))
            continue
        props = {}
        for key in draw(st.permutations(sorted(kinds))):
            if draw(st.integers(0, 4)) == 0:
                continue  # absent
            props[key] = None if draw(st.integers(0, 6)) == 0 else draw(KINDS[kinds[key]])
        record: dict[str, Any] = {"event": draw(st.sampled_from(["a", "b", "日本"])), "properties": props}
        if draw(st.integers(0, 20)) == 0:
            record = {"event": record["event"]}  # no properties at all
        lines.append(orjson.dumps(record))
    return lines


def _chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    at = 0
    for size in sizes:
        yield data[at : at + size]
        at += size
    yield data[at:]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few lines, so bodies span several (and types change between them)."""
    monkeypatch.setattr(formats, "ROW_GROUP_ROWS", 4)


@settings(max_examples=settings.default.max_examples * 4)
@given(lines=bodies(), gz=st.booleans(), last_newline=st.booleans(), chunks=st.lists(st.integers(1, 200)))
def test_the_vectorised_writer_writes_what_the_row_writer_wrote(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    gz: bool,
    last_newline: bool,
    chunks: list[int],
) -> None:
    folder = tmp_path_factory.mktemp("body")
    data = b"\n".join(lines) + (b"\n" if last_newline and lines else b"")
    if not lines[-1:] or not lines[-1].strip():
        data += b"\n"  # a body never ends in a cut blank line
    encoded = gzip.compress(data) if gz else data
    body = Body(folder / "body", gz)
    body.path.write_bytes(encoded)
    expected = reference_table(data.split(b"\n"))
    write_parquet(body, folder / "read.parquet", None)
    assert_same(folder / "read.parquet", expected)
    # The same, fed as a download, in chunks cut anywhere.
    with ParquetBuilder(folder) as builder:
        decoder = BodyDecoder(gz, builder.add)
        for chunk in _chunks(encoded, chunks):
            decoder.feed(chunk)
        decoder.end()
        assert builder.write(folder / "fed.parquet", body.blocks) == expected.num_rows
    assert_same(folder / "fed.parquet", expected)
    assert sorted(p.name for p in folder.iterdir()) == ["body", "fed.parquet", "read.parquet"]


def _write(tmp_path: Path, lines: list[bytes], **kwargs: Any) -> Path:
    (tmp_path / "body").write_bytes(b"".join(line + b"\n" for line in lines))
    write_parquet(Body(tmp_path / "body"), tmp_path / "out.parquet", kwargs.pop("time_map", None), **kwargs)
    return tmp_path / "out.parquet"


def _line(props: dict[str, Any], event: str = "e") -> bytes:
    return orjson.dumps({"event": event, "properties": props})


def test_blocks_arrow_refuses_are_read_line_by_line(tmp_path: Path) -> None:
    lines = [
        b'{"event":"e","properties":{"time":1,"a":1,"a":"two"}}',  # a duplicate key: the last wins
        _line({"time": 2, "a": "x", "b": 1}),
        _line({"time": 3, "a": 5, "b": 2.5}),  # `a` changes type within the block
        _line({"time": 4, "b": 3}),
        _line({"time": 5, "b": 4}),
    ]
    out = _write(tmp_path, lines)
    assert_same(out, reference_table(lines))
    table = pq.read_table(out)
    assert table.column("a").to_pylist() == ['"two"', '"x"', "5", None, None]
    assert table.column("b").type == pa.float64()


def test_lists_arrow_reads_wrong_come_from_the_lines(tmp_path: Path) -> None:
    # Arrow's JSON reader drops a list's leading nulls once a later element fixes its type, and
    # miscounts lists of nulls only: both leave invalid arrays, which are not trusted.
    lists = [[None, False], [True], [None, None], [], [["a", None]], [1, 2], ["x"]]
    lines = [_line({"time": n, "a": value, "b": [None] * n}) for n, value in enumerate(lists)]
    out = _write(tmp_path, lines)
    assert_same(out, reference_table(lines))
    assert pq.read_table(out).column("a").to_pylist()[:3] == ["[null,false]", "[true]", "[null,null]"]


def test_a_cut_body_is_incomplete(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(_line({"time": n}) + b"\n" for n in range(10)))
    with ParquetBuilder(tmp_path) as builder:
        decoder = BodyDecoder(True, builder.add)
        decoder.feed(data[: len(data) // 2])
        with pytest.raises(TransferIncomplete, match="incomplete gzip body"):
            decoder.end()
    with ParquetBuilder(tmp_path) as builder:
        decoder = BodyDecoder(False, builder.add)
        decoder.feed(_line({"time": 1}) + b"\n" + _line({"time": 2})[:-3])
        with pytest.raises(TransferIncomplete, match="in the middle of a line"):
            decoder.end()
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_time_converted_in_the_project_zone_across_dst(tmp_path: Path) -> None:
    # Local times through the repeated hour of 2024-10-27 in Berlin, in export (true-time) order.
    local = [1_729_990_800 + 1200 * n for n in range(6)] + [1_729_994_400 + 1200 * n for n in range(6)]
    lines = [_line({"time": t, "n": n}) for n, t in enumerate(local)]
    lines[5] = _line({"time": local[5], "n": "five"})  # a block read line by line
    out = _write(tmp_path, lines, time_map=lambda: LocalToUtc(BERLIN))
    assert_same(out, reference_table(lines, LocalToUtc(BERLIN)))
    assert pq.read_table(out).column("time").to_pylist() != local


def test_utc_time_is_a_timestamp_and_reads_back_as_epoch_seconds(tmp_path: Path) -> None:
    lines = [_line({"time": 1_700_000_000 + n, "distinct_id": "u"}) for n in range(5)]
    lines.append(_line({"time": 1_700_000_000_123, "distinct_id": "u"}))  # milliseconds
    lines.append(_line({"distinct_id": "u"}))
    out = _write(tmp_path, lines, utc=True)
    table = pq.read_table(out)
    assert table.schema.field("time").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.names == ["event", "time", "distinct_id"]
    stamps = table.column("time").to_pylist()
    assert stamps[0] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert stamps[5] == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.UTC) and stamps[6] is None
    back = [r["properties"].get("time") for r in read_parquet_records(out)]
    assert back == [1_700_000_000 + n for n in range(5)] + [1_700_000_000_123, None]


def test_an_empty_body_is_a_file_without_rows(tmp_path: Path) -> None:
    out = _write(tmp_path, [])
    table = pq.read_table(out)
    assert table.num_rows == 0 and table.schema.names == ["event"]
