"""`rawevents backup` of a live, ingesting server, and `restore` to byte-identical exports."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.admin.helpers import cli, cli_json, event, export, import_events, live, set_profiles
from tests.export.helpers import basic

DAY = "2024-05-01"
T0 = 1714521600
BATCH = 200

pytestmark = pytest.mark.server  # every test here starts a server process


def _insert_ids(body: bytes) -> list[str]:
    return [orjson.loads(line)["properties"]["$insert_id"] for line in body.splitlines()]


def test_backup_while_ingesting_restores_the_snapshot_exactly(tmp_path: Path) -> None:
    live_dir, restored_dir, backup_dir = tmp_path / "live", tmp_path / "restored", tmp_path / "backup"
    with live(live_dir) as server:
        project = server.create_project("busy")
        quiet = server.create_project("quiet", "America/New_York")
        assert project.api_secret is not None and quiet.api_secret is not None
        import_events(
            server, quiet.api_secret, [event(f"q{i}", "e", T0 + 3600 * 5 + i, f"q{i}") for i in range(300)]
        )
        set_profiles(server, quiet.token, {"q1": {"plan": "pro"}, "q2": {"plan": "free", "n": [1, 2]}})

        acked: list[int] = []  # batch numbers, in acknowledgement order (one sequential client)
        stop = threading.Event()

        def ingest() -> None:
            batch = 0
            while not stop.is_set():
                events = [
                    event(f"u{i % 7}", "tick", T0 + (batch * BATCH + i) % 80000, f"b{batch}-{i}", batch=batch)
                    for i in range(BATCH)
                ]
                import_events(server, project.api_secret or "", events)
                acked.append(batch)
                batch += 1

        client = threading.Thread(target=ingest)
        client.start()
        try:
            while len(acked) < 5:
                time.sleep(0.01)
            acked_before = len(acked)
            manifest = cli_json("backup", "--out", str(backup_dir), "--data-dir", str(live_dir))
            time.sleep(0.5)  # ingestion goes on after the snapshot
        finally:
            stop.set()
            client.join()
        live_busy = export(server, project.api_secret, DAY, DAY)
        live_quiet = export(server, quiet.api_secret, DAY, DAY)
        live_profiles = server.get("/api/2.0/engage", headers=basic(quiet.api_secret)).json()

    assert sorted(p.name for p in backup_dir.iterdir()) == ["events", "manifest.json", "registry.sqlite3"]
    assert backup_dir.stat().st_mode & 0o077 == 0
    restored = cli_json("restore", "--from", str(backup_dir), "--data-dir", str(restored_dir))
    assert restored == {k: v for k, v in manifest.items() if k != "out"}

    with live(restored_dir) as copy:  # the same credentials work: the registry came along
        snap_busy = export(copy, project.api_secret, DAY, DAY)
        assert export(copy, quiet.api_secret, DAY, DAY) == live_quiet
        assert copy.get("/api/2.0/engage", headers=basic(quiet.api_secret)).json() == live_profiles

    in_snapshot = set(_insert_ids(snap_busy))
    # Byte-identical to the live export restricted to the snapshot's rows...
    assert snap_busy == b"".join(
        line
        for line in live_busy.splitlines(keepends=True)
        if orjson.loads(line)["properties"]["$insert_id"] in in_snapshot
    )
    # ...whole batches, every one acknowledged before the backup began, and a prefix of them.
    batches = sorted({int(iid[1:].split("-")[0]) for iid in in_snapshot})
    assert len(in_snapshot) == len(batches) * BATCH == manifest["events"] - 300
    assert batches == list(range(len(batches)))
    assert len(batches) >= acked_before
    assert len(batches) < len(acked)


def test_restore_refuses_a_directory_in_use(tmp_path: Path) -> None:
    with live(tmp_path / "live") as server:
        server.create_project()
        cli_json("backup", "--out", str(tmp_path / "b"), "--data-dir", str(tmp_path / "live"))
        again = cli("backup", "--out", str(tmp_path / "b"), "--data-dir", str(tmp_path / "live"), check=False)
        assert again.returncode == 2 and "is not empty" in again.stderr
    refused = cli("restore", "--from", str(tmp_path / "b"), "--data-dir", str(tmp_path / "live"), check=False)
    assert refused.returncode == 2
    assert "already holds a registry: restore into an empty directory" in refused.stderr
    not_backup = cli("restore", "--from", str(tmp_path), "--data-dir", str(tmp_path / "new"), check=False)
    assert not_backup.returncode == 2
    assert "is not a rawevents backup" in not_backup.stderr
