"""Data pipelines in the SQLite registry (rawevents.pipelines): definitions, status, run state,
the runs' history and the deletions each pipeline still has to carry to its destination.

A mixin of `SqliteRegistry` (its connection per thread and transactions). The run state is one
JSON value written by the runner alone, the status one column written by people, so a `pause`
never races with a run's commit. A commit (new state + its run row) is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from typing import Any

from rawevents.errors import BadRequest, NotFound
from rawevents.pipelines.model import ACTIVE, Pipeline, PipelineSpec, RunState
from rawevents.projects import now_ms

PIPELINE_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    project_id INTEGER NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '{}'
)
""",
    """
CREATE TABLE IF NOT EXISTS pipeline_runs (
    name TEXT NOT NULL,
    run INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (name, run, attempt)
)
""",
    """
CREATE TABLE IF NOT EXISTS pipeline_deletions (
    name TEXT NOT NULL,
    deletion_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, deletion_id)
)
""",
)


class SqlitePipelines:
    """The pipeline part of `SqliteRegistry`."""

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _create_pipeline_tables(self) -> None:
        conn = self._conn()
        for statement in PIPELINE_SCHEMA:
            conn.execute(statement)

    def create_pipeline(self, spec: PipelineSpec) -> Pipeline:
        try:
            self._conn().execute(
                "INSERT INTO pipelines (name, project_id, spec, status, state) VALUES (?, ?, ?, ?, ?)",
                (
                    spec.name,
                    spec.project_id,
                    json.dumps(spec.to_json()),
                    ACTIVE,
                    json.dumps(RunState().to_json()),
                ),
            )
        except sqlite3.IntegrityError:
            raise BadRequest(f"a pipeline named {spec.name!r} already exists") from None
        return Pipeline(spec, ACTIVE, RunState())

    def pipelines(self, project_id: int | None = None) -> list[Pipeline]:
        if project_id is None:
            rows = self._conn().execute("SELECT * FROM pipelines ORDER BY name")
        else:
            rows = self._conn().execute(
                "SELECT * FROM pipelines WHERE project_id = ? ORDER BY name", (project_id,)
            )
        return [_pipeline(row) for row in rows.fetchall()]

    def pipeline(self, name: str) -> Pipeline | None:
        row = self._conn().execute("SELECT * FROM pipelines WHERE name = ?", (name,)).fetchone()
        return _pipeline(row) if row else None

    def require_pipeline(self, name: str) -> Pipeline:
        found = self.pipeline(name)
        if found is None:
            raise NotFound(f"no pipeline named {name!r}")
        return found

    def set_pipeline_status(self, name: str, status: str) -> Pipeline:
        cur = self._conn().execute("UPDATE pipelines SET status = ? WHERE name = ?", (status, name))
        if cur.rowcount == 0:
            raise NotFound(f"no pipeline named {name!r}")
        return self.require_pipeline(name)

    def delete_pipeline(self, name: str) -> Pipeline:
        found = self.require_pipeline(name)
        with self._transaction() as conn:
            for table in ("pipelines", "pipeline_runs", "pipeline_deletions"):
                conn.execute(f"DELETE FROM {table} WHERE name = ?", (name,))
        return found

    def save_pipeline_state(self, name: str, state: RunState, run: dict[str, Any] | None = None) -> None:
        """The runner's new state and, with it (one transaction), the row of a run that ended."""
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE pipelines SET state = ? WHERE name = ?", (json.dumps(state.to_json()), name)
            )
            if run is not None and cur.rowcount:
                conn.execute(
                    "INSERT OR REPLACE INTO pipeline_runs (name, run, attempt, record) VALUES (?, ?, ?, ?)",
                    (name, run["run"], run["attempt"], json.dumps(run)),
                )

    def pipeline_runs(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT record FROM pipeline_runs WHERE name = ? ORDER BY run DESC, attempt DESC LIMIT ?",
            (name, limit),
        )
        return [json.loads(row[0]) for row in rows.fetchall()]

    def add_pipeline_deletion(self, name: str, deletion_id: str, record: dict[str, Any]) -> None:
        self._conn().execute(
            "INSERT OR IGNORE INTO pipeline_deletions (name, deletion_id, created_at_ms, record)"
            " VALUES (?, ?, ?, ?)",
            (name, deletion_id, now_ms(), json.dumps(record)),
        )

    def pipeline_deletions(self, name: str) -> list[dict[str, Any]]:
        """The deletions the pipeline has not carried out yet, oldest first."""
        rows = self._conn().execute(
            "SELECT record FROM pipeline_deletions WHERE name = ? AND done = 0 ORDER BY created_at_ms, rowid",
            (name,),
        )
        return [json.loads(row[0]) for row in rows.fetchall()]

    def finish_pipeline_deletion(self, name: str, deletion_id: str) -> None:
        self._conn().execute(
            "UPDATE pipeline_deletions SET done = 1 WHERE name = ? AND deletion_id = ?", (name, deletion_id)
        )

    def claim_pipeline(self, name: str, ttl_ms: int) -> bool:
        """Always: an embedded store (and so this registry's pipelines) belongs to one server
        process, which alone runs them; a restarted process takes them over at once."""
        return self.pipeline(name) is not None

    def release_pipeline(self, name: str) -> None:
        pass


def _pipeline(row: sqlite3.Row) -> Pipeline:
    return Pipeline(
        PipelineSpec.from_json(json.loads(row["spec"])),
        row["status"],
        RunState.from_json(json.loads(row["state"])),
    )
