"""The baselines every figure is divided by, measured in the same run on the same rows.

- DuckDB's own gzip export: the rows in the shape a DuckDB user would keep them
  (`event VARCHAR, properties JSON`, ordered by time), written with
  `COPY (SELECT event, properties … ORDER BY time_ms, seq) TO 'x.json.gz' (FORMAT JSON, COMPRESSION gzip)`.
  The JSON column is written verbatim, so each output line is the same JSONL line we export.
- ClickHouse (chdb, in process), two tables loaded from the same rows (rows.parquet):
  * `chdb line`: `(time_ms, seq, event, line String) ORDER BY (time_ms, seq)`, the pre-assembled
    export line (our own design on ClickHouse's engine); `SELECT line … ORDER BY time_ms, seq
    INTO OUTFILE … COMPRESSION 'gzip' LEVEL 1 FORMAT RawBLOB` writes byte-identical JSONL.
  * `chdb JSONEachRow`: `(time_ms, seq, event, properties JSON)`, ClickHouse's native JSON type;
    `SELECT event, properties … FORMAT JSONEachRow` with gzip level 1 (keys come out re-sorted and
    `/` escaped, so its bytes differ slightly; MB/s are counted on our JSONL bytes for the same rows).
  chdb's gzip level is set to 1, its fastest, to match ISA-L level 1 on our side.
- The physical limit: the same JSONL bytes gzip-compressed by ISA-L level 1 on one core.
- Ingest: DuckDB's own bulk load of the same events from a JSONL file
  (`INSERT INTO t SELECT * FROM read_json(…, columns={event: VARCHAR, properties: JSON})`,
  one autocommit transaction into a database file: durable when the INSERT returns).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
from isal import isal_zlib

from bench.dataset import Dataset


@dataclass(frozen=True)
class Filter:
    """One export scenario, spelled for every system."""

    name: str
    where: str | None = None  # Mixpanel `where` expression (HTTP)
    events: tuple[str, ...] | None = None  # Mixpanel `event` parameter
    duckdb_sql: str = "TRUE"  # over the baseline table bl(event, properties JSON)
    store_sql: str = "TRUE"  # over the store's events table (line, event)
    chdb_line_sql: str = "1"  # over ev(line)
    chdb_json_sql: str = "1"  # over evj(properties JSON)


FULL = Filter("full range")
WHERE = Filter(
    "where mp_country_code == DE",
    where='properties["mp_country_code"] == "DE"',
    duckdb_sql="json_extract_string(properties, '$.mp_country_code') = 'DE'",
    store_sql="json_extract_string(line, '$.properties.\"mp_country_code\"') = 'DE'",
    chdb_line_sql="JSONExtractString(line, 'properties', 'mp_country_code') = 'DE'",
    chdb_json_sql="properties.mp_country_code = 'DE'",
)
EVENTS = ("Add to Cart", "Purchase")
_EVENT_LIST = ", ".join(f"'{e}'" for e in EVENTS)
EVENT = Filter(
    "event in [Add to Cart, Purchase]",
    events=EVENTS,
    duckdb_sql=f"event IN ({_EVENT_LIST})",
    store_sql=f"event IN ({_EVENT_LIST})",
    chdb_line_sql=f"event IN ({_EVENT_LIST})",
    chdb_json_sql=f"event IN ({_EVENT_LIST})",
)
FILTERS = (FULL, WHERE, EVENT)


@dataclass(frozen=True)
class Run:
    seconds: float
    out_bytes: int  # compressed bytes written


def expected(ds: Dataset, flt: Filter, project_id: int | None = None) -> tuple[int, int]:
    """(rows, uncompressed JSONL bytes) the filter selects, counted on the store."""
    con = duckdb.connect(str(ds.data_dir / "events.duckdb"), read_only=True)
    try:
        row = con.execute(
            f"SELECT count(*), coalesce(sum(strlen(line)), 0) FROM events WHERE {flt.store_sql}"
            " AND project_id = ?",
            [project_id or ds.project.project_id],
        )
        rows, size = row.fetchone()  # type: ignore[misc]
        return int(rows), int(size)
    finally:
        con.close()


def isal_raw(chunks: Iterable[bytes | memoryview]) -> float:
    """Seconds ISA-L level 1 takes to gzip `chunks` on one core (the physical limit)."""
    started = time.perf_counter()
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    for chunk in chunks:
        compressor.compress(chunk)
    compressor.flush()
    return time.perf_counter() - started


class DuckDBBaseline:
    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        path = ds.root / "duckdb_baseline.duckdb"
        ready = ds.root / "duckdb_baseline.ready"
        if not ready.exists():
            path.unlink(missing_ok=True)
            con = duckdb.connect(str(path))
            con.execute(
                "CREATE TABLE bl AS SELECT time_ms, seq, event,"
                " json_extract(line, '$.properties') AS properties"
                f" FROM read_parquet('{ds.parquet}') ORDER BY time_ms, seq"
            )
            con.close()
            ready.touch()
        self.con = duckdb.connect(str(path), read_only=True)

    def export(self, flt: Filter, out: Path) -> Run:
        out.unlink(missing_ok=True)
        started = time.perf_counter()
        self.con.execute(
            f"COPY (SELECT event, properties FROM bl WHERE time_ms >= {self.ds.start_ms}"
            f" AND time_ms < {self.ds.end_ms} AND {flt.duckdb_sql} ORDER BY time_ms, seq)"
            f" TO '{out}' (FORMAT JSON, COMPRESSION gzip)"
        )
        seconds = time.perf_counter() - started
        size = out.stat().st_size
        out.unlink()
        return Run(seconds, size)

    def close(self) -> None:
        self.con.close()


class ChdbBaseline:
    def __init__(self, ds: Dataset, *, json_table: bool = True) -> None:
        from chdb import session

        self.ds = ds
        self.json_table = json_table
        self.sess = session.Session(str(ds.root / "chdb"))
        ready = ds.root / "chdb.ready"
        if not ready.exists():
            self.sess.query("DROP TABLE IF EXISTS ev")
            self.sess.query("DROP TABLE IF EXISTS evj")
            self.sess.query(
                "CREATE TABLE ev (time_ms Int64, seq Int64, event LowCardinality(String), line String)"
                " ENGINE = MergeTree ORDER BY (time_ms, seq)"
            )
            self.sess.query(
                f"INSERT INTO ev SELECT time_ms, seq, event, line FROM file('{ds.parquet}', Parquet)"
            )
            self.sess.query("OPTIMIZE TABLE ev FINAL")
            ready.touch()
        json_ready = ds.root / "chdb_json.ready"
        if json_table and not json_ready.exists():
            self.sess.query("DROP TABLE IF EXISTS evj")
            self.sess.query(
                "CREATE TABLE evj (time_ms Int64, seq Int64, event LowCardinality(String), properties JSON)"
                " ENGINE = MergeTree ORDER BY (time_ms, seq)"
            )
            self.sess.query(
                "INSERT INTO evj SELECT time_ms, seq, event, JSONExtractRaw(line, 'properties') FROM ev"
            )
            self.sess.query("OPTIMIZE TABLE evj FINAL")
            json_ready.touch()

    def export_line(self, flt: Filter, out: Path) -> Run:
        return self._run(
            f"SELECT line FROM ev WHERE {self._range()} AND {flt.chdb_line_sql} ORDER BY time_ms, seq",
            "RawBLOB",
            out,
        )

    def export_json(self, flt: Filter, out: Path) -> Run:
        return self._run(
            f"SELECT event, properties FROM evj WHERE {self._range()} AND {flt.chdb_json_sql}"
            " ORDER BY time_ms, seq",
            "JSONEachRow",
            out,
        )

    def _range(self) -> str:
        return f"time_ms >= {self.ds.start_ms} AND time_ms < {self.ds.end_ms}"

    def _run(self, select: str, fmt: str, out: Path) -> Run:
        out.unlink(missing_ok=True)
        started = time.perf_counter()
        self.sess.query(f"{select} INTO OUTFILE '{out}' COMPRESSION 'gzip' LEVEL 1 FORMAT {fmt}")
        seconds = time.perf_counter() - started
        size = out.stat().st_size
        out.unlink()
        return Run(seconds, size)

    def close(self) -> None:
        self.sess.close()


def duckdb_bulk_load(jsonl: Path, db_path: Path) -> float:
    """Seconds DuckDB takes to load `jsonl` into a table of (event, properties JSON) and commit."""
    for p in (db_path, Path(str(db_path) + ".wal")):
        p.unlink(missing_ok=True)
    con = duckdb.connect(str(db_path))
    con.execute("CREATE TABLE t (event VARCHAR, properties JSON)")
    started = time.perf_counter()
    con.execute(
        "INSERT INTO t SELECT * FROM read_json(?, format = 'newline_delimited',"
        " columns = {event: 'VARCHAR', properties: 'JSON'})",
        [str(jsonl)],
    )
    seconds = time.perf_counter() - started  # autocommit: durable once INSERT returns
    con.close()
    os.unlink(db_path)
    return seconds
