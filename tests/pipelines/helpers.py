"""Shared helpers of the pipeline tests: events in, objects out, and the multiset comparison
every test ends with (the lines in the destination equal the project's export, no more, no less)."""

from __future__ import annotations

import datetime as dt
import gzip
from collections import Counter
from typing import Any

import orjson
import pyarrow.parquet as pq

from rawevents import timeutil
from rawevents.export.params import build_plan, parse_export_params
from rawevents.pipelines.destination import Destination
from rawevents.projects import Project
from rawevents.storage.base import EventStore, StoredEvent
from tests.export.helpers import stored_event

DAY_MS = 86_400_000


def utc_ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=dt.UTC).timestamp() * 1000)


def events(
    project: Project, count: int, start_ms: int, step_ms: int, prefix: str = "e", **props: Any
) -> list[StoredEvent]:
    return [
        stored_event(
            project,
            "view" if i % 3 else "buy",
            start_ms + i * step_ms,
            distinct_id=props.get("distinct_id", f"u{i % 7}"),
            **{"$insert_id": f"{prefix}{i}", "n": i, "price": i * 1.5, "tags": ["a", i]},
        )
        for i in range(count)
    ]


def ingest(store: EventStore, rows: list[StoredEvent]) -> None:
    store.submit_events(rows).result(60)


def export_lines(
    store: EventStore, project: Project, first: str = "1970-01-01", **params: str
) -> Counter[bytes]:
    """The project's export (every day from `first` to today) as a multiset of lines."""
    today = timeutil.today(project.zone).isoformat()
    plan = build_plan(parse_export_params({"from_date": first, "to_date": today, **params}, project), project)
    body = b"".join(bytes(chunk) for chunk in store.export_chunks(plan))
    return Counter(line + b"\n" for line in body.split(b"\n") if line)


def object_lines(dest: Destination, key: str) -> list[bytes]:
    data = gzip.decompress(dest.get_bytes(key))
    return [line + b"\n" for line in data.split(b"\n") if line]


def bucket_lines(dest: Destination) -> Counter[bytes]:
    """Every line of every events object (jsonl.gz), as a multiset."""
    found: Counter[bytes] = Counter()
    for key in dest.list("events"):
        assert key.endswith(".jsonl.gz"), key
        found.update(object_lines(dest, key))
    return found


def parquet_rows(dest: Destination) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key in dest.list("events"):
        with dest.fs.open_input_file(dest.path(key)) as handle:
            rows += pq.read_table(handle).to_pylist()
    return rows


def insert_ids(lines: Counter[bytes]) -> Counter[str]:
    return Counter({orjson.loads(line)["properties"]["$insert_id"]: n for line, n in lines.items()})


def days_of(dest: Destination) -> dict[str, int]:
    """Objects per partition day."""
    days: Counter[str] = Counter()
    for key in dest.list("events"):
        days[key.split("/")[1].removeprefix("date=")] += 1
    return dict(days)
