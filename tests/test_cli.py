"""The public CLI: JSON outputs, and projects created while `serve` runs are live at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from rawevents.storage.base import StoredEvent
from rawevents.storage.duckdb.store import DuckDBStore
from tests.live_server import LiveServer, free_port, serve_command
from tests.stores import store_setting


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAWEVENTS_")}
    return subprocess.run(
        [sys.executable, "-m", "rawevents.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_project_create_and_list_print_json(tmp_path: Path) -> None:
    created = _cli(
        "project", "create", "--name", "shop", "--timezone", "Europe/Berlin", "--data-dir", str(tmp_path)
    )
    assert created.returncode == 0, created.stderr
    project = json.loads(created.stdout)
    assert set(project) == {"project_id", "name", "token", "api_secret", "timezone", "id_merge"}
    assert project["id_merge"] == "simplified"
    assert (project["name"], project["timezone"]) == ("shop", "Europe/Berlin")
    listed = json.loads(_cli("project", "list", "--data-dir", str(tmp_path)).stdout)
    public = {k: v for k, v in project.items() if k != "api_secret"}
    assert listed == [{**public, "retention_days": 0, "legacy_signature": False}]
    # The secret is stored as a digest: even when asked for, it cannot be shown again.
    shown = json.loads(_cli("project", "list", "--show-secrets", "--data-dir", str(tmp_path)).stdout)
    assert shown == [{**listed[0], "api_secret": None}]
    assert project["api_secret"] not in (tmp_path / "registry.sqlite3").read_bytes().decode("latin-1")


def test_id_merge_is_chosen_at_creation_and_changes_only_without_events(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path))
    original = json.loads(_cli("project", "create", "--name", "o", "--id-merge", "original", *data).stdout)
    assert original["id_merge"] == "original"
    empty = json.loads(_cli("project", "create", "--name", "e", *data).stdout)
    changed = _cli(
        "project", "set-id-merge", "--project", str(empty["project_id"]), "--mode", "original", *data
    )
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["id_merge"] == "original"
    store = DuckDBStore(tmp_path, background_compaction=False)
    try:
        store.submit_events(
            [StoredEvent(original["project_id"], 1_700_000_000_000, "e", "u", "i1", 30, "{}\n")]
        ).result()
    finally:
        store.close()
    refused = _cli(
        "project", "set-id-merge", "--project", str(original["project_id"]), "--mode", "simplified", *data
    )
    assert refused.returncode != 0
    assert (
        f"project {original['project_id']} has events: its identity mode can no longer change"
        in refused.stderr
    )
    listed = {p["project_id"]: p["id_merge"] for p in json.loads(_cli("project", "list", *data).stdout)}
    assert listed == {original["project_id"]: "original", empty["project_id"]: "original"}
    bad = _cli("project", "create", "--name", "x", "--id-merge", "merged", *data)
    assert bad.returncode == 2 and "'merged' is not one of 'simplified', 'original'" in bad.stderr


def test_unknown_timezone_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli(
        "project", "create", "--name", "x", "--timezone", "Mars/Olympus", "--data-dir", str(tmp_path)
    )
    assert result.returncode == 2
    assert "unknown timezone 'Mars/Olympus'" in result.stderr


def test_service_account_create(tmp_path: Path) -> None:
    project = json.loads(_cli("project", "create", "--name", "p", "--data-dir", str(tmp_path)).stdout)
    result = _cli(
        "service-account", "create", "--project", str(project["project_id"]), "--data-dir", str(tmp_path)
    )
    account = json.loads(result.stdout)
    assert set(account) == {"username", "name", "secret", "projects", "created", "expires", "revoked"}
    assert account["projects"] == [project["project_id"]]
    missing = _cli("service-account", "create", "--project", "999", "--data-dir", str(tmp_path))
    assert missing.returncode == 2
    assert "no project with id 999" in missing.stderr


@pytest.mark.server
def test_project_created_while_serving_is_usable_without_restart(tmp_path: Path, store_kind: str) -> None:
    # On every store, the registry the CLI writes (--store) is the one the server reads.
    server = LiveServer(tmp_path / "data", store=store_setting(store_kind)).start()
    try:
        created = _cli(
            "project", "create", "--name", "late", "--data-dir", str(server.data_dir), "--store", server.store
        )
        assert created.returncode == 0, created.stderr
        project = json.loads(created.stdout)
        body = [{"event": "e", "properties": {"time": 1700000000, "distinct_id": "u", "$insert_id": "a1"}}]
        response = server.post("/import?strict=1", json=body, auth=(project["api_secret"], ""))
        assert response.status_code == 200, response.text
        assert response.json() == {"code": 200, "num_records_imported": 1, "status": "OK"}
    finally:
        server.stop()


@pytest.mark.server
def test_serve_demo_prints_a_ready_project(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        serve_command("--demo", "--data-dir", str(tmp_path), "--port", str(port)),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith("rawevents demo project: ")
        demo = json.loads(line.split(": ", 1)[1])
        assert demo["name"] == "demo" and demo["timezone"] == "UTC"
        # then the demo data is written, uvicorn's startup lines, "listening", and the demo's hints
        lines = [process.stderr.readline() for _ in range(6)]
        listening = [line for line in lines if line.startswith("rawevents listening on ")]
        assert listening == [f"rawevents listening on http://127.0.0.1:{port}\n"], lines
        assert lines[0].startswith("rawevents demo: writing 30 days of a shop's traffic"), lines
        for _ in range(100):
            try:
                assert requests.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            raise AssertionError("demo server did not answer")
    finally:
        process.terminate()
        process.communicate(timeout=10)  # reaps it and closes its pipe


def test_version() -> None:
    result = _cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == "rawevents, version 0.1.0"


def test_every_option_has_help() -> None:
    import click

    from rawevents.cli import cli

    def commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
        found: list[tuple[str, click.Command]] = []
        for name, command in group.commands.items():
            found.append((f"{prefix} {name}", command))
            if isinstance(command, click.Group):
                found += commands(command, f"{prefix} {name}")
        return found

    listed = commands(cli, "rawevents")
    assert {"rawevents export", "rawevents import", "rawevents serve", "rawevents project create"} <= {
        name for name, _ in listed
    }
    for name, command in listed:
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{name} {param.opts}"


def test_client_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    env_free = _cli("export", "--from", "2024-01-01", "--to", "2024-01-01", "--out", str(tmp_path))
    assert env_free.returncode == 2
    assert env_free.stderr.startswith("rawevents: no credentials: pass --secret or set RAWEVENTS_SECRET")
    url = f"http://127.0.0.1:{free_port()}"
    refused = _cli(
        "export",
        "--url",
        url,
        "--secret",
        "s",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01",
        "--out",
        str(tmp_path),
    )
    assert refused.returncode == 2
    assert (
        refused.stderr == f"rawevents: cannot connect to {url}: connection refused (is the server running?)\n"
    )
    bad_day = _cli(
        "export", "--secret", "s", "--from", "2024-13-01", "--to", "2024-01-01", "--out", str(tmp_path)
    )
    assert bad_day.returncode == 2 and "Invalid value for '--from'" in bad_day.stderr
    assert "Traceback" not in env_free.stderr + refused.stderr + bad_day.stderr
