"""What each task kind does to the store, given the registry row that asked for it.

Every kind is idempotent, so a task that a crashed server left STARTED simply runs again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from rawevents import timeutil
from rawevents.admin import backup
from rawevents.pipelines import deletions as pipeline_deletions
from rawevents.projects import FAILURE, SUCCESS, Project, ProjectRegistry, Task

if TYPE_CHECKING:  # the engine (pyarrow, duckdb) loads only when a store is opened
    from rawevents.storage.base import EventStore

log = logging.getLogger(__name__)

DELETION, RETRIEVAL, RETENTION, BACKUP, PURGE_PROJECT, SET_ID_MERGE = (
    "deletion",
    "retrieval",
    "retention",
    "backup",
    "purge_project",
    "set_id_merge",
)
RETRIEVALS_DIR = "retrievals"


@dataclass(frozen=True, slots=True)
class TaskContext:
    registry: ProjectRegistry
    store: EventStore
    data_dir: Path


Executor = Callable[[TaskContext, Task], str]


def _deletion(ctx: TaskContext, task: Task) -> str:
    assert task.project_id is not None
    ids, project_id = task.payload["distinct_ids"], task.project_id
    # What the project's pipelines must delete from their destinations, read before the store
    # forgets it (None, and nothing read, without pipelines): rawevents.pipelines.deletions.
    found = pipeline_deletions.users_to_delete(
        ctx.registry, project_id, ids, lambda: ctx.store.user_events(project_id, ids)
    )
    deleted = ctx.store.delete_users(task.project_id, ids)
    pipeline_deletions.note_gdpr_deletion(ctx.registry, task.project_id, task.task_id, ids, found)
    return json.dumps({"events": deleted.events, "profiles": deleted.profiles})


def retrieval_path(data_dir: Path, task_id: str) -> Path:
    return data_dir / RETRIEVALS_DIR / f"{task_id}.zip"


def _retrieval(ctx: TaskContext, task: Task) -> str:
    """A zip of `events.jsonl` (export lines) and `profiles.jsonl` (`$distinct_id`,
    `$properties`), streamed from the store into a private file, renamed when complete."""
    assert task.project_id is not None
    ids = task.payload["distinct_ids"]
    path = retrieval_path(ctx.data_dir, task.task_id)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("events.jsonl", "w", force_zip64=True) as out:
            for chunk in ctx.store.user_events(task.project_id, ids):
                out.write(chunk)
        with archive.open("profiles.jsonl", "w", force_zip64=True) as out:
            for distinct_id, properties in ctx.store.user_profiles(task.project_id, ids):
                out.write(orjson.dumps({"$distinct_id": distinct_id, "$properties": properties}) + b"\n")
    partial.replace(path)
    return path.name


def expire_retrievals(data_dir: Path, expiry_s: float, now_s: float) -> int:
    """Delete retrieval zips (and partial ones a crash left) written over `expiry_s` seconds ago;
    how many. `expiry_s` 0 keeps them (until their project is deleted)."""
    folder = data_dir / RETRIEVALS_DIR
    if expiry_s <= 0 or not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        try:
            if path.suffix in (".zip", ".tmp") and path.stat().st_mtime <= now_s - expiry_s:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    if removed:
        log.info("deleted %d expired GDPR retrieval file(s)", removed)
    return removed


def retention_cutoff_ms(project: Project, now_ms: int) -> int:
    """Start of the oldest kept day: events of the project's last `retention_days` calendar days
    before today, and today's, are kept; whole earlier days are dropped."""
    zone = project.zone
    oldest_kept = timeutil.today(zone, now_ms) - dt.timedelta(days=project.retention_days)
    return timeutil.day_start_ms(zone, oldest_kept)


def apply_retention(ctx: TaskContext, now_ms: int, project_id: int | None = None) -> dict[str, int]:
    """Drop expired events of every project with a retention (or of one); returns counts."""
    dropped: dict[str, int] = {}
    for project in ctx.registry.list_projects():
        if project.retention_days <= 0 or project_id not in (None, project.project_id):
            continue
        cutoff_ms = retention_cutoff_ms(project, now_ms)
        count = ctx.store.drop_events_before(project.project_id, cutoff_ms)
        dropped[str(project.project_id)] = count
        if count:
            pipeline_deletions.note_retention(ctx.registry, project, cutoff_ms)
            log.info("retention dropped %d events of project %d", count, project.project_id)
    return dropped


def _retention(ctx: TaskContext, task: Task) -> str:
    now_ms = int(task.payload.get("now_ms") or dt.datetime.now(dt.UTC).timestamp() * 1000)
    return json.dumps(apply_retention(ctx, now_ms, task.project_id))


def _backup(ctx: TaskContext, task: Task) -> str:
    manifest = backup.write_backup(ctx.registry, ctx.store, Path(task.payload["out"]))
    return json.dumps(manifest)


def _purge_project(ctx: TaskContext, task: Task) -> str:
    assert task.project_id is not None
    deleted = ctx.store.delete_project(task.project_id)
    pipeline_deletions.note_project_deletion(ctx.registry, task.project_id, task.task_id)
    for old in ctx.registry.forget_project_tasks(task.project_id, keep=task.task_id):
        retrieval_path(ctx.data_dir, old.task_id).unlink(missing_ok=True)
        retrieval_path(ctx.data_dir, old.task_id).with_suffix(".tmp").unlink(missing_ok=True)
    return json.dumps({"events": deleted.events, "profiles": deleted.profiles})


def _set_id_merge(ctx: TaskContext, task: Task) -> str:
    """Change a project's identity mode, only while it has no events: links made under one
    mode's rules would read wrong under the other's (Mixpanel does not switch a project with data
    either). Ingestion between this check and the change is not held off."""
    assert task.project_id is not None
    from rawevents.storage.base import EventSelection, EventsPageQuery

    everything = [timeutil.TimeSegment(0, 2**62, 0)]
    if ctx.store.events_page(EventsPageQuery(EventSelection(task.project_id, everything), limit=1)):
        raise ValueError(
            f"project {task.project_id} has events: its identity mode can no longer change"
            " (create a new project with --id-merge, and import its events there)"
        )
    project = ctx.registry.set_id_merge(task.project_id, task.payload["mode"])
    return json.dumps(project.listing_dict(show_secrets=False))


EXECUTORS: dict[str, Executor] = {
    DELETION: _deletion,
    RETRIEVAL: _retrieval,
    RETENTION: _retention,
    BACKUP: _backup,
    PURGE_PROJECT: _purge_project,
    SET_ID_MERGE: _set_id_merge,
}


def execute(ctx: TaskContext, task: Task) -> None:
    """Run a claimed (STARTED) task and record SUCCESS or FAILURE with its result."""
    try:
        result = EXECUTORS[task.kind](ctx, task)
    except Exception as exc:
        log.exception("task %s (%s) failed", task.task_id, task.kind)
        ctx.registry.finish_task(task.task_id, FAILURE, str(getattr(exc, "message", None) or exc))
        return
    ctx.registry.finish_task(task.task_id, SUCCESS, result)
