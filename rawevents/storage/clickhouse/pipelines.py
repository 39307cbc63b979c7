"""Data pipelines in the ClickHouse registry (rawevents.pipelines), shared by every host.

A mixin of `ClickHouseRegistry`, with its conventions: ReplacingMergeTree tables read with FINAL,
every change a new version. The definition, the status and the run state are three tables, so
a `pause` from one host and a run's commit on another never overwrite each other.

Hosts take turns through a lease per pipeline: a host claims it in a claim round (the registry's
`registry_claims`, as tasks are claimed: the earliest claim of a generation wins), then renews
it while it works. Another host may take it over only once the lease has expired, so each run
is pinned, written and committed by one host at a time; a host that lost its lease mid-run
(stalled longer than the lease) is the documented exception, and even then its objects carry
the same names and content as the new holder's redo of that run.
"""

from __future__ import annotations

import json
from typing import Any

from rawevents.errors import BadRequest, NotFound
from rawevents.pipelines.model import ACTIVE, Pipeline, PipelineSpec, RunState
from rawevents.projects import now_ms
from rawevents.storage.clickhouse.conn import Params

PIPELINE_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS registry_pipelines{cluster} (
    name String, project_id Int32, spec String, deleted UInt8, version UInt64
) ENGINE = {engine} ORDER BY name
""",
    """
CREATE TABLE IF NOT EXISTS registry_pipeline_status{cluster} (
    name String, status String, version UInt64
) ENGINE = {engine} ORDER BY name
""",
    """
CREATE TABLE IF NOT EXISTS registry_pipeline_state{cluster} (
    name String, state String, version UInt64
) ENGINE = {engine} ORDER BY name
""",
    """
CREATE TABLE IF NOT EXISTS registry_pipeline_runs{cluster} (
    name String, run UInt64, attempt UInt32, record String, version UInt64
) ENGINE = {engine} ORDER BY (name, run, attempt)
""",
    """
CREATE TABLE IF NOT EXISTS registry_pipeline_deletions{cluster} (
    name String, deletion_id String, created_at_ms Int64, record String, done UInt8, version UInt64
) ENGINE = {engine} ORDER BY (name, deletion_id)
""",
    """
