"""What `rawevents pipeline …` and `/api/rawevents/pipelines` do, on a registry: each returns the
JSON-able answer the caller prints or sends. The server's runner picks changes up at its next
poll (about a second), so these work while the server runs, on any host of a shared registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rawevents.errors import BadRequest, NotFound
from rawevents.pipelines import model
from rawevents.pipelines.model import ACTIVE, ENDED, PAUSED, Pipeline, PipelineSpec
from rawevents.projects import ProjectRegistry, now_ms

RUNS_SHOWN = 20


def create(
    registry: ProjectRegistry,
    project_id: int,
    to: str,
    *,
    fmt: str = "jsonl.gz",
    every: str | int = model.DEFAULT_EVERY_S,
    from_day: str | None = None,
    events: Sequence[str] = (),
    where: str | None = None,
    name: str | None = None,
    remote: bool = False,
) -> dict[str, Any]:
    """A new pipeline. `remote` (HTTP): the destination must be an object store named without
    endpoint overrides (a file:// path or another endpoint is the server operator's to choose)."""
    registry.require_project(project_id)
    destination = model.check_destination(to.strip())
    if remote and (destination.startswith("file:") or "endpoint_override" in destination):
        raise BadRequest(
            "over HTTP a pipeline writes to s3://, gs:// or az:// only (file:// destinations and"
            " endpoint overrides are set up with the rawevents pipeline CLI on the server)"
        )
    where_text = (where or "").strip() or None
    if where_text is not None:
        from rawevents.where import parse

        parse(where_text)  # a syntax error is a 400 now, not a failing run later
    from rawevents.pipelines.destination import open_filesystem

    open_filesystem(destination)  # a malformed URL fails here
    spec = PipelineSpec(
        name=model.check_name(name or model.default_name(project_id, destination)),
        project_id=project_id,
        destination=destination,
        format=model.check_format(fmt),
        every_s=model.parse_every(every),
        from_day=model.parse_day(from_day).isoformat(),
        events=tuple(dict.fromkeys(e for e in events if e)),
        where=where_text,
        created_at_ms=now_ms(),
    )
    return registry.create_pipeline(spec).public_dict()


def listing(registry: ProjectRegistry, project_id: int | None = None) -> list[dict[str, Any]]:
    return [p.public_dict() for p in registry.pipelines(project_id)]


def _owned(registry: ProjectRegistry, name: str, project_id: int | None) -> Pipeline:
    found = registry.pipeline(name)
    if found is None or (project_id is not None and found.spec.project_id != project_id):
        raise NotFound(f"no pipeline named {name!r}" + ("" if project_id is None else " in this project"))
    return found


def status(
    registry: ProjectRegistry, name: str, project_id: int | None = None, runs: int = RUNS_SHOWN
) -> Any:
    """The pipeline, its run in progress, its latest runs (newest first) and pending deletions."""
    pipeline = _owned(registry, name, project_id)
    shown = pipeline.public_dict()
    pending = pipeline.state.pending
    shown["pending_run"] = (
        None
        if pending is None
        else {
            "run": pending["run"],
            "after": pending["after"],
            "upto": pending["upto"],
            "started": model.run_public({"started_ms": pending["started_ms"]})["started"],
            "attempt": pipeline.state.attempt,
            "objects_named": len(pending.get("objects", [])),
        }
    )
    shown["runs"] = [model.run_public(r) for r in registry.pipeline_runs(name, runs)]
    shown["pending_deletions"] = [
        {k: v for k, v in d.items() if k != "match_ids"} for d in registry.pipeline_deletions(name)
    ]
    return shown


def pause(registry: ProjectRegistry, name: str, project_id: int | None = None) -> dict[str, Any]:
    pipeline = _owned(registry, name, project_id)
    if pipeline.status == ENDED:
        raise BadRequest(f"pipeline {name!r} has ended (its project was deleted)")
    return registry.set_pipeline_status(name, PAUSED).public_dict()


def resume(registry: ProjectRegistry, name: str, project_id: int | None = None) -> dict[str, Any]:
    pipeline = _owned(registry, name, project_id)
    if pipeline.status == ENDED:
        raise BadRequest(f"pipeline {name!r} has ended (its project was deleted)")
    return registry.set_pipeline_status(name, ACTIVE).public_dict()


def delete(registry: ProjectRegistry, name: str, project_id: int | None = None) -> dict[str, Any]:
    """Forget the pipeline (what it wrote stays in the destination)."""
    _owned(registry, name, project_id)
    return {**registry.delete_pipeline(name).public_dict(), "deleted": True}
