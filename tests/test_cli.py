"""The public CLI: JSON outputs, and projects created while `serve` runs are live at once."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from rawevents.projects import Project
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


# -- export and import without traps (issue #24) -----------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Project]]:
    """A server whose project (in UTC-12, always a day behind UTC+14) has 3 events on 2024-05-01
    and 2 on 2024-05-02."""
    live = LiveServer(tmp_path_factory.mktemp("cli-export")).start()
    try:
        project = live.create_project("cli-export", "Etc/GMT+12")
        day = int(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC).timestamp())
        times = [day, day + 60, day + 120, day + 86400, day + 86460]
        body = [
            {"event": "e", "properties": {"time": t, "distinct_id": "u", "$insert_id": f"i{t}", "n": n}}
            for n, t in enumerate(times)
        ]
        answer = live.post("/import?strict=1", json=body, auth=(project.api_secret, ""))
        assert answer.status_code == 200, answer.text
        yield live, project
    finally:
        live.stop()


def _export(shop: tuple[LiveServer, Project], *args: str) -> subprocess.CompletedProcess[str]:
    live, project = shop
    days = ("--from", "2024-05-01", "--to", "2024-05-02")
    return _cli("export", "--url", live.base_url, "--secret", project.api_secret, *days, *args)


@pytest.mark.server
def test_export_writes_the_format_and_layout_its_out_name_says(
    shop: tuple[LiveServer, Project], tmp_path: Path
) -> None:
    for name in ("x.jsonl", "x.jsonl.gz", "x.csv", "x.parquet"):
        done = _export(shop, "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        assert "5 events in 1 file (" in done.stderr
    assert [
        json.loads(line)["properties"]["n"] for line in (tmp_path / "x.jsonl").read_bytes().splitlines()
    ] == [
        0,
        1,
        2,
        3,
        4,
    ]  # plain JSONL, not gzip
    assert len(gzip.decompress((tmp_path / "x.jsonl.gz").read_bytes()).splitlines()) == 5
    assert (tmp_path / "x.csv").read_text().startswith("event,time,distinct_id,")
    assert (tmp_path / "x.parquet").is_file() and pq.read_table(tmp_path / "x.parquet").num_rows == 5
    # A name without a format's extension is a directory of day files, jsonl.gz unless asked.
    assert _export(shop, "--out", str(tmp_path / "days")).returncode == 0
    assert sorted(p.name for p in (tmp_path / "days").iterdir()) == [
        "2024-05-01.jsonl.gz",
        "2024-05-02.jsonl.gz",
    ]
    assert _export(shop, "--out", str(tmp_path / "typed"), "--format", "parquet").returncode == 0
    assert sorted(p.name for p in (tmp_path / "typed").iterdir()) == [
        "2024-05-01.parquet",
        "2024-05-02.parquet",
    ]


@pytest.mark.server
def test_export_refuses_what_would_fail_before_writing_anything(
    shop: tuple[LiveServer, Project], tmp_path: Path
) -> None:
    tomorrow = (dt.datetime.now(dt.timezone(dt.timedelta(hours=-12))) + dt.timedelta(days=1)).date()
    out = str(tmp_path / "out" / "days")
    refused = {
        (
            "--out",
            str(tmp_path / "x.parquet"),
            "--format",
            "csv",
        ): "x.parquet names a parquet file, but --format is csv",
        ("--out", str(tmp_path / "x.jsonl"), "--split", "day"): "x.jsonl names one file, but --split day",
        ("--out", str(tmp_path / "x.json")): "x.json: not an output format's extension",
        ("--out", out, "--utc", "--timezone", "Europe/Berlinn"): "unknown timezone 'Europe/Berlinn'",
        ("--out", out, "--timezone", "Europe/Berlin"): "--timezone is the project's zone for --utc",
        ("--out", out, "--to", "2999-01-01"): "--to 2999-01-01 is in the future",
        # Not after today everywhere, but in the project's zone: the server says so, first.
        ("--out", out, "--to", tomorrow.isoformat()): "to_date cannot be later than today",
        ("--out", out, "--where", 'properties["n"] >'): "HTTP 400",
        ("--out", out, "--secret", "wrong"): "HTTP 401",
    }
    for args, message in refused.items():
        done = _export(shop, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert list(tmp_path.iterdir()) == [], args


@pytest.mark.server
def test_import_checks_its_zone_and_counts_files(shop: tuple[LiveServer, Project], tmp_path: Path) -> None:
    live, project = shop
    assert _export(shop, "--out", str(tmp_path / "days")).returncode == 0
    files = sorted(str(p) for p in (tmp_path / "days").iterdir())
    client = ("--url", live.base_url, "--secret", project.api_secret)
    bad = _cli("import", *files[:1], *client, "--timezone", "Mars/Olympus")
    assert bad.returncode == 2 and bad.stderr == "rawevents: unknown timezone 'Mars/Olympus'\n"
    one = _cli("import", files[0], *client)
    assert one.returncode == 0 and "3 events imported, 0 failed, 1 file, " in one.stderr
    two = _cli("import", *files, *client)
    assert two.returncode == 0 and "5 events imported, 0 failed, 2 files, " in two.stderr


def test_an_optional_store_not_installed_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAWEVENTS_")}
    blocked = "import sys; sys.modules['chdb'] = None; from rawevents.cli import main; sys.exit(main())"
    for command in (("serve", "--store", "chdb"), ("migrate", "--from", "duckdb", "--to", "chdb")):
        done = subprocess.run(
            [sys.executable, "-c", blocked, *command, "--data-dir", str(tmp_path / "data")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr == "rawevents: chdb is not installed: pip install 'rawevents[clickhouse]'\n"
