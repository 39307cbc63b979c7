"""The whole benchmark: `python -m bench.run [--events 1000000] [--reps 5] [--big]`.

Generates (or reuses) the dataset, measures rawevents and every baseline on the same rows in the
same run, and prints one table (also written to bench/out/results-<events>.md and .json). Every
figure is the median of `--reps` runs; every ratio is rawevents divided by the baseline.

The identity case (`--identity-events`, default `--events`; `--identity-only` runs it alone):
two Simplified ID Merge projects in one store hold the same events, 30 % of them anonymous events
of devices identified later (bench.gen.IdentityMix), one with the links and one without. Their
full exports (resolved through the identity rows vs no join) and their /import CPU per event
(link-carrying events vs the same without `$user_id`) are measured alternately in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import live
from bench.baselines import (
    FILTERS,
    FULL,
    ChdbBaseline,
    DuckDBBaseline,
    Filter,
    duckdb_bulk_load,
    expected,
    isal_raw,
)
from bench.dataset import OUT, Dataset, IdentityDataset, build, build_identity
from rawevents.identity import BEFORE_IDENTITY
from rawevents.settings import SETTINGS_BY_NAME, redact_store


@dataclass
class Row:
    system: str
    seconds: float  # median
    jsonl_bytes: int
    rows: int
    out_bytes: int = 0
    note: str = ""

    @property
    def mb_s(self) -> float:
        return self.jsonl_bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    @property
    def events_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    ours: str = ""  # the system the ratios are computed for


@dataclass
class Report:
    sections: list[Section] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for text in Path("/proc/meminfo").read_text().splitlines():
            if text.startswith("MemTotal"):
                mem_kb = int(text.split()[1])
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
    }


def chdb_installed() -> bool:
    return importlib.util.find_spec("chdb") is not None


def median_of(reps: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(reps))


def _date(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date().isoformat()


def direct_export(
    ds: Dataset,
    reps: int,
    memory_limit: str | None = None,
    store_setting: str = "duckdb",
    project_id: int | None = None,
) -> tuple[float, float]:
    """(scan-only seconds, scan + ISA-L level 1 seconds) of the store's export_chunks in process."""
    from isal import isal_zlib

    from rawevents.settings import load_config
    from rawevents.storage import open_store
    from rawevents.storage.base import ExportPlan, TimeSegment

    default_limit = SETTINGS_BY_NAME["engine_memory_limit"].default
    config = load_config(
        {}, data_dir=str(ds.data_dir), store=store_setting, engine_memory_limit=memory_limit or default_limit
    )
    store = open_store(config)
    plan = ExportPlan(project_id or ds.project.project_id, [TimeSegment(ds.start_ms, ds.end_ms, 0)])
    try:

        def scan() -> float:
            started = time.perf_counter()
            for _ in store.export_chunks(plan):
                pass
            return time.perf_counter() - started

        def scan_gzip() -> float:
            started = time.perf_counter()
            compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
            for chunk in store.export_chunks(plan):
                compressor.compress(chunk)
            compressor.flush()
            return time.perf_counter() - started

        return median_of(reps, scan), median_of(reps, scan_gzip)
    finally:
        store.close()


def into_store(ds: Dataset, store_setting: str, log: Callable[[str], None]) -> None:
    """Copy the dataset (built as a DuckDB file) into another store once, with `rawevents migrate`'s
    code, so every store serves the very same rows (and identity rows)."""
    if store_setting == "duckdb":
        return
    from rawevents.settings import load_config
    from rawevents.storage import open_store
    from rawevents.storage.migrate import migrate_duckdb

    marker = ds.root / f"migrated-{_suffix(store_setting).lstrip('-')}"
    if store_setting == "chdb" and marker.exists():
        return
    log(f"copying the dataset into {redact_store(store_setting)}")
    store = open_store(load_config({}, data_dir=str(ds.data_dir), store=store_setting))
    try:
        migrate_duckdb(ds.data_dir, store)
    finally:
        store.close()
    marker.touch()


def _suffix(store_setting: str) -> str:
    return "" if store_setting == "duckdb" else "-" + store_setting.split("://")[0]


