"""The ClickHouse store's tables (events, profiles); the identity table is in identity.py, the
registry's in registry.py and pipelines.py. The layout and why: store.py."""

from __future__ import annotations

# {cluster} is "" or " ON CLUSTER name"; docs/scale-out.md gives the replicated variant.
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS events{cluster} (
    project_id Int32,
    time_ms Int64,
    seq UInt64,
    node UInt32,
    event String,
    distinct_id Nullable(String),
    insert_id String,
    time_pos Int32,
    line String CODEC(ZSTD(1)),
    dedup UInt64 MATERIALIZED cityHash64(event, ifNull(distinct_id, ''), isNull(distinct_id), insert_id)
) ENGINE = MergeTree
PARTITION BY toYYYYMM(fromUnixTimestamp64Milli(time_ms, 'UTC'))
ORDER BY (project_id, time_ms, seq, node)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1
""",
    """
CREATE TABLE IF NOT EXISTS profiles{cluster} (
    project_id Int32,
    kind String,
    group_key String,
    profile_id String,
    properties String,
    updated_ms Int64,
    version UInt64,
    deleted UInt8
) ENGINE = ReplacingMergeTree(version, deleted)
ORDER BY (project_id, kind, group_key, profile_id)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1
""",
)
