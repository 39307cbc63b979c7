"""Issue 26, finding 5: GDPR retrieval zips expire (`gdpr_retrieval_expiry_seconds`) and
`project delete` removes them; before, they piled up in data_dir/retrievals for ever."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from rawevents.admin import commands, tasks
from rawevents.http.app import create_app
from rawevents.projects import Project
from rawevents.service import Services
from rawevents.settings import Config, load_config
from tests.admin.helpers import bearer
from tests.export.helpers import stored_event

RETRIEVALS = "/api/app/data-retrievals/v3.0/"
EXPIRY = 3


def test_the_default_keeps_zips_a_few_days() -> None:
    assert Config().gdpr_retrieval_expiry_seconds == 3 * 86_400


def test_expired_zips_and_partial_files_are_deleted(tmp_path: Path) -> None:
    folder = tmp_path / tasks.RETRIEVALS_DIR
    folder.mkdir()
    now = time.time()
    for name, age in [("old.zip", 100), ("old.tmp", 100), ("new.zip", 10), ("keep.txt", 100)]:
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (now - age, now - age))
    assert tasks.expire_retrievals(tmp_path, 0, now) == 0  # 0: kept
    assert tasks.expire_retrievals(tmp_path, 50, now) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt", "new.zip"]
    assert tasks.expire_retrievals(tmp_path / "absent", 50, now) == 0


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Config, Services, TestClient]]:
    config = load_config(
        {}, data_dir=str(tmp_path / "data"), ingest_processes=0, gdpr_retrieval_expiry_seconds=EXPIRY
    )
    services = Services.open(config)
    try:
        with TestClient(create_app(config, services)) as client:
            yield config, services, client
    finally:
        services.close()


def _retrieve(services: Services, client: TestClient, project: Project) -> tuple[str, dict[str, str]]:
    assert project.api_secret is not None
    services.store.submit_events([stored_event(project, "e", 1714521600000, distinct_id="bob")]).result()
    auth = bearer(project.api_secret)
    body = {"distinct_ids": ["bob"], "compliance_type": "CCPA", "disclosure_type": "Data"}
    created = client.post(f"{RETRIEVALS}?token={project.token}", json=body, headers=auth)
    assert created.status_code == 201, created.text
    task_id = created.json()["results"]["task_id"]
    _until(lambda: _status(client, project, task_id, auth)["status"] == "SUCCESS")
    return task_id, auth


def _status(client: TestClient, project: Project, task_id: str, auth: dict[str, str]) -> Any:
    return client.get(f"{RETRIEVALS}{task_id}?token={project.token}", headers=auth).json()["results"]


def _until(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_retrieval_zip_expires(app: tuple[Config, Services, TestClient]) -> None:
    config, services, client = app
    project = services.registry.create_project("expiry", "UTC")
    task_id, auth = _retrieve(services, client, project)
    path = tasks.retrieval_path(Path(config.data_dir), task_id)
    link = _status(client, project, task_id, auth)["results"]
    assert link and path.exists()
    download = f"{RETRIEVALS}{task_id}/download?token={project.token}"
    assert client.get(download, headers=auth).status_code == 200
    _until(lambda: not path.exists(), timeout=EXPIRY + 10)  # the task runner's sweep
    assert _status(client, project, task_id, auth)["results"] == ""
    gone = client.get(download, headers=auth)
    assert gone.status_code == 404 and "has expired" in gone.text


def test_project_delete_removes_its_zips(app: tuple[Config, Services, TestClient], tmp_path: Path) -> None:
    config, services, client = app
    project = services.registry.create_project("delete-zips", "UTC")
    task_id, _ = _retrieve(services, client, project)
    path = tasks.retrieval_path(Path(config.data_dir), task_id)
    assert path.exists()
    path.with_suffix(".tmp").write_bytes(b"partial")  # as a crash mid-retrieval leaves it
    commands.project_delete(config, project.project_id)  # handed to the app's task runner
    assert not path.exists() and not path.with_suffix(".tmp").exists()
