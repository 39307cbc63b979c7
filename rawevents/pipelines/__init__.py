"""Data pipelines: a project's events delivered continuously to object storage, exactly once,
late events and deletions included (docs/pipelines.md).

- `model`: definitions and run state, as the registry keeps them;
- `destination`: object stores through pyarrow.fs (file://, s3://, gs://, az://);
- `objects`: export lines split by project-local day into JSONL.gz or Parquet objects;
- `runner`: the server's pipeline thread (runs, commits, retries, deletions);
- `commands`: what the CLI and HTTP API do.
"""
