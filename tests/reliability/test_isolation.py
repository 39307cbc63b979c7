"""The isolation matrix: every read endpoint x every credential kind x both request methods, and
every ingestion endpoint x every credential kind: project A's data is only ever read, or
written, with credentials that belong to A.

A's events and profiles carry a marker (in values and in a property name); a response to any
credential that is not A's must not contain it. The same credentials that belong to A must see
it, so the test can fail.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
import requests

from rawevents.projects import Project
from tests.live_server import LiveServer
from tests.reliability.harness import report

pytestmark = pytest.mark.reliability

MARK_A = "isolation-marker-of-a"
PROP_A = "prop_only_in_a"
DAY = "2024-03-01"
TIME_S = 1_709_294_400  # 2024-03-01T12:00:00Z

READ_PATHS = [
    "/api/2.0/export",
    "/api/2.0/engage",
    "/api/query/engage",
    "/api/2.0/events/properties/top",
    "/api/query/events/properties/top",
    "/api/2.0/engage/properties",
    "/api/query/engage/properties",
    "/api/2.0/cohorts/list",
    "/api/query/cohorts/list",
]


@dataclass(frozen=True)
class Credential:
    name: str
    owner: str | None  # "a" when the credential may read A, else None
    headers: dict[str, str]
    params: dict[str, str]


def _basic(user: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _signed(project: Project, params: dict[str, str]) -> dict[str, str]:
    signed = {**params, "api_key": project.token, "expire": str(int(time.time()) + 600)}
    text = "".join(f"{k}={v}" for k, v in sorted(signed.items()))
    return {**signed, "sig": hashlib.md5((text + project.api_secret).encode()).hexdigest()}


@pytest.fixture(scope="module")
def world(server: LiveServer) -> Iterator[tuple[LiveServer, Project, Project, list[Credential]]]:
    a, b = server.create_project("iso-a"), server.create_project("iso-b")
    registry = server.registry
    sa_a = registry.create_service_account(a.project_id, "sa-a")
    sa_b = registry.create_service_account(b.project_id, "sa-b")
    for project, mark in ((a, MARK_A), (b, "marker-of-b")):
        props = {"time": TIME_S, "distinct_id": "p1", "$insert_id": mark, "m": mark}
        if project is a:
            props[PROP_A] = 1
        response = server.post(
            "/import", json=[{"event": "ev", "properties": props}], auth=(project.api_secret, "")
        )
        assert response.status_code == 200, response.text
        engage = [
            {
                "$token": project.token,
                "$distinct_id": "p1",
                "$set": {"m": mark, **({PROP_A: 1} if project is a else {})},
            }
        ]
        assert server.post("/engage", json=engage).text == "1"
    aid, bid = str(a.project_id), str(b.project_id)
    credentials = [
        Credential("a secret", "a", _basic(a.api_secret), {}),
        Credential("a service account", "a", _basic(sa_a.username, sa_a.secret), {"project_id": aid}),
        # Refused: secrets are stored hashed unless a project opts in to legacy signatures.
        Credential("a legacy signature (not opted in)", None, {}, {"legacy": "a"}),
        Credential("b secret", None, _basic(b.api_secret), {}),
        Credential("b secret + project_id a", None, _basic(b.api_secret), {"project_id": aid}),
        Credential(
            "b service account + project_id a", None, _basic(sa_b.username, sa_b.secret), {"project_id": aid}
        ),
        Credential(
            "b service account + project_id b", None, _basic(sa_b.username, sa_b.secret), {"project_id": bid}
        ),
        Credential(
            "a service account, b secret", None, _basic(sa_a.username, sa_b.secret), {"project_id": aid}
        ),
        Credential("b legacy signature", None, {}, {"legacy": "b"}),
        Credential("b legacy signature + project_id a", None, {}, {"legacy": "b", "project_id": aid}),
        Credential("a token as secret", None, _basic(a.token), {}),
        Credential("a token + project_id a", None, _basic(a.token), {"project_id": aid}),
        Credential("nothing", None, {}, {}),
        Credential("nothing + project_id a", None, {}, {"project_id": aid}),
        Credential("wrong secret", None, _basic("0" * 32), {}),
        Credential("a secret with a prefix", None, _basic(a.api_secret + "x"), {}),
        Credential("a secret truncated", None, _basic(a.api_secret[:-1]), {}),
    ]
    yield server, a, b, credentials


def _params(credential: Credential, a: Project, b: Project) -> dict[str, str]:
    params = {"from_date": DAY, "to_date": DAY, "event": '["ev"]'}
    extra = dict(credential.params)
    legacy = extra.pop("legacy", None)
    params.update(extra)
    if legacy is not None:
        params = _signed(a if legacy == "a" else b, params)
    return params


def test_no_credential_reads_another_projects_data(
    world: tuple[LiveServer, Project, Project, list[Credential]],
) -> None:
    server, a, b, credentials = world
    cases = 0
    for path in READ_PATHS:
        for credential in credentials:
            for method in ("GET", "POST"):
                params = _params(credential, a, b)
                kwargs = {"params": params} if method == "GET" else {"data": params}
                response = requests.request(
                    method, server.base_url + path, headers=credential.headers, timeout=30, **kwargs
                )
                cases += 1
                assert response.status_code < 500, (path, credential.name, response.text)
                leaked = MARK_A in response.text or PROP_A in response.text
                if credential.owner != "a":
                    assert not leaked, (path, credential.name, method)
                    if response.status_code >= 400:
                        assert set(response.json()) == {"request", "error"}
                elif path == "/api/2.0/export":
                    assert response.status_code == 200 and leaked, (credential.name, response.text)
    report("isolation_reads", cases=cases, paths=len(READ_PATHS), credential_kinds=len(credentials), leaks=0)


def test_no_credential_writes_into_another_project(
    world: tuple[LiveServer, Project, Project, list[Credential]],
) -> None:
    server, a, b, credentials = world
    cases = 0
    for endpoint in ("import", "track", "engage", "groups"):
        for credential in credentials:
            if credential.owner == "a" or "legacy" in credential.params:
                continue
            mark = f"written-by-{credential.name}-{endpoint}".replace(" ", "-")
            # The body names B's token (what B's credentials may write to) and project_id A.
            if endpoint in ("import", "track"):
                body: object = [
                    {
                        "event": "ev",
                        "properties": {
                            "time": TIME_S,
                            "distinct_id": "w",
                            "$insert_id": mark,
                            "token": b.token,
                            "m": mark,
                        },
                    }
                ]
            elif endpoint == "engage":
                body = [{"$token": b.token, "$distinct_id": "w", "$set": {"m": mark}}]
            else:
                body = [{"$token": b.token, "$group_key": "company", "$group_id": "w", "$set": {"m": mark}}]
            response = requests.post(
                f"{server.base_url}/{endpoint}",
                params={"project_id": str(a.project_id), "strict": "1"},
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json", **credential.headers},
                timeout=30,
            )
            cases += 1
            assert response.status_code < 500, (endpoint, credential.name, response.text)
    exported = requests.get(
        f"{server.base_url}/api/2.0/export",
        params={"from_date": DAY, "to_date": DAY},
        auth=(a.api_secret, ""),
    ).text
    profiles = requests.get(f"{server.base_url}/api/2.0/engage", auth=(a.api_secret, "")).text
    assert MARK_A in exported
    assert "written-by" not in exported
    assert "written-by" not in profiles
    report("isolation_writes", cases=cases, leaks=0)