def raw_lines(ds: Dataset, limit_bytes: int = 1 << 30) -> list[bytes]:
    """The JSONL bytes of a full export (up to `limit_bytes`), for the ISA-L baseline."""
    import pyarrow.parquet as pq

    out: list[bytes] = []
    size = 0
    for batch in pq.ParquetFile(ds.parquet).iter_batches(batch_size=65536, columns=["line"]):
        data = "".join(batch.column(0).to_pylist()).encode()
        out.append(data)
        size += len(data)
        if size >= limit_bytes:
            break
    return out


def export_sections(
    ds: Dataset,
    reps: int,
    *,
    filters: tuple[Filter, ...] = FILTERS,
    duckdb_copy: bool = True,
    chdb_json: bool = True,
    baselines: bool = True,
    env: dict[str, str] | None = None,
    log: Callable[[str], None],
) -> tuple[list[Section], dict[str, str]]:
    facts: dict[str, str] = {}
    counts = {flt.name: expected(ds, flt) for flt in filters}
    sections = {flt.name: Section(f"export {flt.name}, gzip", ours="rawevents HTTP") for flt in filters}
    memory_limit = (env or {}).get("RAWEVENTS_ENGINE_MEMORY_LIMIT")
    store_setting = (env or {}).get("RAWEVENTS_STORE", "duckdb")

    log(f"in-process store export (no HTTP), store {store_setting}")
    rows, size = counts[FULL.name]
    scan_s, scan_gzip_s = direct_export(ds, reps, memory_limit, store_setting)
    full = sections[FULL.name]
    full.rows.append(Row("rawevents in-process, export_chunks + ISA-L L1, 1 thread", scan_gzip_s, size, rows))
    full.rows.append(Row("rawevents in-process, export_chunks only (no gzip)", scan_s, size, rows))

    log("ISA-L level 1, one core")
    data = raw_lines(ds)
    data_bytes = sum(len(d) for d in data)
    isal_s = median_of(reps, lambda: isal_raw(data))
    full.rows.append(
        Row("ISA-L level 1 gzip of the same bytes, 1 core", isal_s, data_bytes, rows * data_bytes // size)
    )

    work = ds.root / "tmp-out"
    work.mkdir(exist_ok=True)
    log("DuckDB COPY baseline")
    duck = DuckDBBaseline(ds) if duckdb_copy else None
    for flt in filters if duck is not None else ():
        rows, size = counts[flt.name]
        runs = [duck.export(flt, work / "duck.json.gz") for _ in range(reps)]
        sections[flt.name].rows.append(
            Row(
                "DuckDB COPY (FORMAT JSON, COMPRESSION gzip)",
                statistics.median(r.seconds for r in runs),
                size,
                rows,
                runs[0].out_bytes,
            )
        )
    if duck is not None:
        duck.close()

    log("chdb baselines (loading tables on first use)")
    if not chdb_installed():
        facts["chdb baselines"] = "skipped: chdb is not installed (pip install -e '.[bench]')"
    if not baselines:
        facts["chdb baselines"] = "skipped (--store other than duckdb: see the duckdb run)"
    chdb = ChdbBaseline(ds, json_table=chdb_json) if chdb_installed() and baselines else None
    for flt in filters if chdb is not None else ():
        rows, size = counts[flt.name]
        runs = [chdb.export_line(flt, work / "ch.gz") for _ in range(reps)]
        sections[flt.name].rows.append(
            Row(
                "chdb line String, RawBLOB, gzip L1",
                statistics.median(r.seconds for r in runs),
                size,
                rows,
                runs[0].out_bytes,
            )
        )
        if chdb_json:
            runs = [chdb.export_json(flt, work / "chj.gz") for _ in range(reps)]
            sections[flt.name].rows.append(
                Row(
                    "chdb JSON type, JSONEachRow, gzip L1",
                    statistics.median(r.seconds for r in runs),
                    size,
                    rows,
                    runs[0].out_bytes,
                )
            )
    if chdb is not None:
        chdb.close()

    log("HTTP server")
    server = live.Server(ds.data_dir, ds.root / "server.log", env)
    secret = ds.project.api_secret
    try:
        facts[f"server RSS before exports ({ds.n_events:,} rows)"] = f"{server.rss / 2**20:.0f} MiB"
        peak = 0
        for flt in filters:
            rows, size = counts[flt.name]
            path = live.export_query(flt, _date(ds.start_ms), _date(ds.end_ms - 1))
            status, got_rows, got_bytes = live.check_export(server, secret, path)
            note = ""
            if status != 200:
                note = f"HTTP {status}"
            elif (got_rows, got_bytes) != (rows, size):
                note = f"MISMATCH: got {got_rows} rows / {got_bytes} bytes"
            runs = []
            with live.PeakRss(server.process.pid) as sampler:
                for _ in range(reps):
                    runs.append(live.curl_export(server, secret, path))
            peak = max(peak, sampler.peak)
            ok = [r for r in runs if r.status == 200]
            if not ok:
                sections[flt.name].rows.insert(0, Row("rawevents HTTP", 0.0, size, rows, 0, note or "failed"))
                continue
            sections[flt.name].rows.insert(
                0,
                Row(
                    "rawevents HTTP (curl reads the gzip stream)",
                    statistics.median(r.seconds for r in ok),
                    size,
                    rows,
                    ok[0].out_bytes,
                    note,
                ),
            )
            if flt is FULL:
                facts[f"first byte, 30-day export, {ds.n_events:,} rows (median)"] = (
                    f"{1000 * statistics.median(r.first_byte for r in ok):.0f} ms"
                )
        facts[f"server peak RSS during exports ({ds.n_events:,} rows)"] = f"{peak / 2**20:.0f} MiB"
    finally:
        server.stop()
    shutil.rmtree(work, ignore_errors=True)
    for section in sections.values():
        section.ours = section.rows[0].system
    return list(sections.values()), facts


def layout_section(
    ordered: Dataset,
    shuffled: Dataset,
    reps: int,
    log: Callable[[str], None],
    env: dict[str, str] | None = None,
) -> tuple[Section, dict[str, str]]:
    """The same events arrived in order and shuffled, and a 1 % project beside the big one: full
    exports in process and over HTTP, in the same run."""
    assert shuffled.small is not None
    section = Section(f"export full range by arrival order and tenant size ({ordered.n_events:,} events)")
    facts: dict[str, str] = {}
    memory_limit = (env or {}).get("RAWEVENTS_ENGINE_MEMORY_LIMIT")
    store_setting = (env or {}).get("RAWEVENTS_STORE", "duckdb")
    rows, size = expected(ordered, FULL)
    small_rows, small_size = expected(shuffled, FULL, shuffled.small.project_id)
    http: dict[str, float] = {}
    targets = [
        ("arrived in order", ordered, ordered.project, rows, size),
        ("arrived shuffled", shuffled, shuffled.project, rows, size),
        ("the 1 % project beside it (shuffled store)", shuffled, shuffled.small, small_rows, small_size),
    ]
    for label, ds, project, n, nbytes in targets:
        log(f"layout: {label}")
        scan_s, _ = direct_export(ds, reps, memory_limit, store_setting, project.project_id)
        server = live.Server(ds.data_dir, ds.root / "server.log", env)
        try:
            path = live.export_query(FULL, _date(ds.start_ms), _date(ds.end_ms - 1))
            status, got_rows, got_bytes = live.check_export(server, project.api_secret, path)
            note = (
                "" if (status, got_rows, got_bytes) == (200, n, nbytes) else f"MISMATCH {status} {got_rows}"
            )
            runs = [live.curl_export(server, project.api_secret, path) for _ in range(reps)]
        finally:
            server.stop()
        http[label] = statistics.median(r.seconds for r in runs)
        first = statistics.median(r.first_byte for r in runs)
        section.rows.append(
            Row(f"rawevents HTTP gzip, {label}", http[label], nbytes, n, runs[0].out_bytes, note)
        )
        section.rows.append(
            Row(
                f"rawevents in-process export_chunks, {label}",
                scan_s,
                nbytes,
                n,
                0,
                f"first byte {1000 * first:.0f} ms",
            )
        )
    section.ours = section.rows[0].system
    order_ratio = http["arrived shuffled"] / http["arrived in order"]
    small_ratio = http["the 1 % project beside it (shuffled store)"] / http["arrived shuffled"]
    facts["full export time, shuffled ÷ in order (HTTP)"] = f"{order_ratio:.2f}×"
    facts["1 % project export time ÷ big project export time (HTTP)"] = f"{100 * small_ratio:.1f} %"
    return section, facts


def shuffled_jsonl(ds: Dataset, limit: int, seed: int) -> Path:
    """The first `limit` /import objects in a random order (a backfill of mixed history)."""
    import random

    path = ds.root / f"import-{limit}-shuffled.jsonl"
    if not path.exists():
        with open(ds.import_jsonl, "rb") as src:
            lines = [line for _, line in zip(range(limit), src, strict=False)]
        random.Random(seed).shuffle(lines)
        path.write_bytes(b"".join(lines))
    return path


def ingest_section(
    ds: Dataset,
    reps: int,
    clients: int,
    batch: int,
    limit: int,
    log: Callable[[str], None],
    env: dict[str, str] | None = None,
    shuffled: bool = True,
) -> Section:
    n = min(limit, ds.n_events)
    section = Section(f"ingest {n:,} events over HTTP: /import, {batch}/batch, gzip, {clients} clients")
    sources = [("in time order", ds.import_jsonl)]
    if shuffled:
        sources.append(("shuffled", shuffled_jsonl(ds, n, 7)))
    for label, jsonl in sources:
        _ingest_row(section, ds, reps, clients, batch, n, log, env, label, jsonl)
    section.ours = section.rows[0].system
    log("DuckDB bulk load baseline")
    jsonl = ds.import_jsonl
    if n < ds.n_events:
        jsonl = ds.root / f"import-{n}.jsonl"
        if not jsonl.exists():
            with open(ds.import_jsonl, "rb") as src, open(jsonl, "wb") as dst:
                for i, line in enumerate(src):
                    if i >= n:
                        break
                    dst.write(line)
    seconds = median_of(reps, lambda: duckdb_bulk_load(jsonl, ds.root / "bulk.duckdb"))
    section.rows.append(Row("DuckDB INSERT … FROM read_json(JSONL file)", seconds, 0, n))
    return section


def _ingest_row(
    section: Section,
    ds: Dataset,
    reps: int,
    clients: int,
    batch: int,
    n: int,
    log: Callable[[str], None],
    env: dict[str, str] | None,
    label: str,
    jsonl: Path,
) -> None:
    runs = []
    for rep in range(reps):
        log(f"ingest {label} run {rep + 1}/{reps}")
        runs.append(_ingest_once(ds.root, jsonl, n, clients, batch, env))
    run = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    cpu_per_event = 1e6 * run.server_cpu_s / max(1, run.events)
    note = f"p50 {run.p50_ms:.0f} ms, p99 {run.p99_ms:.0f} ms per request"
    note += f"; server CPU {cpu_per_event:.0f} µs/event"
    if run.failures:
        note += f", {run.failures} failed requests"
    section.rows.append(
        Row(f"rawevents HTTP /import (durable acks), {label}", run.seconds, 0, run.events, 0, note)
    )


def _ingest_once(
    root: Path, jsonl: Path, n: int, clients: int, batch: int, env: dict[str, str] | None
) -> live.IngestRun:
    """/import the first `n` events of `jsonl` into a new (Simplified ID Merge) project of a fresh
    store, through a server of its own."""
    from rawevents.storage.duckdb.registry import SqliteRegistry

    data_dir = root / "ingest-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    project = SqliteRegistry(data_dir).create_project("ingest", "UTC")
    server = live.Server(data_dir, root / "server.log", env)
    try:
        return live.http_ingest(server, project.api_secret, jsonl, clients=clients, batch=batch, limit=n)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _exported(store: Any, plan: Any) -> tuple[int, int, int]:
    """(rows, JSONL bytes, lines carrying `$distinct_id_before_identity`) of one export."""
    rows = size = resolved = 0
    marker = f'"{BEFORE_IDENTITY}":'.encode()
    for chunk in store.export_chunks(plan):
        data = bytes(chunk)
        rows += data.count(b"\n")
        size += len(data)
        resolved += data.count(marker)
    return rows, size, resolved


def identity_section(
    ids: IdentityDataset,
    reps: int,
    log: Callable[[str], None],
    env: dict[str, str] | None = None,
    *,
    ingest_events: int = 0,
    ingest_reps: int = 1,
    clients: int = 4,
    batch: int = 2000,
) -> tuple[list[Section], dict[str, str]]:
    """The identity case (module docstring): the linked and the unlinked project, each run of one
    right after the same run of the other. `ingest_events` 0: no /import runs."""
    from rawevents.settings import load_config
    from rawevents.storage import open_store
    from rawevents.storage.base import ExportPlan, TimeSegment

    n = ids.n_events
    share = ids.resolved / n
    facts = {
        "identity: dataset": f"{n:,} events in each project, {ids.links:,} devices linked; "
        f"{ids.resolved:,} events ({100 * share:.1f} %) are anonymous events of a device linked later",
    }
    store_setting = (env or {}).get("RAWEVENTS_STORE", "duckdb")
    memory_limit = (env or {}).get("RAWEVENTS_ENGINE_MEMORY_LIMIT")
    default_limit = SETTINGS_BY_NAME["engine_memory_limit"].default
    views = {"linked": ids.linked, "unlinked": ids.unlinked}
    labels = {"linked": "linked project (ids resolved)", "unlinked": "the same events without links"}
    section = Section(f"identity: full export, gzip ({n:,} events, {100 * share:.0f} % resolved to a user)")

    log("identity: in-process export")
    config = load_config(
        {}, data_dir=str(ids.data_dir), store=store_setting, engine_memory_limit=memory_limit or default_limit
    )
    store = open_store(config)
    counts: dict[str, tuple[int, int, int]] = {}
    scans: dict[str, list[float]] = {name: [] for name in views}
    try:
        plans = {
            name: ExportPlan(ds.project.project_id, [TimeSegment(ds.start_ms, ds.end_ms, 0)])
            for name, ds in views.items()
        }
        for name, plan in plans.items():
            counts[name] = _exported(store, plan)
        for _ in range(reps):
            for name in ("unlinked", "linked"):
                started = time.perf_counter()
                for _ in store.export_chunks(plans[name]):
                    pass
                scans[name].append(time.perf_counter() - started)
    finally:
        store.close()
    if counts["linked"][2] != ids.resolved:
        facts["identity: resolution"] = (
            f"MISMATCH: {counts['linked'][2]:,} exported lines resolved, {ids.resolved:,} expected"
        )

    log("identity: HTTP exports")
    path = live.export_query(FULL, _date(ids.linked.start_ms), _date(ids.linked.end_ms - 1))
    http: dict[str, list[live.ExportRun]] = {name: [] for name in views}
    notes: dict[str, str] = {}
    peak: dict[str, int] = {}  # the server's peak RSS in an export of the project, started afresh
    for name, ds in views.items():
        server = live.Server(ids.data_dir, ids.root / "server.log", env)
        try:
            with live.PeakRss(server.process.pid) as sampler:
                status, got_rows, got_bytes = live.check_export(server, ds.project.api_secret, path)
            peak[name] = sampler.peak
        finally:
            server.stop()
        rows, size, _ = counts[name]
        if (status, got_rows, got_bytes) != (200, rows, size):
            notes[name] = f"MISMATCH: HTTP {status}, {got_rows} rows / {got_bytes} bytes"
    server = live.Server(ids.data_dir, ids.root / "server.log", env)
    try:
        for _ in range(reps):
            for name in ("unlinked", "linked"):
                http[name].append(live.curl_export(server, views[name].project.api_secret, path))
    finally:
        server.stop()
    seconds = {name: statistics.median(r.seconds for r in runs) for name, runs in http.items()}
    first = {name: statistics.median(r.first_byte for r in runs) for name, runs in http.items()}
    for name in ("linked", "unlinked"):
        rows, size, _ = counts[name]
        note = f"first byte {1000 * first[name]:.0f} ms"
        note += f"; {notes[name]}" if name in notes else ""
        section.rows.append(
            Row(f"rawevents HTTP, {labels[name]}", seconds[name], size, rows, http[name][0].out_bytes, note)
        )
    for name in ("linked", "unlinked"):
        rows, size, _ = counts[name]
        section.rows.append(
            Row(
                f"rawevents in-process export_chunks (no gzip), {labels[name]}",
                statistics.median(scans[name]),
                size,
                rows,
            )
        )
    section.ours = section.rows[0].system
    in_process = statistics.median(scans["linked"]) / statistics.median(scans["unlinked"])
    facts["identity: full export with resolution ÷ without links, HTTP gzip (target ≤ 1.10×)"] = (
        f"{seconds['linked'] / seconds['unlinked']:.2f}×"
    )
    facts["identity: the same, in process (export_chunks, no gzip)"] = f"{in_process:.2f}×"
    facts["identity: first byte, full export (target < 200 ms)"] = (
        f"{1000 * first['linked']:.0f} ms with resolution, {1000 * first['unlinked']:.0f} ms without links"
    )
    facts["identity: server peak RSS in one export, fresh server (target < 400 MB)"] = (
        f"{peak['linked'] / 2**20:.0f} MiB with resolution, {peak['unlinked'] / 2**20:.0f} MiB without links"
    )
    sections = [section]

    if ingest_events:
        m = min(ingest_events, n)
        ingest = Section(
            f"identity: ingest {m:,} events over HTTP /import, {batch}/batch, gzip, {clients} clients"
        )
        runs: dict[str, list[live.IngestRun]] = {"linked": [], "unlinked": []}
        for rep in range(ingest_reps):
            for name in ("unlinked", "linked"):
                log(f"identity: ingest {name} run {rep + 1}/{ingest_reps}")
                runs[name].append(
                    _ingest_once(ids.root, ids.import_jsonl(name == "linked"), m, clients, batch, env)
                )
        cpu: dict[str, float] = {}
        for name, label in (
            ("linked", "link-carrying events"),
            ("unlinked", "the same events without links"),
        ):
            cpu[name] = statistics.median(1e6 * r.server_cpu_s / max(1, r.events) for r in runs[name])
            run = sorted(runs[name], key=lambda r: r.seconds)[len(runs[name]) // 2]
            note = f"server CPU {cpu[name]:.0f} µs/event (median)"
            note += f"; p50 {run.p50_ms:.0f} ms, p99 {run.p99_ms:.0f} ms per request"
            failures = sum(r.failures for r in runs[name])
            note += f", {failures} failed requests" if failures else ""
            ingest.rows.append(
                Row(f"rawevents HTTP /import (durable acks), {label}", run.seconds, 0, run.events, 0, note)
            )
        ingest.ours = ingest.rows[0].system
        facts["identity: /import server CPU per event, with links ÷ without (target ≤ 1.05×)"] = (
            f"{cpu['linked'] / cpu['unlinked']:.3f}× ({cpu['linked']:.0f} vs {cpu['unlinked']:.0f} µs/event)"
        )
        sections.append(ingest)
    return sections, facts


def render(report: Report) -> str:
    lines: list[str] = []
    for key, value in report.facts.items():
        lines.append(f"- {key}: {value}")
    for section in report.sections:
        lines.append("")
        lines.append(f"### {section.title}")
        lines.append("")
        ours = next((r for r in section.rows if r.system == section.ours), None)
        lines.append("| system | median s | MB/s JSONL | events/s | gzip MB | rawevents HTTP ÷ this | note |")
        lines.append("|---|---:|---:|---:|---:|---:|---|")
        for row in section.rows:
            ratio = ""
            if ours is not None and row is not ours and row.seconds > 0 and ours.seconds > 0:
                ratio = f"{ours.events_s / row.events_s:.2f}×"
            mb = f"{row.mb_s:.0f}" if row.jsonl_bytes else ""
            gz = f"{row.out_bytes / 1e6:.1f}" if row.out_bytes else ""
            cells = [row.system, f"{row.seconds:.3f}", mb, f"{row.events_s:,.0f}", gz, ratio, row.note]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _main_sections(
    args: argparse.Namespace, report: Report, env: dict[str, str], log: Callable[[str], None]
) -> None:
    """Every case but the identity one, into `report`."""
    log(f"dataset: {args.events:,} events")
    ds = build(args.events, args.seed, out=args.out)
    per_line = ds.line_bytes / ds.n_events
    report.facts["dataset"] = (
        f"{ds.n_events:,} events, {ds.line_bytes / 1e6:.1f} MB JSONL ({per_line:.0f} B/line)"
    )
    into_store(ds, args.store, log)
    sections, facts = export_sections(
        ds, args.reps, chdb_json=not args.no_chdb_json, baselines=args.store == "duckdb", env=env, log=log
    )
    report.sections += sections
    report.facts.update(facts)
    if not args.skip_layout:
        log("shuffled dataset with a 1 % project")
        mixed = build(args.events, args.seed, out=args.out, arrival="shuffled", small_share=0.01)
        into_store(mixed, args.store, log)
        layout, layout_facts = layout_section(ds, mixed, args.reps, log, env)
        report.sections.append(layout)
        report.facts.update(layout_facts)
    if args.big:
        log(f"big dataset: {args.big_events:,} events, arrived shuffled")
        big = build(args.big_events, args.seed, out=args.out, arrival="shuffled")
        into_store(big, args.store, log)
        big_sections, big_facts = export_sections(
            big,
            max(1, min(args.reps, 3)),
            filters=(FULL,),
            duckdb_copy=False,
            chdb_json=False,
            baselines=args.store == "duckdb",
            env=env,
            log=log,
        )
        for section in big_sections:
            section.title += f" ({args.big_events:,} rows)"
        report.sections += big_sections
        report.facts.update(big_facts)
    if not args.skip_ingest:
        report.sections.append(
            ingest_section(
                ds,
                args.ingest_reps,
                args.clients,
                args.batch,
                args.ingest_events,
                log,
                env,
                shuffled=not args.ingest_ordered_only,
            )
        )


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the dataset (default 1M)")
    parser.add_argument("--reps", type=int, default=5, help="runs per figure; the median is reported")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--big", action="store_true", help="also export a 10M-row store (RSS, first byte, MB/s)"
    )
    parser.add_argument("--big-events", type=int, default=10_000_000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent /import clients")
    parser.add_argument("--batch", type=int, default=2000, help="events per /import request")
    parser.add_argument("--ingest-events", type=int, default=1_000_000, help="events sent to /import per run")
    parser.add_argument("--ingest-reps", type=int, default=3)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument(
        "--skip-layout", action="store_true", help="skip the shuffled / 1 %% project scenarios"
    )
    parser.add_argument("--ingest-ordered-only", action="store_true", help="skip the shuffled ingest run")
    parser.add_argument("--no-chdb-json", action="store_true", help="skip the chdb JSON-type baseline")
    parser.add_argument(
        "--engine-memory-limit",
        help="run the servers with RAWEVENTS_ENGINE_MEMORY_LIMIT set to this (default: the server's default)",
    )
    parser.add_argument(
        "--identity-events", type=int, help="events in each project of the identity case (default: --events)"
    )
    parser.add_argument(
        "--identity-share",
        type=float,
        default=0.3,
        help="share of the identity case's events that are anonymous events of devices linked later",
    )
    parser.add_argument("--skip-identity", action="store_true", help="skip the identity case")
    parser.add_argument("--identity-only", action="store_true", help="run the identity case alone")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--store",
        default="duckdb",
        help="store the server and in-process figures use (duckdb, chdb, clickhouse://…)",
    )
    args = parser.parse_args(argv)
    env = {"RAWEVENTS_ENGINE_MEMORY_LIMIT": args.engine_memory_limit} if args.engine_memory_limit else {}
    env["RAWEVENTS_STORE"] = args.store

    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

    report = Report(facts={f"machine {k}": v for k, v in machine().items()})
    report.facts["load average before the run (1, 5, 15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report.facts["engine memory limit"] = args.engine_memory_limit or "server default"
    report.facts["store"] = redact_store(args.store)
    if not args.identity_only:
        _main_sections(args, report, env, log)
    if not args.skip_identity:
        identity_events = args.identity_events or args.events
        log(f"identity dataset: {identity_events:,} events per project")
        ids = build_identity(identity_events, args.seed, args.identity_share, out=args.out)
        try:
            into_store(ids.linked, args.store, log)
            sections, facts = identity_section(
                ids,
                args.reps,
                log,
                env,
                ingest_events=0 if args.skip_ingest else args.ingest_events,
                ingest_reps=args.ingest_reps,
                clients=args.clients,
                batch=args.batch,
            )
        except Exception as exc:  # a store without identity support yet: the rest still reports
            log(traceback.format_exc())
            report.facts["identity case"] = f"FAILED on {redact_store(args.store)}: {exc!r}"
        else:
            report.sections += sections
            report.facts.update(facts)
    text = render(report)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results-{args.events}{_suffix(args.store)}.md").write_text(text + "\n")
    payload: dict[str, Any] = {
        "facts": report.facts,
        "sections": [
            {
                "title": s.title,
                "rows": [{**asdict(r), "mb_s": r.mb_s, "events_s": r.events_s} for r in s.rows],
            }
            for s in report.sections
        ],
    }
    (args.out / f"results-{args.events}{_suffix(args.store)}.json").write_text(json.dumps(payload, indent=2))
    log("done")
    return report


if __name__ == "__main__":
    main()
