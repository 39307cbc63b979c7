"""The ClickHouse store, for chdb (in process) and a ClickHouse server (clickhouse://) alike.

store (ClickHouseStore), schema, ingest (the dedup insert), export, queries (the explorer's reads),
identity, registry (ClickHouseRegistry, on the server) and pipelines: the same names as
rawevents/storage/duckdb/. conn is ClickHouse's own (chdb's engine or HTTP, one interface). No
compaction: the MergeTree merges its parts itself, and an export's reads are ordered by the
table's key. No backup: a server is backed up with ClickHouse's own tools (docs/scale-out.md).
"""
