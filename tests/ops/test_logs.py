"""Server logs through a real server: access lines on by default (text or JSON), never a secret
whatever auth style a client used, and a line for every dropped batch."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests

from rawevents.auth import signature
from rawevents.logconfig import REDACTED, JsonFormatter, redact_target
from tests.export.helpers import basic
from tests.live_server import LiveServer
from tests.ops.helpers import wait_for

NOW = int(time.time())
DAY = time.strftime("%Y-%m-%d", time.gmtime(NOW))
EXPORT = f"/api/2.0/export?from_date={DAY}&to_date={DAY}"


@pytest.fixture(scope="module", params=["text", "json"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"RAWEVENTS_INGEST_PROCESSES": "0", "RAWEVENTS_LOG_LEVEL": "debug"}
    data_dir = tmp_path_factory.mktemp(f"logs-{request.param}") / "data"
    server = LiveServer(data_dir, env=env, args=["--log-format", request.param]).start()
    yield server
    server.stop()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def event(name: str, **properties: Any) -> dict[str, Any]:
    return {"event": name, "properties": {"time": NOW, "distinct_id": "u1", **properties}}


def use_every_auth_style(live: LiveServer) -> list[str]:
    """Ingest and export with each credential style a client may send; returns every secret sent."""
    # Kept for legacy signatures, so the signed request (which needs the plaintext) is exercised.
    project = live.registry.create_project("logs", legacy_signature=True)
    account = live.registry.create_service_account(project.project_id, "etl")
    wrong = "f" * 32  # a well-formed secret that is no project's
    body = orjson.dumps([event("Imported")])
    as_account = basic(account.username, account.secret)

    # /import: project secret, service account + project_id, token as username, legacy api_key.
    assert live.post("/import", data=body, headers=basic(project.api_secret)).text == "1"
    imported = live.post(f"/import?project_id={project.project_id}", data=body, headers=as_account)
    assert imported.text == "1"
    assert live.post("/import", data=body, headers=basic(project.token)).text == "1"
    assert live.post(f"/import?api_key={project.token}", data=body).text == "1"
    assert live.post("/import", data=body, headers=basic(wrong)).status_code == 401
    # /track with the event (and token) in the query string, as old GET clients send it.
    track = b64(orjson.dumps(event("Tracked", token=project.token)).decode())
    assert live.get(f"/track?data={track}").text == "1"

    # Export: secret (Basic), service account + project_id, legacy signature, api_secret in the URL.
    assert live.get(EXPORT, headers=basic(project.api_secret)).status_code == 200
    by_account = live.get(f"{EXPORT}&project_id={project.project_id}", headers=as_account)
    assert by_account.status_code == 200
    expire = str(int(time.time()) + 600)  # from now: the suite may run long after import
    params = {"from_date": DAY, "to_date": DAY, "api_key": project.token, "expire": expire}
    sig = signature(params, project.api_secret)
    signed = requests.get(live.base_url + "/api/2.0/export", params={**params, "sig": sig}, timeout=30)
    assert signed.status_code == 200
    assert live.get(f"{EXPORT}&api_secret={project.api_secret}").status_code == 401
    assert live.get(EXPORT, headers={"Authorization": f"Bearer {account.secret}"}).status_code == 401
    return [
        project.api_secret,
        project.token,
        account.secret,
        wrong,
        sig,
        track,
        b64(f"{project.api_secret}:"),
        b64(f"{account.username}:{account.secret}"),
        b64(f"{project.token}:"),
    ]


def test_no_secret_reaches_the_log_whatever_the_auth_style(live: LiveServer) -> None:
    secrets = use_every_auth_style(live)
    wait_for(lambda: live.log_text().count("/api/2.0/export") >= 5)
    logs = live.log_text()
    assert [secret for secret in secrets if secret in logs] == []
    # The requests were logged (access log on by default), with credentials redacted.
    assert logs.count("/import") >= 5
    assert f"api_secret={REDACTED}" in logs and f"sig={REDACTED}" in logs
    assert f"/track?data={REDACTED}" in logs


def test_access_lines_in_the_chosen_format(live: LiveServer) -> None:
    assert live.get("/healthz").status_code == 200
    wait_for(lambda: "/healthz" in live.log_text())
    line = next(line for line in live.log_text().splitlines() if "/healthz" in line)
    if "--log-format" in live.args and live.args[-1] == "json":
        entry = orjson.loads(line)
        assert entry["logger"] == "uvicorn.access" and entry["level"] == "INFO"
        assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/healthz", 200)
        assert entry["client"].startswith("127.0.0.1:") and entry["time"].endswith("+00:00")
    else:
        assert "uvicorn.access: 127.0.0.1:" in line and '"GET /healthz HTTP/1.1" 200' in line


def test_every_dropped_batch_is_logged_with_reason_and_count(live: LiveServer) -> None:
    payload = orjson.dumps([event(f"Lost{i}", token="no-such-token") for i in range(3)])
    assert live.post("/track", data=payload).text == "1"  # answered 1, as Mixpanel does
    wait_for(lambda: "/track: 3 of 3 events not stored (unknown_token=3)" in live.log_text())
    line = next(line for line in live.log_text().splitlines() if "unknown_token=3" in line)
    assert "WARNING" in line
    assert "no-such-token" not in line


@pytest.mark.server
def test_access_log_can_be_turned_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    env = {"RAWEVENTS_INGEST_PROCESSES": "0", "RAWEVENTS_ACCESS_LOG": "false"}
    server = LiveServer(tmp_path_factory.mktemp("quiet") / "data", env=env).start()
    try:
        payload = orjson.dumps([event("Lost", token="no-such-token")])
        assert server.post("/track", data=payload).text == "1"
        wait_for(lambda: "unknown_token=1" in server.log_text())  # drops are still logged
        assert "uvicorn.access" not in server.log_text() and "POST /track" not in server.log_text()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/track", "/track"),
        ("/track?verbose=1&ip=1", "/track?verbose=1&ip=1"),
        ("/x?api_secret=s3cr3t&from_date=2024-01-01", f"/x?api_secret={REDACTED}&from_date=2024-01-01"),
        (
            "/x?API_SECRET=a&Sig=b&api%5Fkey=c",
            f"/x?API_SECRET={REDACTED}&Sig={REDACTED}&api%5Fkey={REDACTED}",
        ),
        ("/x?secret=&token=t&password=p", f"/x?secret={REDACTED}&token={REDACTED}&password={REDACTED}"),
        ("/track?data=eyJ9&callback=cb", f"/track?data={REDACTED}&callback=cb"),
        ("/x?sig&a=1", "/x?sig&a=1"),  # a name without a value carries nothing to hide
    ],
)
def test_query_string_credentials_are_redacted(target: str, expected: str) -> None:
    assert redact_target(target) == expected


def test_json_lines_carry_exceptions() -> None:
    import logging
    import sys

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "rawevents.x", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info()
        )
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed: x" and entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"]
