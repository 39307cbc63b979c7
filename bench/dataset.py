"""Fill a rawevents data directory with generated events, fast, plus the baseline input files.

The benchmark's own bulk path: the generated Arrow columns go straight into the store's recent
area through one DuckDB connection (`INSERT INTO events_recent SELECT … FROM <arrow table>`), in
chunks of 1M rows, with `seq` numbered in arrival order; then the store's own compactor sorts
them into runs (`DuckDBStore.compact`), as it would in the background after the same commits.
That writes exactly the rows `submit_events` would write for the same events (same line,
time_pos, dedup key columns) without going through the writer thread, so a 10M-row store takes
minutes to build instead of the ingest path's time. The ingest path is measured on its own.

Arrival order: `ordered` numbers `seq` in generation order (time order, 2 % late); `shuffled`
numbers it by a random permutation, as if the same events arrived in random order, so every
compaction slice holds rows of every day. `small_share` adds a second project with that share of
the big one's events (its own seed), its arrival interleaved with the big project's.

Next to the store it writes, once per (size, seed):
- `rows.parquet`: (time_ms, seq, event, line) of every stored row, the input of the ClickHouse
  (chdb) baseline table;
- `import.jsonl`: the /import JSON object of every event (what clients send), the input of
  DuckDB's bulk-load baseline and of the HTTP ingest clients.

`build_identity` makes the identity case's store (bench.run): two Simplified ID Merge projects
holding the same generated events (bench.gen.IdentityMix), `linked` with its devices' links and
`unlinked` with the link-carrying events' `$user_id` removed. The links are applied by the
store's own code (`duckdb_identity.apply_links`, the first link of each device in arrival order:
the later ones change nothing), and each project's /import bodies are written beside it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.gen import DAY_MS, DAYS, START_MS, Chunk, IdentityMix, generate
from rawevents.identity import DEVICE, SIMPLIFIED
from rawevents.projects import Project
from rawevents.storage.duckdb import identity as duckdb_identity
from rawevents.storage.duckdb.registry import SqliteRegistry
from rawevents.storage.duckdb.schema import KEY_HASH, RECENT
from rawevents.storage.duckdb.store import DuckDBStore

OUT = Path(__file__).resolve().parent / "out"


@dataclass(frozen=True)
class Dataset:
    root: Path  # holds data/ (the server's data dir), rows.parquet and import.jsonl
    n_events: int
    project: Project
    line_bytes: int  # total bytes of the big project's lines = uncompressed JSONL of a full export
    small: Project | None = None  # the 1 % project, when the dataset has one
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


def build(
    n_events: int,
    seed: int = 42,
    *,
    out: Path = OUT,
    log: bool = True,
    arrival: str = "ordered",
    small_share: float = 0.0,
) -> Dataset:
    """The dataset for (n_events, seed, arrival, small_share), built once and reused from `out`."""
    name = f"ds-{n_events}-{seed}" + ("" if arrival == "ordered" else f"-{arrival}")
    name += f"-small{small_share:g}" if small_share else ""
    root = out / name
    done = root / "complete"
    if done.exists():
        registry = SqliteRegistry(root / "data")
        # Secrets are stored hashed: a reused dataset gets a fresh one to authenticate with.
        project, *others = (registry.rotate_secret(p.project_id) for p in registry.list_projects())
        return Dataset(root, n_events, project, int(done.read_text()), small=others[0] if others else None)
    if root.exists():
        shutil.rmtree(root)
    (root / "data").mkdir(parents=True)
    started = time.perf_counter()
    registry = SqliteRegistry(root / "data")
    project = registry.create_project("bench", "UTC")
    small = registry.create_project("small", "UTC") if small_share else None
    DuckDBStore(root / "data", background_compaction=False).close()  # the schema, as the server makes it
    n_small = int(n_events * small_share)
    order = _arrival(n_events + n_small, seed, arrival)
    con = duckdb.connect(str(root / "data" / "events.duckdb"), config={"memory_limit": "1GB"})
    con.execute("SET enable_progress_bar = false")
    writer: pq.ParquetWriter | None = None
    total_bytes = 0
    done_rows = 0
    with open(root / "import.jsonl", "wb") as jsonl:
        for chunk in generate(n_events, seed):
            table = _stored(chunk, project.project_id, order[done_rows : done_rows + len(chunk)])
            _insert(con, table)
            rows = table.select(["time_ms", "seq", "event", "line"])
            if writer is None:
                writer = pq.ParquetWriter(root / "rows.parquet", rows.schema, compression="zstd")
            writer.write_table(rows)
            total_bytes += sum(len(buf) for buf in _data_buffers(chunk.line))
            jsonl.write(_joined_lines(chunk.body))
            done_rows += len(chunk)
            if log:
                print(f"  generated {done_rows:,}/{n_events:,} events", flush=True)
    if small is not None:
        for chunk in generate(n_small, seed + 1):
            _insert(con, _stored(chunk, small.project_id, order[done_rows : done_rows + len(chunk)]))
            done_rows += len(chunk)
    if writer is not None:
        writer.close()
    con.execute("CHECKPOINT")
    con.close()
    store = DuckDBStore(root / "data", background_compaction=False)
    try:
        store.compact()
    finally:
        store.close()
    done.write_text(str(total_bytes))
    if log:
        print(f"  dataset ready in {time.perf_counter() - started:.1f} s: {root}", flush=True)
    return Dataset(root, n_events, project, total_bytes, small=small)


@dataclass(frozen=True)
class IdentityDataset:
    """The identity case's store: `linked` and `unlinked` are views of it, one per project."""

    root: Path
    n_events: int
    share: float
    linked: Dataset
    unlinked: Dataset
    links: int  # identity rows: devices linked to a user
    resolved: int  # rows of `linked` whose distinct_id resolves to a user

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def import_jsonl(self, linked: bool) -> Path:
        return self.root / f"import-{'linked' if linked else 'unlinked'}.jsonl"


