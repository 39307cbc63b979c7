"""Mixpanel's GDPR API v3 against a live server: deletion, retrieval, cancellation, auth, shapes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rawevents.auth import INVALID_SERVICE_ACCOUNT, MISSING_BEARER
from rawevents.projects import Project
from tests.admin.helpers import (
    bearer,
    event,
    export,
    get,
    import_events,
    live,
    profile_ids,
    set_profiles,
    wait_for,
)
from tests.export.helpers import basic
from tests.live_server import LiveServer
from tests.stores import store_setting

DAY = "2024-05-01"
T0 = 1714521600  # 2024-05-01T00:00:00Z
USERS = ["alice", "bob", "carol"]
DELETIONS = "/api/app/data-deletions/v3.0/"
RETRIEVALS = "/api/app/data-retrievals/v3.0/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, store_kind: str) -> Iterator[LiveServer]:
    """A GDPR server on each store: a deletion must hold wherever the events live."""
    with live(tmp_path_factory.mktemp("gdpr"), RAWEVENTS_STORE=store_setting(store_kind)) as running:
        yield running


def _seed(server: LiveServer, project: Project) -> None:
    assert project.api_secret is not None
    events = [
        event(user, name, T0 + 60 * i + n, f"{user}-{name}-{i}", n=i)
        for n, user in enumerate(USERS)
        for i, name in enumerate(["signup", "view", "buy"])
    ]
    import_events(server, project.api_secret, events)
    set_profiles(server, project.token, {user: {"name": user.title(), "plan": "pro"} for user in USERS})


def _users_in(body: bytes) -> set[str]:
    return {orjson.loads(line)["properties"]["distinct_id"] for line in body.splitlines()}


def _create(server: LiveServer, kind: str, project: Project, body: Any, headers: dict[str, str]) -> Any:
    response = server.post(f"{kind}?token={project.token}", json=body, headers=headers)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["status"] == "ok" and set(answer["results"]) == {"task_id"}
    return answer["results"]["task_id"]


def _status(server: LiveServer, kind: str, project: Project, task_id: str, headers: dict[str, str]) -> Any:
    response = server.get(f"{kind}{task_id}?token={project.token}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _finished(server: LiveServer, kind: str, project: Project, task_id: str, headers: dict[str, str]) -> Any:
    def done() -> Any:
        answer = _status(server, kind, project, task_id, headers)
        return answer if answer["results"]["status"] not in ("PENDING", "STARTED") else None

    return wait_for(done)


def test_deletion_removes_the_users_events_and_profiles(server: LiveServer) -> None:
    project = server.create_project("gdpr-delete")
    other = server.create_project("gdpr-other")
    assert project.api_secret is not None and other.api_secret is not None
    _seed(server, project)
    _seed(server, other)
    before = export(server, project.api_secret, DAY, DAY)
    assert _users_in(before) == set(USERS)

    auth = bearer(project.api_secret)
    task_id = _create(server, DELETIONS, project, {"distinct_ids": ["alice", "carol"]}, auth)
    answer = _finished(server, DELETIONS, project, task_id, auth)
    results = answer["results"]
    assert answer["status"] == "ok"
    assert results["status"] == "SUCCESS"
    assert {k: results[k] for k in ("tracking_id", "requesting_user", "compliance_type", "project_id")} == {
        "tracking_id": task_id,
        "requesting_user": "project-secret",
        "compliance_type": "GDPR",
        "project_id": project.project_id,
    }
    assert results["distinct_ids"] == ["alice", "carol"]
    assert len(results["date_requested"]) == len("YYYY-MM-DDTHH:MM:SS")

    after = export(server, project.api_secret, DAY, DAY)
    assert _users_in(after) == {"bob"}
    assert after == b"".join(line + b"\n" for line in before.splitlines() if b'"distinct_id":"bob"' in line)
    assert profile_ids(server, project.api_secret) == ["bob"]
    top = server.get("/api/2.0/events/properties/top?event=buy", headers=basic(project.api_secret))
    assert top.json()["n"] == {"count": 1}
    # The query endpoints the explorer draws with see only what is left.
    segmented = server.get(
        "/api/query/segmentation",
        params={"from_date": DAY, "to_date": DAY, "unit": "day", "on": 'properties["distinct_id"]'},
        headers=basic(project.api_secret),
    )
    assert segmented.status_code == 200, segmented.text
    assert set(segmented.json()["data"]["values"]) == {"bob"}
    # Nobody else's data moved.
    assert _users_in(export(server, other.api_secret, DAY, DAY)) == set(USERS)
    assert profile_ids(server, other.api_secret) == USERS

    listing = server.get(f"{DELETIONS}?token={project.token}", headers=auth).json()
    assert [t["tracking_id"] for t in listing["results"]] == [task_id]


def test_retrieval_produces_a_downloadable_export(server: LiveServer) -> None:
    project = server.create_project("gdpr-retrieve")
    assert project.api_secret is not None
    _seed(server, project)
    account = server.registry.create_service_account(project.project_id, "dpo")
    auth = bearer(f"{account.username}:{account.secret}")
    body = {"distinct_ids": ["bob"], "compliance_type": "CCPA", "disclosure_type": "Data"}
    task_id = _create(server, RETRIEVALS, project, body, auth)
    answer = _finished(server, RETRIEVALS, project, task_id, auth)
    results = answer["results"]
    assert results["status"] == "SUCCESS"
    assert results["distinct_ids"] == ["bob"]
    assert results["requesting_user"] == account.username
    link = results["results"]
    assert link.startswith(server.base_url + RETRIEVALS + task_id)

    assert get(link).status_code == 401  # the link alone is not enough
    download = get(link, headers=auth)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    assert sorted(archive.namelist()) == ["events.jsonl", "profiles.jsonl"]
    everyone = export(server, project.api_secret, DAY, DAY)
    bobs = b"".join(line + b"\n" for line in everyone.splitlines() if b'"distinct_id":"bob"' in line)
    assert archive.read("events.jsonl") == bobs
    profiles = [orjson.loads(line) for line in archive.read("profiles.jsonl").splitlines()]
    engage = server.get("/api/2.0/engage", headers=basic(project.api_secret)).json()["results"]
    assert profiles == [p for p in engage if p["$distinct_id"] == "bob"]
    assert profiles[0]["$properties"]["name"] == "Bob"

    # Another project's credentials get nothing, not even the task's existence.
    other = server.create_project("gdpr-stranger")
    assert other.api_secret is not None
    stranger = bearer(other.api_secret)
    response = server.get(f"{RETRIEVALS}{task_id}?token={other.token}", headers=stranger)
    assert response.status_code == 404
    assert (
        get(
            f"{server.base_url}{RETRIEVALS}{task_id}/download?token={other.token}", headers=stranger
        ).status_code
        == 404
    )


@pytest.mark.server
def test_deletion_can_be_cancelled_until_it_starts(tmp_path: Path) -> None:
    with live(tmp_path, RAWEVENTS_GDPR_DELETION_DELAY_SECONDS="3600") as server:
        project = server.create_project()
        assert project.api_secret is not None
        _seed(server, project)
        auth = basic(project.api_secret)  # Basic with the secret works as well as Bearer
        task_id = _create(server, DELETIONS, project, {"distinct_ids": ["alice"]}, auth)
        assert _status(server, DELETIONS, project, task_id, auth)["results"]["status"] == "PENDING"
        cancelled = server.delete(f"{DELETIONS}{task_id}?token={project.token}", headers=auth)
        assert (cancelled.status_code, cancelled.content) == (204, b"")
        assert _status(server, DELETIONS, project, task_id, auth)["results"]["status"] == "REVOKED"
        again = server.delete(f"{DELETIONS}{task_id}?token={project.token}", headers=auth)
        assert again.status_code == 400
        assert again.json() == {
            "status": "error",
            "error": f"deletion task {task_id} is REVOKED and can no longer be cancelled",
        }
        assert _users_in(export(server, project.api_secret, DAY, DAY)) == set(USERS)


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        ({}, {"distinct_ids": ["a"]}, 401, MISSING_BEARER),
        (
            {"Authorization": "Bearer x.mp-service-account:wrong"},
            {"distinct_ids": ["a"]},
            401,
            INVALID_SERVICE_ACCOUNT,
        ),
        (None, {"distinct_ids": []}, 400, "distinct_ids must be a non-empty array of strings"),
        (None, {"distinct_ids": [1, 2]}, 400, "distinct_ids must be a non-empty array of strings"),
        (None, {"distinct_ids": ["a"] * 2001}, 400, "too many distinct_ids: 2001 (at most 2000 per request)"),
        (
            None,
            {"distinct_ids": ["a"], "compliance_type": "HIPAA"},
            400,
            "compliance_type must be GDPR or CCPA",
        ),
        (None, [1], 400, "the request body must be a JSON object with distinct_ids"),
    ],
)
def test_bad_requests_get_mixpanels_error_shape(
    server: LiveServer, headers: dict[str, str] | None, body: Any, status: int, error: str
) -> None:
    project = server.create_project("gdpr-errors")
    assert project.api_secret is not None
    response = server.post(
        f"{DELETIONS}?token={project.token}",
        json=body,
        headers=bearer(project.api_secret) if headers is None else headers,
    )
    assert (response.status_code, response.json()) == (status, {"status": "error", "error": error})


def test_credentials_must_belong_to_the_tokens_project(server: LiveServer) -> None:
    mine = server.create_project("gdpr-mine")
    theirs = server.create_project("gdpr-theirs")
    assert mine.api_secret is not None
    response = server.post(
        f"{DELETIONS}?token={theirs.token}", json={"distinct_ids": ["a"]}, headers=bearer(mine.api_secret)
    )
    assert (response.status_code, response.json()["status"]) == (403, "error")
    missing = server.post(DELETIONS, json={"distinct_ids": ["a"]}, headers=bearer(mine.api_secret))
    assert missing.json() == {"status": "error", "error": "missing required parameter: token"}
    unknown = server.get(f"{DELETIONS}nope?token={mine.token}", headers=bearer(mine.api_secret))
    assert unknown.status_code == 404
