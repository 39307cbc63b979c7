"""`project delete` removes the project, its credentials and every event and profile it stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawevents.auth import INVALID_SECRET
from rawevents.projects import Project
from rawevents.storage.duckdb.store import DuckDBStore
from tests.admin.helpers import (
    cli,
    cli_json,
    event,
    export,
    import_events,
    live,
    profile_ids,
    set_profiles,
)
from tests.export.helpers import basic
from tests.live_server import LiveServer

DAY = "2024-05-01"
T0 = 1714521600

pytestmark = pytest.mark.server  # every test here starts a server process


def _seed(server: LiveServer, project: Project) -> None:
    assert project.api_secret is not None
    import_events(
        server,
        project.api_secret,
        [event(f"u{i}", "e", T0 + i, f"{project.project_id}-{i}") for i in range(50)],
    )
    set_profiles(server, project.token, {"u1": {"a": 1}, "u2": {"a": 2}})


def _stored_rows(data_dir: Path, project_id: int) -> tuple[int, int]:
    store = DuckDBStore(data_dir)
    try:
        events = store.query("SELECT count(*) FROM events WHERE project_id = ?", [project_id])[0][0]
        profiles = store.query("SELECT count(*) FROM profiles WHERE project_id = ?", [project_id])[0][0]
        return int(events), int(profiles)
    finally:
        store.close()


def test_delete_while_serving_and_while_stopped(tmp_path: Path) -> None:
    data = str(tmp_path)
    with live(tmp_path) as server:
        doomed, kept, later = (server.create_project(name) for name in ("doomed", "kept", "later"))
        for project in (doomed, kept, later):
            _seed(server, project)
        server.registry.create_service_account(doomed.project_id, "etl")
        assert doomed.api_secret is not None and kept.api_secret is not None
        kept_export = export(server, kept.api_secret, DAY, DAY)

        result = cli_json("project", "delete", "--project", str(doomed.project_id), "--data-dir", data)
        assert result == {
            "project_id": doomed.project_id,
            "name": "doomed",
            "deleted": {"events": 50, "profiles": 2},
        }
        response = server.get(
            f"/api/2.0/export?from_date={DAY}&to_date={DAY}", headers=basic(doomed.api_secret)
        )
        assert (response.status_code, response.json()["error"]) == (401, INVALID_SECRET)
        # Its token no longer ingests; its service account (no other project) is gone.
        assert server.post("/track", json=[{"event": "e", "properties": {"token": doomed.token}}]).text == "1"
        assert cli_json("service-account", "list", "--data-dir", data) == []
        assert export(server, kept.api_secret, DAY, DAY) == kept_export
        assert profile_ids(server, kept.api_secret) == ["u1", "u2"]
        assert [p["name"] for p in cli_json("project", "list", "--data-dir", data)] == ["kept", "later"]

    # No server running: the command opens the store and does the work itself.
    result = cli_json("project", "delete", "--project", str(later.project_id), "--data-dir", data)
    assert result["deleted"] == {"events": 50, "profiles": 2}
    assert _stored_rows(tmp_path, doomed.project_id) == (0, 0)
    assert _stored_rows(tmp_path, later.project_id) == (0, 0)
    assert _stored_rows(tmp_path, kept.project_id) == (50, 2)
    missing = cli("project", "delete", "--project", str(later.project_id), "--data-dir", data, check=False)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        f"rawevents: no project with id {later.project_id}",
    )