def build_identity(
    n_events: int, seed: int = 42, share: float = 0.3, *, out: Path = OUT, log: bool = True
) -> IdentityDataset:
    """The identity case's dataset for (n_events, seed, share), built once and reused from `out`."""
    root = out / f"ds-{n_events}-{seed}-identity{share:g}"
    done = root / "complete"
    if done.exists():
        facts = json.loads(done.read_text())
        registry = SqliteRegistry(root / "data")
        projects = {p.name: registry.rotate_secret(p.project_id) for p in registry.list_projects()}
    else:
        if root.exists():
            shutil.rmtree(root)
        (root / "data").mkdir(parents=True)
        started = time.perf_counter()
        registry = SqliteRegistry(root / "data")
        projects = {
            name: registry.create_project(name, "UTC", id_merge=SIMPLIFIED) for name in ("linked", "unlinked")
        }
        DuckDBStore(root / "data", background_compaction=False).close()
        con = duckdb.connect(str(root / "data" / "events.duckdb"), config={"memory_limit": "1GB"})
        con.execute("SET enable_progress_bar = false")
        facts = {}
        seq = 1
        for name, project in projects.items():
            linked = name == "linked"
            seen: set[str] = set()
            total_bytes = 0
            with open(root / f"import-{name}.jsonl", "wb") as jsonl:
                for chunk in generate(n_events, seed, identity=IdentityMix(share, linked)):
                    seqs = np.arange(seq, seq + len(chunk), dtype=np.int64)
                    table = _stored(chunk, project.project_id, seqs)
                    _insert(con, table)
                    if linked:
                        _apply_first_links(con, chunk, table, seen)
                    total_bytes += sum(len(buf) for buf in _data_buffers(chunk.line))
                    jsonl.write(_joined_lines(chunk.body))
                    seq += len(chunk)
                    if log:
                        print(f"  {name}: generated {seq - 1:,} events in all", flush=True)
            facts[f"{name}_bytes"] = total_bytes
        facts["links"] = _count(con, f"SELECT count(*) FROM {duckdb_identity.IDENTITY}")
        facts["resolved"] = _count(
            con,
            f"SELECT count(*) FROM {RECENT} e JOIN {duckdb_identity.IDENTITY} m"
            " ON m.project_id = e.project_id AND m.distinct_id = e.distinct_id",
        )
        con.execute("CHECKPOINT")
        con.close()
        store = DuckDBStore(root / "data", background_compaction=False)
        try:
            store.compact()
        finally:
            store.close()
        done.write_text(json.dumps(facts))
        if log:
            print(f"  identity dataset ready in {time.perf_counter() - started:.1f} s: {root}", flush=True)
    linked, unlinked = projects["linked"], projects["unlinked"]
    return IdentityDataset(
        root,
        n_events,
        share,
        Dataset(root, n_events, linked, facts["linked_bytes"]),
        Dataset(root, n_events, unlinked, facts["unlinked_bytes"]),
        facts["links"],
        facts["resolved"],
    )


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _apply_first_links(
    con: duckdb.DuckDBPyConnection, chunk: Chunk, stored: pa.Table, seen: set[str]
) -> None:
    """The store's commit step for the chunk's links: the first of each device (in arrival order),
    as `submit_events` applies them; a device's later links change nothing."""
    assert chunk.link_source is not None and chunk.link_target is not None
    first = []
    for i, source in enumerate(chunk.link_source.to_pylist()):
        if source is not None and source not in seen:
            seen.add(source)
            first.append(i)
    if not first:
        return
    rows = pa.array(first, pa.int64())
    incoming = pa.table(
        {
            "project_id": stored.column("project_id").take(rows),
            "seq": stored.column("seq").take(rows),
            "time_ms": stored.column("time_ms").take(rows),
            "link_kind": pa.array(np.full(len(first), DEVICE, np.int8)),
            "link_source": chunk.link_source.take(rows),
            "link_target": chunk.link_target.take(rows),
        }
    )
    duckdb_identity.apply_links(con, incoming, duckdb_identity.LinkedDevices())


