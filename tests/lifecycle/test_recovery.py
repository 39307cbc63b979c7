"""The first start after kill -9 recovers the store, even when replaying a large WAL spills to
disk (it used to fail once with "Cannot switch temporary directory after the current one has
been used", because the temp directory was set after the replay had used the default one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from rawevents.projects import Project
from tests.import_load import GZIP_JSON, import_body
from tests.lifecycle.helpers import exported_ids
from tests.live_server import LiveServer

BODIES = 40  # 80k events, a WAL of ~28 MB: larger than the engine memory limit below
MEMORY_LIMIT = "16MB"

pytestmark = pytest.mark.server  # every test here starts a server process


def test_first_restart_after_kill9_with_a_large_wal_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"RAWEVENTS_ENGINE_MEMORY_LIMIT": MEMORY_LIMIT, "RAWEVENTS_INGEST_PROCESSES": "0"}
    server = LiveServer(data, env=env, log=tmp_path / "log").start()
    try:  # a failure stops the server here, not in a later test's garbage collection
        project = server.create_project()
        acknowledged = _import(server, project)
        wal = data / "events.duckdb.wal"
        assert wal.stat().st_size > 24 * 1024 * 1024  # nothing checkpointed: the WAL holds it all
        server.kill9()

        server.start()  # the first try: LiveServer.start raises if the server exits
        server.stop()
        del server.env["RAWEVENTS_ENGINE_MEMORY_LIMIT"]  # exporting 80k rows needs more than 16 MB
        server.start()
        exported = exported_ids(server, project)
    finally:
        server.stop()
    assert set(exported) == acknowledged
    assert max(exported.values()) == 1


def _import(server: LiveServer, project: Project) -> set[str]:
    """Every event of BODIES strict /import batches; each must be acknowledged."""
    acknowledged: set[str] = set()
    with requests.Session() as session:
        for n in range(BODIES):
            body, ids = import_body(f"b{n}", 2000)
            response = session.post(
                server.base_url + "/import?strict=1",
                data=body,
                headers=GZIP_JSON,
                auth=(project.api_secret, ""),
                timeout=60,
            )
            assert response.status_code == 200, response.text
            acknowledged.update(ids)
    return acknowledged
