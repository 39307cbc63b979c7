"""Hashed secrets, rotation, service-account revocation and expiry, the registry migration and
the demo project, against a live server and the public CLI."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from rawevents.auth import (
    INVALID_SECRET,
    INVALID_SERVICE_ACCOUNT,
    REVOKED_SERVICE_ACCOUNT,
    ServiceAccountUnauthorized,
    authenticate_query,
)
from rawevents.storage.duckdb.registry import SqliteRegistry
from tests.admin.helpers import cli, cli_json, event, live
from tests.export.helpers import basic
from tests.live_server import LiveServer, free_port, serve_command

EXPORT = "/api/2.0/export?from_date=2024-05-01&to_date=2024-05-01"


def _status(server: LiveServer, headers: dict[str, str], query: str = "") -> tuple[int, str]:
    response = server.get(EXPORT + query, headers=headers)
    return response.status_code, "" if response.status_code == 200 else response.json()["error"]


@pytest.mark.server
def test_secrets_are_hashed_rotated_and_revoked_on_a_live_server(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    project = cli_json("project", "create", "--name", "p", "--data-dir", data)
    account = cli_json(
        "service-account", "create", "--project", str(project["project_id"]), "--data-dir", data
    )
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("registry.sqlite3*"))
    for secret in (project["api_secret"], account["secret"]):
        assert secret.encode() not in raw
        assert hashlib.sha256(secret.encode()).hexdigest().encode() in raw

    with live(tmp_path / "data") as server:
        pid = f"&project_id={project['project_id']}"
        sa = basic(account["username"], account["secret"])
        assert _status(server, basic(project["api_secret"])) == (200, "")
        assert _status(server, sa, pid) == (200, "")

        # Rotation while serving: the new secret works at once, the old one no longer.
        rotated = cli_json(
            "project", "rotate-secret", "--project", str(project["project_id"]), "--data-dir", data
        )
        assert rotated["api_secret"] != project["api_secret"]
        assert _status(server, basic(project["api_secret"])) == (401, INVALID_SECRET)
        assert _status(server, basic(rotated["api_secret"])) == (200, "")

        # A wrong service-account secret is told so, on the export and on /import.
        wrong = basic(account["username"], "nope")
        assert _status(server, wrong, pid) == (401, INVALID_SERVICE_ACCOUNT)
        body = [event("u", "e", 1714567200, "i1")]
        response = server.post(f"/import?strict=1{pid}", json=body, headers=wrong)
        assert (response.status_code, response.json()) == (
            401,
            {"code": 401, "error": INVALID_SERVICE_ACCOUNT, "status": "Unauthorized"},
        )

        listed = cli_json("service-account", "list", "--data-dir", data)
        assert [a["username"] for a in listed] == [account["username"]]
        assert "secret" not in listed[0] and listed[0]["revoked"] is None
        revoked = cli_json("service-account", "revoke", "--username", account["username"], "--data-dir", data)
        assert revoked["revoked"] is not None
        assert _status(server, sa, pid) == (401, REVOKED_SERVICE_ACCOUNT)
        response = server.post(f"/import?strict=1{pid}", json=body, headers=sa)
        assert response.status_code == 401
        assert response.json()["error"] == REVOKED_SERVICE_ACCOUNT
        missing = cli("service-account", "revoke", "--username", "ghost", "--data-dir", data, check=False)
        assert (missing.returncode, missing.stderr.strip()) == (2, "rawevents: no service account 'ghost'")


def test_service_account_expiry_is_honoured(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path)
    project = registry.create_project("p")
    account = registry.create_service_account(project.project_id, "etl", expires_days=2)
    assert account.secret is not None and account.expires_at_ms is not None
    header = basic(account.username, account.secret)["Authorization"]
    params = {"project_id": str(project.project_id)}
    assert authenticate_query(registry, header, params).project_id == project.project_id
    assert (
        authenticate_query(registry, header, params, now=time.time() + 86400).project_id == project.project_id
    )
    with pytest.raises(ServiceAccountUnauthorized, match="service account expired on 20"):
        authenticate_query(registry, header, params, now=time.time() + 2 * 86400 + 1)
    listed = registry.list_service_accounts(project.project_id)
    assert listed[0].public_dict()["expires"] is not None


def test_expires_must_be_positive(tmp_path: Path) -> None:
    data = str(tmp_path)
    project = cli_json("project", "create", "--name", "p", "--data-dir", data)
    bad = cli(
        "service-account",
        "create",
        "--project",
        str(project["project_id"]),
        "--expires",
        "0",
        "--data-dir",
        data,
        check=False,
    )
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "rawevents: --expires must be a positive number of days",
    )


def test_legacy_signature_keeps_the_plaintext_only_when_asked(tmp_path: Path) -> None:
    data = str(tmp_path)
    signing = cli_json("project", "create", "--name", "old-scripts", "--legacy-signature", "--data-dir", data)
    plain = cli_json("project", "create", "--name", "new", "--data-dir", data)
    shown = {p["name"]: p for p in cli_json("project", "list", "--show-secrets", "--data-dir", data)}
    assert shown["old-scripts"]["api_secret"] == signing["api_secret"]
    assert shown["new"]["api_secret"] is None
    hidden = cli_json("project", "list", "--data-dir", data)
    assert all("api_secret" not in p for p in hidden)
    # Turning it off on rotation drops the plaintext.
    cli_json(
        "project",
        "rotate-secret",
        "--project",
        str(signing["project_id"]),
        "--no-legacy-signature",
        "--data-dir",
        data,
    )
    shown = {p["name"]: p for p in cli_json("project", "list", "--show-secrets", "--data-dir", data)}
    assert shown["old-scripts"]["api_secret"] is None
    assert shown["old-scripts"]["legacy_signature"] is False
    assert plain["project_id"] != signing["project_id"]


V1_SCHEMA = """
CREATE TABLE projects (
    project_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, token TEXT NOT NULL UNIQUE,
    api_secret TEXT NOT NULL, secret_digest TEXT NOT NULL UNIQUE, timezone TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE service_accounts (
    username TEXT PRIMARY KEY, name TEXT NOT NULL, secret TEXT NOT NULL, created_at_ms INTEGER NOT NULL
);
CREATE TABLE service_account_grants (
    username TEXT NOT NULL REFERENCES service_accounts(username),
    project_id INTEGER NOT NULL REFERENCES projects(project_id),
    PRIMARY KEY (username, project_id)
);
"""


@pytest.mark.server
def test_a_version_1_registry_is_migrated_to_digests(tmp_path: Path) -> None:
    """A registry written by the first release (plaintext secrets) keeps working, hashed."""
    secret, sa_secret = "5ec7e7" * 5 + "ab", "service-account-secret-value-1"
    conn = sqlite3.connect(tmp_path / "registry.sqlite3")
    conn.executescript(V1_SCHEMA)
    conn.execute(
        "INSERT INTO projects VALUES (1, 'old', 'tok1', ?, ?, 'UTC', 0)",
        (secret, hashlib.sha256(secret.encode()).hexdigest()),
    )
    conn.execute(
        "INSERT INTO service_accounts VALUES ('etl.1.mp-service-account', 'etl', ?, 0)", (sa_secret,)
    )
    conn.execute("INSERT INTO service_account_grants VALUES ('etl.1.mp-service-account', 1)")
    conn.commit()
    conn.close()

    with live(tmp_path) as server:
        assert _status(server, basic(secret)) == (200, "")
        sa = basic("etl.1.mp-service-account", sa_secret)
        assert _status(server, sa, "&project_id=1") == (200, "")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("registry.sqlite3*"))
    assert secret.encode() not in raw and sa_secret.encode() not in raw
    listed = cli_json("project", "list", "--show-secrets", "--data-dir", str(tmp_path))
    assert listed == [
        {
            "project_id": 1,
            "name": "old",
            "token": "tok1",
            "timezone": "UTC",
            "id_merge": "simplified",  # registries from before identity merge get the default
            "retention_days": 0,
            "legacy_signature": False,
            "api_secret": None,
        }
    ]


def _demo_lines(data_dir: Path) -> list[str]:
    """What `serve --demo` prints before it listens."""
    port = free_port()
    command = serve_command("--demo", "--data-dir", str(data_dir))
    lines: list[str] = []
    with subprocess.Popen(
        [*command, "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RAWEVENTS_INGEST_PROCESSES": "0"},
    ) as process:
        assert process.stderr is not None
        try:
            while not (line := process.stderr.readline()).startswith("rawevents listening"):
                assert line, "".join(lines)
                lines.append(line)
        finally:
            process.terminate()
            process.wait(10)
    return lines


@pytest.mark.server
def test_demo_prints_its_secret_once_then_says_how_to_rotate(tmp_path: Path) -> None:
    first = _demo_lines(tmp_path)
    created = json.loads(first[0].split(": ", 1)[1])
    assert {"project_id", "token", "api_secret"} <= set(created)
    again = _demo_lines(tmp_path)
    shown = json.loads(again[0].split(": ", 1)[1])
    assert shown == {k: v for k, v in created.items() if k != "api_secret"}
    assert f"rawevents project rotate-secret --project {created['project_id']}" in again[1]
