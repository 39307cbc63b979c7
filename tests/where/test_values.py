"""Value-level agreement: the SQL arms compute the same numbers and strings as Python, checked
directly (not only through row selection) for the conversions most likely to drift."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawevents.eventline import assemble_line
from rawevents.where import parse, value_of
from rawevents.where.printer.duckdb import DuckDBPrinter
from rawevents.where.values import UNDEFINED, DateTime, naive_offset_ms, naive_offsets

ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Europe/Dublin"]


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("CREATE TABLE events (line VARCHAR, event VARCHAR, time_ms BIGINT)")
    yield connection
    connection.close()


def sql_value(con: duckdb.DuckDBPyConnection, expr: str, kind: str, props: dict[str, Any], tz: str) -> Any:
    value = DuckDBPrinter(tz).value(parse(expr))
    arm = value.arm(kind)
    assert arm is not None
    _, line = assemble_line("e", props, 0)
    con.execute("DELETE FROM events")
    con.execute("INSERT INTO events VALUES (?, 'e', 0)", [line])
    row = con.execute(f"SELECT {arm.text} FROM events", list(arm.params)).fetchone()
    assert row is not None
    return row[0]


def py_value(expr: str, props: dict[str, Any], tz: str) -> Any:
    return value_of(expr, {"event": "e", "properties": props, "time_ms": 0, "local_time": 0}, tz)


@given(number=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**63 - 1))
def test_number_text(con: duckdb.DuckDBPyConnection, number: float) -> None:
    expected = py_value('string(properties["n"])', {"n": number}, "UTC")
    assert sql_value(con, 'string(properties["n"])', "string", {"n": number}, "UTC") == expected


@given(
    text=st.one_of(
        st.from_regex(r"[+-]?[0-9]{0,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
        st.text(max_size=8),
    )
)
def test_number_parsing(con: duckdb.DuckDBPyConnection, text: str) -> None:
    expected = py_value('number(properties["s"])', {"s": text}, "UTC")
    got = sql_value(con, 'number(properties["s"])', "number", {"s": text}, "UTC")
    assert (UNDEFINED if got is None else got) == expected


datetime_texts = st.builds(
    lambda y, mo, d, t, frac, zone: f"{y}-{mo}-{d}{t}{frac if t else ''}{zone if t else ''}",
    st.integers(1, 9999).map(lambda y: f"{y:04d}") | st.sampled_from(["0000", "1969", "2024", "2038"]),
    st.integers(0, 13).map(str) | st.integers(1, 12).map(lambda m: f"{m:02d}"),
    st.integers(0, 32).map(str) | st.integers(1, 31).map(lambda d: f"{d:02d}"),
    st.sampled_from(["", "T00:00", "T02:30:00", "T01:30:00", " 23:59:59", "T24:00:00", "T12:60"]),
    st.sampled_from(["", ".5", ".123456789"]),
    st.sampled_from(["", "Z", "+05:30", "-0800", "+24:00"]),
)


@given(text=datetime_texts, tz=st.sampled_from(ZONES))
def test_datetime_parsing(con: duckdb.DuckDBPyConnection, text: str, tz: str) -> None:
    expected = py_value('datetime(properties["d"])', {"d": text}, tz)
    got = sql_value(con, 'datetime(properties["d"])', "datetime", {"d": text}, tz)
    assert (UNDEFINED if got is None else DateTime(got)) == expected, text


@given(ms=st.integers(-62_135_596_800_000, 253_402_300_799_999))
def test_datetime_text(con: duckdb.DuckDBPyConnection, ms: int) -> None:
    expected = py_value('string(datetime(properties["n"]))', {"n": ms}, "UTC")
    got = sql_value(con, 'string(datetime(properties["n"]))', "string", {"n": ms}, "UTC")
    assert (UNDEFINED if got is None else got) == expected


@pytest.mark.parametrize("tz", ZONES)
def test_naive_offsets_follow_zoneinfo_fold0(tz: str) -> None:
    breaks, _ = naive_offsets(tz)
    zone = ZoneInfo(tz)
    for wall in [*breaks[:40], *[b - 1 for b in breaks[:40]], 1_710_055_800_000, 1_730_611_800_000]:
        naive = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=wall)
        offset = naive.replace(tzinfo=zone).utcoffset()
        assert offset is not None
        assert naive_offset_ms(tz, wall) == int(offset.total_seconds() * 1000)