def _arrival(n: int, seed: int, arrival: str) -> np.ndarray:
    """`seq` of each generated row (1-based): generation order, or a random permutation."""
    if arrival == "ordered":
        return np.arange(1, n + 1, dtype=np.int64)
    return np.random.default_rng([seed, 0x5EED]).permutation(n).astype(np.int64) + 1


def _stored(chunk: Chunk, project_id: int, seq: np.ndarray) -> pa.Table:
    n = len(chunk)
    return pa.table(
        {
            "project_id": pa.array(np.full(n, project_id, np.int32)),
            "time_ms": chunk.time_ms,
            "seq": pa.array(seq),
            "event": chunk.event,
            "distinct_id": chunk.distinct_id,
            "insert_id": chunk.insert_id,
            "time_pos": chunk.time_pos,
            "line": chunk.line,
        }
    )


def _insert(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Into the recent area in arrival order, as commits would have written it."""
    con.register("chunk_rows", table)
    con.execute(f"INSERT INTO {RECENT} SELECT *, {KEY_HASH} FROM chunk_rows ORDER BY seq")
    con.unregister("chunk_rows")


def _data_buffers(column: pa.Array) -> list[memoryview]:
    offsets = memoryview(column.buffers()[1]).cast("i")
    begin, end = offsets[column.offset], offsets[column.offset + len(column)]
    return [memoryview(column.buffers()[2])[begin:end]]


def _joined_lines(column: pa.Array) -> bytes:
    import pyarrow.compute as pc

    return b"".join(bytes(b) for b in _data_buffers(pc.binary_join_element_wise(column, "\n", "")))
