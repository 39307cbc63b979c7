"""Fill a rawevents data directory with generated events, fast, plus the baseline input files.

The benchmark's own bulk path: the generated Arrow columns go straight into the `events` table
through one DuckDB connection (`INSERT INTO events SELECT … FROM <arrow table>`), in chunks of 1M
rows, with `seq` numbered in generation order. That writes exactly the rows
`DuckDBStore.append_events` would write for the same `StoredEvent`s (same line, time_pos,
dedup key columns) without going through the writer thread, so a 10M-row store takes about a
minute to build instead of the ingest path's time. The ingest path is measured on its own.

Next to the store it writes, once per (size, seed):
- `rows.parquet`: (time_ms, seq, event, line) of every stored row, the input of the ClickHouse
  (chdb) baseline table;
- `import.jsonl`: the /import JSON object of every event (what clients send), the input of
  DuckDB's bulk-load baseline and of the HTTP ingest clients.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from bench.gen import DAY_MS, DAYS, START_MS, generate
from rawevents.projects import Project
from rawevents.storage.duckdb_store import DuckDBStore
from rawevents.storage.sqlite_registry import SqliteRegistry

OUT = Path(__file__).resolve().parent / "out"


@dataclass(frozen=True)
class Dataset:
    root: Path  # holds data/ (the server's data dir), rows.parquet and import.jsonl
    n_events: int
    project: Project
    line_bytes: int  # total bytes of the stored lines = uncompressed JSONL of a full export
    start_ms: int = START_MS
    end_ms: int = START_MS + DAYS * DAY_MS

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def parquet(self) -> Path:
        return self.root / "rows.parquet"

    @property
    def import_jsonl(self) -> Path:
        return self.root / "import.jsonl"


def build(n_events: int, seed: int = 42, *, out: Path = OUT, log: bool = True) -> Dataset:
    """The dataset for (n_events, seed), built once and reused from `out` afterwards."""
    root = out / f"ds-{n_events}-{seed}"
    done = root / "complete"
    if done.exists():
        registry = SqliteRegistry(root / "data")
        # Secrets are stored hashed: a reused dataset gets a fresh one to authenticate with.
        project = registry.rotate_secret(registry.list_projects()[0].project_id)
        return Dataset(root, n_events, project, int(done.read_text()))
    if root.exists():
        shutil.rmtree(root)
    (root / "data").mkdir(parents=True)
    started = time.perf_counter()
    project = SqliteRegistry(root / "data").create_project("bench", "UTC")
    DuckDBStore(root / "data").close()  # creates the schema exactly as the server does
    con = duckdb.connect(str(root / "data" / "events.duckdb"))
    con.execute("SET enable_progress_bar = false")
    writer: pq.ParquetWriter | None = None
    total_bytes = 0
    seq = 1
    with open(root / "import.jsonl", "wb") as jsonl:
        for chunk in generate(n_events, seed):
            n = len(chunk)
            table = pa.table(
                {
                    "project_id": pa.array([project.project_id] * n, pa.int32()),
                    "time_ms": chunk.time_ms,
                    "seq": pa.array(range(seq, seq + n), pa.int64()),
                    "event": chunk.event,
                    "distinct_id": chunk.distinct_id,
                    "insert_id": chunk.insert_id,
                    "time_pos": chunk.time_pos,
                    "line": chunk.line,
                }
            )
            con.register("chunk_rows", table)
            con.execute("INSERT INTO events SELECT * FROM chunk_rows")
            con.unregister("chunk_rows")
            rows = table.select(["time_ms", "seq", "event", "line"])
            if writer is None:
                writer = pq.ParquetWriter(root / "rows.parquet", rows.schema, compression="zstd")
            writer.write_table(rows)
            total_bytes += sum(len(buf) for buf in _data_buffers(chunk.line))
            body = chunk.body
            jsonl.write(_joined_lines(body))
            seq += n
            if log:
                print(f"  generated {seq - 1:,}/{n_events:,} events", flush=True)
    if writer is not None:
        writer.close()
    con.execute("CHECKPOINT")
    con.close()
    done.write_text(str(total_bytes))
    if log:
        print(f"  dataset ready in {time.perf_counter() - started:.1f} s: {root}", flush=True)
    return Dataset(root, n_events, project, total_bytes)


def _data_buffers(column: pa.Array) -> list[memoryview]:
    offsets = memoryview(column.buffers()[1]).cast("i")
    begin, end = offsets[column.offset], offsets[column.offset + len(column)]
    return [memoryview(column.buffers()[2])[begin:end]]


def _joined_lines(column: pa.Array) -> bytes:
    import pyarrow.compute as pc

    return b"".join(bytes(b) for b in _data_buffers(pc.binary_join_element_wise(column, "\n", "")))
