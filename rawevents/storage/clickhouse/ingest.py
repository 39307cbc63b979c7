"""The ClickHouse store's dedup insert: a group commit lands in the writer's staging table, then one
INSERT … SELECT keeps the rows whose dedup key (project, time, hash of event, distinct_id and
$insert_id) is neither earlier in the batch nor already stored in the batch's time span."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from rawevents.storage.clickhouse.conn import Connection

# Per-writer staging table: the group commit lands here, then one INSERT … SELECT dedups it in.
STAGING = """
CREATE TABLE IF NOT EXISTS {staging} (
    project_id Int32, time_ms Int64, event String, distinct_id Nullable(String), insert_id String,
    time_pos Int32, line String, seq UInt64
) ENGINE = Memory
"""

INSERT_DEDUPED = """
INSERT INTO events (project_id, time_ms, seq, node, event, distinct_id, insert_id, time_pos, line)
SELECT project_id, time_ms, seq, {{node:UInt32}}, event, distinct_id, insert_id, time_pos, line
FROM {staging}
WHERE (project_id, time_ms, cityHash64(event, ifNull(distinct_id, ''), isNull(distinct_id), insert_id))
    NOT IN (
        SELECT project_id, time_ms, dedup FROM events
        WHERE project_id IN (SELECT project_id FROM {staging})
          AND time_ms BETWEEN {{low:Int64}} AND {{high:Int64}}
    )
ORDER BY seq
LIMIT 1 BY project_id, time_ms, event, distinct_id, insert_id
"""


def insert_deduped(con: Connection, staging: str, rows: pa.Table, node: int) -> None:
    """Insert `rows` (with `seq`) into `events` minus duplicates, through the writer's `staging`."""
    time_ms = rows.column("time_ms")
    params = {"node": node, "low": pc.min(time_ms).as_py(), "high": pc.max(time_ms).as_py()}
    con.command(f"TRUNCATE TABLE {staging}")
    con.insert(staging, rows)
    con.command(INSERT_DEDUPED.format(staging=staging), params)
