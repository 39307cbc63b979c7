"""The embedded store: one DuckDB file (events, profiles, identity links) beside a SQLite registry.

store (DuckDBStore: writer, readers, deletions), schema (tables and helpers), ingest (the dedup
insert), export (export planning and reading), queries (the explorer's reads), compaction (the
compactor that sorts the recent area into runs), identity (links and resolution), backup,
registry (SqliteRegistry: projects and credentials, the embedded stores' registry, chdb's too)
and pipelines (the registry's pipeline tables). The same names as rawevents/storage/clickhouse/.
"""
