"""Deletions carried to pipeline destinations: GDPR deletions, retention, project deletion.

The task that deletes events from the store (rawevents.admin.tasks) first notes, for each
pipeline of the project, what the destination must lose (`note_*` below, stored in the registry
as a pending deletion of that pipeline); the pipeline's runner then carries it out between runs:

- GDPR deletion: a record `deletions/<when>-<task id>.json` (task id, distinct ids, when, days
  affected), then every object of the affected days is rewritten without the users' events, one
  object at a time, each replaced whole under its own name (an object is never missing, and no
  event ever appears in two objects). Identity-mapping objects lose the users' rows the same way.
  The events to drop are matched by the id they were stored under (`$distinct_id_before_identity`
  when the line has it, else `distinct_id`), against every id of the users' clusters collected
  from the store before it deleted them.
- Retention: a record, then the partitions of the days the store dropped (before the oldest
  kept day) are deleted whole.
- Project deletion: a record, then every event and identity-mapping object is deleted and the
  pipeline ends (status `ended`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from rawevents.pipelines.model import ENDED
from rawevents.projects import Project, ProjectRegistry, iso_time, now_ms

if TYPE_CHECKING:  # pyarrow loads with the pipeline runner, not with every task
    from rawevents.pipelines.destination import Destination

log = logging.getLogger(__name__)

GDPR, RETENTION, PROJECT = "gdpr_deletion", "retention", "project_deletion"
BEFORE_ID = "$distinct_id_before_identity"


def _pipelines_of(registry: ProjectRegistry, project_id: int) -> list[str]:
    return [p.name for p in registry.pipelines(project_id) if p.status != ENDED]


def users_to_delete(
    registry: ProjectRegistry,
    project_id: int,
    distinct_ids: list[str],
    lines: Callable[[], Iterable[bytes | memoryview]],
) -> dict[str, Any] | None:
    """Before a GDPR deletion: the stored ids and days of the users' events (read from `lines()`,
    the store's `user_events`), or None when the project has no pipeline (nothing is read)."""
    if not _pipelines_of(registry, project_id):
        return None
    from rawevents.pipelines.objects import DAY_S, day_text, line_time

    ids = set(distinct_ids)
    days: set[int] = set()
    carry = b""
    for chunk in lines():
        data = carry + bytes(chunk)
        *whole, carry = data.split(b"\n")
        for line in whole:
            if not line.strip():
                continue
            days.add(line_time(line, 0) // DAY_S)
            props = orjson.loads(line).get("properties") or {}
            for key in ("distinct_id", BEFORE_ID):
                if isinstance(props.get(key), str):
                    ids.add(props[key])
    return {"match_ids": sorted(ids), "days": [day_text(d) for d in sorted(days)]}


def note_gdpr_deletion(
    registry: ProjectRegistry,
    project_id: int,
    task_id: str,
    distinct_ids: list[str],
    found: dict[str, Any] | None,
) -> None:
    if found is None:
        return
    record = {
        "kind": GDPR,
        "task_id": task_id,
        "project_id": project_id,
        "distinct_ids": distinct_ids,
        "days": found["days"],
        "when": iso_time(now_ms()),
        "match_ids": found["match_ids"],
    }
    for name in _pipelines_of(registry, project_id):
        registry.add_pipeline_deletion(name, task_id, record)


def note_retention(registry: ProjectRegistry, project: Project, cutoff_ms: int) -> None:
    """After retention dropped events before `cutoff_ms` (the start of the oldest kept day)."""
    oldest_kept = dt.datetime.fromtimestamp(cutoff_ms / 1000, dt.UTC).astimezone(project.zone).date()
    record = {
        "kind": RETENTION,
        "task_id": f"retention-{oldest_kept.isoformat()}",
        "project_id": project.project_id,
        "before": oldest_kept.isoformat(),
        "when": iso_time(now_ms()),
    }
    for name in _pipelines_of(registry, project.project_id):
        registry.add_pipeline_deletion(name, str(record["task_id"]), record)


def note_project_deletion(registry: ProjectRegistry, project_id: int, task_id: str) -> None:
    record = {"kind": PROJECT, "task_id": task_id, "project_id": project_id, "when": iso_time(now_ms())}
    for name in _pipelines_of(registry, project_id):
        registry.add_pipeline_deletion(name, task_id, record)


def record_key(record: dict[str, Any]) -> str:
    stamp = str(record["when"]).replace(":", "").replace("-", "")
    return f"deletions/{stamp}-{record['task_id']}.json"


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    """What the destination's deletion record says (the ids matched stay in the registry)."""
    return {k: v for k, v in record.items() if k != "match_ids"}


def carry_out(dest: Destination, record: dict[str, Any], spool: Path) -> dict[str, int]:
    """Apply one deletion to the destination; idempotent (a crash midway is redone whole)."""
    dest.put_bytes(record_key(record), orjson.dumps(public_record(record)) + b"\n", spool)
    kind = record["kind"]
    counts = {"objects_rewritten": 0, "objects_deleted": 0, "events_removed": 0}
    if kind == GDPR:
        match = set(record["match_ids"])
        keys = [k for day in record["days"] for k in dest.list(f"events/date={day}")]
        keys += dest.list("identity_mappings")
        for key in keys:
            removed, left = _rewrite_without(dest, key, match, spool)
            if removed:
                field = "events_removed" if key.startswith("events/") else "mappings_removed"
                counts[field] = counts.get(field, 0) + removed
                counts["objects_rewritten" if left else "objects_deleted"] += 1
    elif kind == RETENTION:
        before = f"events/date={record['before']}"
        for key in dest.list("events"):
            if key.split("/", 2)[1] < before.split("/", 1)[1]:
                dest.delete(key)
                counts["objects_deleted"] += 1
    elif kind == PROJECT:
        for key in [*dest.list("events"), *dest.list("identity_mappings")]:
            dest.delete(key)
            counts["objects_deleted"] += 1
    return counts


def _rewrite_without(dest: Destination, key: str, match: set[str], spool: Path) -> tuple[int, int]:
    """Rewrite one object without the rows of the matched ids: (rows removed, rows left)."""
    spool.mkdir(parents=True, exist_ok=True)
    source, target = spool / "deletion-in", spool / "deletion-out"
    dest.get_file(key, source)
    try:
        if key.endswith(".parquet"):
            removed, left = _filter_parquet(source, target, match)
        else:
            removed, left = _filter_jsonl_gz(source, target, match)
        if removed and left:
            dest.put_file(key, target)
        elif removed:
            dest.delete(key)
        return removed, left
    finally:
        source.unlink(missing_ok=True)
        target.unlink(missing_ok=True)


def _stored_id(row: dict[str, Any]) -> object:
    props = row.get("properties")
    if isinstance(props, dict):  # an event line
        return props.get(BEFORE_ID, props.get("distinct_id"))
    return None


def _filter_jsonl_gz(source: Path, target: Path, match: set[str]) -> tuple[int, int]:
    removed = left = 0
    with gzip.open(source, "rb") as lines, gzip.open(target, "wb", compresslevel=1) as out:
        for line in lines:
            row = orjson.loads(line)
            if (
                _stored_id(row) in match
                or row.get("distinct_id") in match
                or (row.get("resolved_distinct_id") in match)
            ):
                removed += 1
                continue
            out.write(line)
            left += 1
    return removed, left


def _filter_parquet(source: Path, target: Path, match: set[str]) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    ids = pa.array(sorted(match), pa.string())
    if BEFORE_ID in table.column_names:
        stored = pc.coalesce(table[BEFORE_ID], table["distinct_id"])
    elif "distinct_id" in table.column_names:
        stored = table["distinct_id"]
    else:
        return 0, table.num_rows
    drop = pc.fill_null(pc.is_in(stored, value_set=ids), False)
    if "resolved_distinct_id" in table.column_names:  # an identity-mappings object
        drop = pc.or_(drop, pc.fill_null(pc.is_in(table["resolved_distinct_id"], value_set=ids), False))
    removed = pc.sum(drop).as_py() or 0
    if removed:
        kept = table.filter(pc.invert(drop))
        pq.write_table(kept, target, compression="zstd")
        return int(removed), kept.num_rows
    return 0, table.num_rows
