"""The identity mappings table, fetched and written like the client's other outputs.

`rawevents export --identity-mappings` writes every (distinct_id → resolved_distinct_id) row of a
project, the table Mixpanel's pipelines ship beside events exported as ingested. An incremental
export (`--incremental`) also writes, after each run, the rows whose resolution changed within
that run's cursor slice (`identity_mappings.runNNNN.<format>`), so a downstream copy can
re-resolve the events it already holds (docs/identity.md).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from rawevents.client.formats import Format
from rawevents.client.transport import Connection

MAPPINGS_PATH = "/api/rawevents/identity/mappings"
COLUMNS = ("distinct_id", "resolved_distinct_id")
Mapping = dict[str, str]


def fetch_mappings(
    connection: Connection, after: str | None = None, upto: str | None = None
) -> tuple[list[Mapping], str]:
    """The rows (all, or those changed within the cursor slice) and the slice's upper cursor."""
    params = {name: value for name, value in (("after_cursor", after), ("upto_cursor", upto)) if value}
    answer: dict[str, Any] = connection.get_json(MAPPINGS_PATH, params=params)
    return list(answer["results"]), str(answer["cursor"])


def write_mappings(rows: list[Mapping], out: Path, fmt: Format) -> None:
    """Write the rows to `out` in the format, atomically (a file that exists is complete)."""
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "parquet":
        table = pa.table({name: pa.array([row[name] for row in rows], pa.string()) for name in COLUMNS})
        pq.write_table(table, tmp)
    else:
        data = _csv(rows) if fmt == "csv" else b"".join(orjson.dumps(row) + b"\n" for row in rows)
        tmp.write_bytes(gzip.compress(data) if fmt == "jsonl.gz" else data)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, out)


def _csv(rows: list[Mapping]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([row[name] for name in COLUMNS] for row in rows)
    return text.getvalue().encode()