CREATE TABLE IF NOT EXISTS registry_pipeline_leases{cluster} (
    name String, holder String, until_ms Int64, generation UInt64, version UInt64
) ENGINE = {engine} ORDER BY name
""",
)
_NOW_US = "toUnixTimestamp64Micro(now64(6))"
_SERVER_MS = "toUnixTimestamp64Milli(now64(3))"
_PIPELINES = "SELECT name, project_id, spec FROM registry_pipelines FINAL WHERE deleted = 0"


class ClickHousePipelines:
    """The pipeline part of `ClickHouseRegistry`."""

    _runner: str

    def _rows(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _command(self, sql: str, params: Params | None = None) -> None:
        raise NotImplementedError

    def _win(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def create_pipeline(self, spec: PipelineSpec) -> Pipeline:
        if self._rows(_PIPELINES + " AND name = {n:String}", {"n": spec.name}):
            raise BadRequest(f"a pipeline named {spec.name!r} already exists")
        params = {"n": spec.name, "p": spec.project_id, "spec": json.dumps(spec.to_json())}
        # Status and state first: without its definition row they belong to no pipeline.
        self._set_status(spec.name, ACTIVE)
        self._set_state(spec.name, RunState())
        self._command(
            "INSERT INTO registry_pipelines (name, project_id, spec, deleted, version)"
            f" SELECT {{n:String}}, {{p:Int32}}, {{spec:String}}, 0, {_NOW_US}",
            params,
        )
        return Pipeline(spec, ACTIVE, RunState())

    def _set_status(self, name: str, status: str) -> None:
        self._command(
            "INSERT INTO registry_pipeline_status (name, status, version)"
            f" SELECT {{n:String}}, {{s:String}}, {_NOW_US}",
            {"n": name, "s": status},
        )

    def _set_state(self, name: str, state: RunState) -> None:
        self._command(
            "INSERT INTO registry_pipeline_state (name, state, version)"
            f" SELECT {{n:String}}, {{s:String}}, {_NOW_US}",
            {"n": name, "s": json.dumps(state.to_json())},
        )

    def pipelines(self, project_id: int | None = None) -> list[Pipeline]:
        sql, params = _PIPELINES, {}
        if project_id is not None:
            sql, params = sql + " AND project_id = {p:Int32}", {"p": project_id}
        rows = self._rows(sql + " ORDER BY name", params)
        if not rows:
            return []
        names = {"names": [row["name"] for row in rows]}
        statuses = {
            r["name"]: r["status"]
            for r in self._rows(
                "SELECT name, status FROM registry_pipeline_status FINAL"
                " WHERE has({names:Array(String)}, name)",
                names,
            )
        }
        states = {
            r["name"]: r["state"]
            for r in self._rows(
                "SELECT name, state FROM registry_pipeline_state FINAL"
                " WHERE has({names:Array(String)}, name)",
                names,
            )
        }
        return [
            Pipeline(
                PipelineSpec.from_json(json.loads(row["spec"])),
                statuses.get(row["name"], ACTIVE),
                RunState.from_json(json.loads(states.get(row["name"], "{}"))),
            )
            for row in rows
        ]

    def pipeline(self, name: str) -> Pipeline | None:
        found = [p for p in self.pipelines() if p.name == name]
        return found[0] if found else None

    def require_pipeline(self, name: str) -> Pipeline:
        found = self.pipeline(name)
        if found is None:
            raise NotFound(f"no pipeline named {name!r}")
        return found

    def set_pipeline_status(self, name: str, status: str) -> Pipeline:
        self.require_pipeline(name)
        self._set_status(name, status)
        return self.require_pipeline(name)

    def delete_pipeline(self, name: str) -> Pipeline:
        found = self.require_pipeline(name)
        self._command(
            "INSERT INTO registry_pipelines (name, project_id, spec, deleted, version)"
            f" SELECT name, project_id, spec, 1, greatest(version + 1, {_NOW_US})"
            " FROM registry_pipelines FINAL WHERE name = {n:String} AND deleted = 0",
            {"n": name},
        )
        for table in ("registry_pipeline_runs", "registry_pipeline_deletions", "registry_pipeline_state"):
            self._command(f"DELETE FROM {table} WHERE name = {{n:String}}", {"n": name})
        return found

    def save_pipeline_state(self, name: str, state: RunState, run: dict[str, Any] | None = None) -> None:
        if not self._rows(_PIPELINES + " AND name = {n:String}", {"n": name}):
            return  # deleted meanwhile
        if run is not None:  # the run's row first: a redo after a crash here replaces it
            self._command(
                "INSERT INTO registry_pipeline_runs (name, run, attempt, record, version)"
                f" SELECT {{n:String}}, {{r:UInt64}}, {{a:UInt32}}, {{rec:String}}, {_NOW_US}",
                {"n": name, "r": run["run"], "a": run["attempt"], "rec": json.dumps(run)},
            )
        self._set_state(name, state)

    def pipeline_runs(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT record FROM registry_pipeline_runs FINAL WHERE name = {n:String}"
            " ORDER BY run DESC, attempt DESC LIMIT {l:UInt32}",
            {"n": name, "l": limit},
        )
        return [json.loads(row["record"]) for row in rows]

    def add_pipeline_deletion(self, name: str, deletion_id: str, record: dict[str, Any]) -> None:
        known = self._rows(
            "SELECT 1 FROM registry_pipeline_deletions FINAL"
            " WHERE name = {n:String} AND deletion_id = {d:String}",
            {"n": name, "d": deletion_id},
        )
        if known:
            return
        self._command(
            "INSERT INTO registry_pipeline_deletions"
            " (name, deletion_id, created_at_ms, record, done, version)"
            f" SELECT {{n:String}}, {{d:String}}, {{now:Int64}}, {{rec:String}}, 0, {_NOW_US}",
            {"n": name, "d": deletion_id, "now": now_ms(), "rec": json.dumps(record)},
        )

    def pipeline_deletions(self, name: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT record FROM registry_pipeline_deletions FINAL WHERE name = {n:String} AND done = 0"
            " ORDER BY created_at_ms, deletion_id",
            {"n": name},
        )
        return [json.loads(row["record"]) for row in rows]

    def finish_pipeline_deletion(self, name: str, deletion_id: str) -> None:
        self._command(
            "INSERT INTO registry_pipeline_deletions"
            " (name, deletion_id, created_at_ms, record, done, version)"
            f" SELECT name, deletion_id, created_at_ms, record, 1, greatest(version + 1, {_NOW_US})"
            " FROM registry_pipeline_deletions FINAL WHERE name = {n:String} AND deletion_id = {d:String}",
            {"n": name, "d": deletion_id},
        )

    def claim_pipeline(self, name: str, ttl_ms: int) -> bool:
        rows = self._rows(
            "SELECT holder, until_ms, generation, until_ms > "
            + _SERVER_MS
            + " AS live FROM registry_pipeline_leases FINAL WHERE name = {n:String}",
            {"n": name},
        )
        lease = rows[0] if rows else None
        if lease is not None and lease["holder"] == self._runner and lease["live"]:
            generation = int(lease["generation"])  # renewal: no claim round
        elif lease is not None and lease["live"] and lease["holder"]:
            return False
        else:
            generation = int(lease["generation"]) + 1 if lease is not None else 1
            if not self._win([{"task_id": f"pipeline:{name}", "attempt": generation}]):
                return False
        self._command(
            "INSERT INTO registry_pipeline_leases (name, holder, until_ms, generation, version)"
            f" SELECT {{n:String}}, {{h:String}}, {_SERVER_MS} + {{ttl:Int64}}, {{g:UInt64}}, {_NOW_US}",
            {"n": name, "h": self._runner, "ttl": ttl_ms, "g": generation},
        )
        return True

    def release_pipeline(self, name: str) -> None:
        self._command(
            "INSERT INTO registry_pipeline_leases (name, holder, until_ms, generation, version)"
            f" SELECT name, '', 0, generation, greatest(version + 1, {_NOW_US})"
            " FROM registry_pipeline_leases FINAL WHERE name = {n:String} AND holder = {h:String}",
            {"n": name, "h": self._runner},
        )
