"""Every credential style Mixpanel clients send to the export (compat §3), in-process."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from rawevents.auth import INVALID_SECRET, INVALID_SERVICE_ACCOUNT, NO_SIGNING_SECRET, signature
from rawevents.projects import Project
from rawevents.service import Services
from rawevents.storage.duckdb.registry import REGISTRY_FILE
from tests.export.helpers import basic

QUERY = {"from_date": "2024-05-01", "to_date": "2024-05-01"}


@pytest.fixture
def project(services: Services) -> Project:
    return services.registry.create_project("auth", "UTC")


@pytest.fixture
def signing_project(services: Services) -> Project:
    """A project that keeps its plaintext secret for legacy request signatures."""
    return services.registry.create_project("signing", "UTC", legacy_signature=True)


def get(client: TestClient, params: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, str]:
    response = client.get(f"/api/2.0/export?{urlencode(params)}", headers=headers or {})
    return response.status_code, "" if response.status_code == 200 else response.json()["error"]


def _b64(text: str, urlsafe: bool = False, pad: bool = True) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(text.encode()).decode()
    return encoded if pad else encoded.rstrip("=")


@pytest.mark.parametrize(
    "header",
    [
        lambda s: f"Basic {_b64(s + ':')}",  # the usual `secret:`
        lambda s: f"Basic {_b64(s)}",  # no colon (tap-mixpanel, airbyte)
        lambda s: f"Basic {_b64(s, urlsafe=True, pad=False)}",  # URL-safe alphabet, no padding
        lambda s: f"Basic {_b64(s + ':', pad=False)}",
        lambda s: f"Basic {s}:",  # plain text
        lambda s: f"Basic {s}",  # plain text, no colon
        lambda s: f"basic   {_b64(s + ':')}  ",  # scheme case and spacing
    ],
)
def test_project_secret_variants(client: TestClient, project: Project, header: object) -> None:
    assert callable(header)
    assert get(client, QUERY, {"Authorization": header(project.api_secret)}) == (200, "")


def test_secret_with_matching_project_id(client: TestClient, project: Project, services: Services) -> None:
    assert get(client, {**QUERY, "project_id": str(project.project_id)}, basic(project.api_secret)) == (
        200,
        "",
    )
    other = services.registry.create_project("other", "UTC")
    status, _error = get(client, {**QUERY, "project_id": str(other.project_id)}, basic(project.api_secret))
    assert status == 403


def test_service_account(client: TestClient, project: Project, services: Services) -> None:
    account = services.registry.create_service_account(project.project_id, "etl")
    creds = basic(account.username, account.secret)
    assert get(client, {**QUERY, "project_id": str(project.project_id)}, creds) == (200, "")
    plain = {"Authorization": f"Basic {account.username}:{account.secret}"}
    assert get(client, {**QUERY, "project_id": str(project.project_id)}, plain) == (200, "")
    other = services.registry.create_project("no-grant", "UTC")
    assert get(client, {**QUERY, "project_id": str(other.project_id)}, creds) == (
        403,
        f"service account has no access to project {other.project_id}",
    )
    # Without project_id the username is taken for a project secret (Mixpanel's answer).
    assert get(client, QUERY, creds) == (401, INVALID_SECRET)
    wrong = basic(account.username, "not-the-secret")
    assert get(client, {**QUERY, "project_id": str(project.project_id)}, wrong) == (
        401,
        INVALID_SERVICE_ACCOUNT,
    )


MISSING = "missing credentials: send the project secret or a service account with HTTP Basic auth"


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, MISSING),
        ({"Authorization": "Bearer abc"}, MISSING),
        (basic("wrong-secret"), INVALID_SECRET),
        ({"Authorization": "Basic "}, MISSING),
    ],
)
def test_unauthorized(client: TestClient, project: Project, headers: dict[str, str], error: str) -> None:
    assert get(client, QUERY, headers) == (401, error)


def test_auth_is_checked_before_parameters(client: TestClient, project: Project) -> None:
    assert get(client, {"from_date": "nonsense"})[0] == 401


def _signed(
    project: Project, expire: int, *, sort_pairs: bool, extra: dict[str, str] | None = None
) -> dict[str, str]:
    params = {**QUERY, **(extra or {}), "api_key": project.token, "expire": str(expire)}
    return {**params, "sig": signature(params, project.api_secret, sort_pairs=sort_pairs)}


@pytest.mark.parametrize("sort_pairs", [False, True])
def test_legacy_signature_in_both_sort_orders(
    client: TestClient, signing_project: Project, sort_pairs: bool
) -> None:
    # `event` and `event-x` sort differently as keys and as "k=v" pairs.
    extra = {"event": '["a"]', "event-x": "1", "callback": "ignored"}
    params = _signed(signing_project, int(time.time()) + 600, sort_pairs=sort_pairs, extra=extra)
    assert get(client, params) == (200, "")


def test_legacy_signature_needs_a_kept_secret(client: TestClient, project: Project) -> None:
    # The project's secret is only a digest in the registry: an md5 signature cannot be checked.
    assert get(client, _signed(project, int(time.time()) + 600, sort_pairs=False)) == (401, NO_SIGNING_SECRET)


def test_legacy_signature_errors(client: TestClient, signing_project: Project) -> None:
    project = signing_project
    expired = _signed(project, int(time.time()) - 1, sort_pairs=False)
    assert get(client, expired) == (401, "Expired request")
    bad = {**_signed(project, int(time.time()) + 600, sort_pairs=False), "sig": "0" * 32}
    assert get(client, bad) == (401, "Invalid API signature")
    tampered = {**_signed(project, int(time.time()) + 600, sort_pairs=False), "to_date": "2024-05-02"}
    assert get(client, tampered) == (401, "Invalid API signature")
    unknown = {**_signed(project, int(time.time()) + 600, sort_pairs=False), "api_key": "nope"}
    assert get(client, unknown) == (401, "Invalid API key")


def test_non_integer_project_id_is_a_bad_parameter(client: TestClient, project: Project) -> None:
    assert get(client, {**QUERY, "project_id": "abc"}, basic(project.api_secret)) == (
        400,
        "project_id must be an integer, got 'abc'",
    )


def test_registry_file_is_readable_by_its_owner_only(services: Services) -> None:
    assert (Path(services.config.data_dir) / REGISTRY_FILE).stat().st_mode & 0o077 == 0
