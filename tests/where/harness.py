"""Runs `where` expressions both ways: the reference evaluator and the compiled SQL over a real
store (DuckDB, or ClickHouse through chdb or a server), with events stored exactly as ingest
stores them (assemble_line)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rawevents.eventline import assemble_line
from rawevents.settings import load_config
from rawevents.storage import open_store
from rawevents.storage.base import ExportPlan, StoredEvent
from rawevents.storage.clickhouse import export as clickhouse_export
from rawevents.storage.duckdb import export as duckdb_export
from rawevents.timeutil import TimeSegment, local_seconds, zone
from rawevents.where import evaluate, parse
from rawevents.where.printer import Printer, Sql, compile_predicate
from rawevents.where.printer.clickhouse import ClickHousePrinter
from rawevents.where.printer.duckdb import DuckDBPrinter
from tests.stores import store_setting

MIN_MS = -62_135_596_800_000
MAX_MS = 253_402_300_799_999


@dataclass(frozen=True)
class Ev:
    properties: Mapping[str, Any]
    time_ms: int = 1_706_184_000_000
    event: str = "e"


# Per store: its printer, and its one-window export query (the exact SQL an export runs).
PRINTERS: dict[str, type[Printer]] = {
    "duckdb": DuckDBPrinter,
    "chdb": ClickHousePrinter,
    "clickhouse": ClickHousePrinter,
}
EXPORT_QUERIES: dict[str, Any] = {
    "duckdb": lambda plan, predicate, start, end, offset, limit: duckdb_export.export_query(
        plan, predicate, (start, end, offset), None, None, limit
    ),
    "chdb": clickhouse_export.export_query,
    "clickhouse": clickhouse_export.export_query,
}


class Harness:
    def __init__(self, data_dir: Path, kind: str = "duckdb") -> None:
        self.kind = kind
        config = load_config({}, data_dir=str(data_dir), store=store_setting(kind), commit_interval_ms=0)
        self.store: Any = open_store(config)
        self._projects = itertools.count(1)

    def close(self) -> None:
        self.store.close()

    def load(self, events: Sequence[Ev], timezone: str) -> tuple[int, list[dict[str, Any]]]:
        """Store events under a fresh project; returns it and the decoded events (by index)."""
        project_id = next(self._projects)
        tz = zone(timezone)
        stored: list[StoredEvent] = []
        decoded: list[dict[str, Any]] = []
        for i, ev in enumerate(events):
            props = {**ev.properties, "$insert_id": f"i{i}"}
            props.pop("time", None)
            local = local_seconds(tz, ev.time_ms)
            time_pos, line = assemble_line(ev.event, props, local)
            distinct = props.get("distinct_id")
            stored.append(
                StoredEvent(
                    project_id,
                    ev.time_ms,
                    ev.event,
                    distinct if isinstance(distinct, str) else None,
                    f"i{i}",
                    time_pos,
                    line,
                )
            )
            decoded.append(
                {"event": ev.event, "properties": props, "time_ms": ev.time_ms, "local_time": local}
            )
        self.store.submit_events(stored).result()
        return project_id, decoded

    def sql_selected(self, project_id: int, where: str, timezone: str) -> list[int]:
        """Indexes of the events the export query with this `where` returns, in export order."""
        plan = ExportPlan(project_id, [TimeSegment(MIN_MS, MAX_MS, 0)], where=parse(where), timezone=timezone)
        predicate = compile_predicate(PRINTERS[self.kind](timezone), parse(where))
        sql, params = EXPORT_QUERIES[self.kind](plan, predicate, MIN_MS, MAX_MS, 0, None)
        rows = self.store.query(sql, params)
        return [int(orjson.loads(line)["properties"]["$insert_id"][1:]) for (line, *_) in rows]

    def export_selected(self, project_id: int, where: str, timezone: str, start: int, end: int) -> list[int]:
        """The same through export_chunks (the store's real export path)."""
        plan = ExportPlan(project_id, [TimeSegment(start, end, 0)], where=parse(where), timezone=timezone)
        body = b"".join(bytes(chunk) for chunk in self.store.export_chunks(plan))
        return [int(orjson.loads(line)["properties"]["$insert_id"][1:]) for line in body.splitlines()]


def duckdb_where(text: str, *, timezone: str) -> Sql:
    """The DuckDB store's predicate for a `where` text."""
    return compile_predicate(DuckDBPrinter(timezone), parse(text))


def reference_selected(decoded: Sequence[Mapping[str, Any]], where: str, timezone: str) -> list[int]:
    selected = [i for i, event in enumerate(decoded) if evaluate(where, event, timezone)]
    return sorted(selected, key=lambda i: (decoded[i]["time_ms"], i))
