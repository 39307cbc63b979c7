"""Identity rows through the data lifecycle (docs/identity.md, "GDPR requests, retention,
deletion, backup"), on every store: a GDPR deletion or retrieval naming one id of a cluster covers
the whole cluster; `/engage` updates follow the link; retention drops a mapping with the events;
`project delete` removes the project's rows; backup + restore (DuckDB) and `migrate` keep them."""

from __future__ import annotations

import copy
import io
import itertools
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rawevents.cli import main
from rawevents.identity import BEFORE_IDENTITY
from rawevents.ingest.events import EventContext, normalize_events
from rawevents.ingest.profiles import apply_update
from rawevents.projects import Project
from rawevents.settings import load_config
from rawevents.storage import open_store
from rawevents.storage.base import ExportPlan, ProfileUpdate
from rawevents.storage.duckdb.registry import SqliteRegistry
from rawevents.timeutil import TimeSegment
from tests.admin.helpers import bearer, cli_json, live, profile_ids, set_profiles, wait_for
from tests.export.helpers import basic
from tests.live_server import LiveServer
from tests.stores import store_setting

NOW = int(time.time())
DAY = 86_400
WHOLE = [TimeSegment((NOW - 30 * DAY) * 1000, (NOW + DAY) * 1000, 0)]
USER = "user-42"
PROJECT_IDS = itertools.count(1)
DELETIONS = "/api/app/data-deletions/v3.0/"
RETRIEVALS = "/api/app/data-retrievals/v3.0/"


def ev(insert_id: str, time_s: int, name: str = "page", **props: Any) -> dict[str, Any]:
    return {"event": name, "properties": {"time": time_s, "$insert_id": insert_id, **props}}


def device(
    insert_id: str, time_s: int, d: str, user: str | None = None, name: str = "page"
) -> dict[str, Any]:
    """An event of device `d` (with `$user_id` when given: the link), as SDKs send them."""
    props: dict[str, Any] = {"$device_id": d}
    if user is not None:
        props["$user_id"] = user
    return ev(insert_id, time_s, name, **props)


# One person (USER, devices D1, D2, D3) and another (user-7, device D9), and someone unlinked.
# D3's profile is set before D3 is linked: it stays on `$device:D3` (a profile of the cluster).
BEFORE_LINKS = [
    device("d1-a", NOW - 3 * DAY, "D1"),
    device("d1-b", NOW - 2 * DAY, "D1"),
    device("d3-a", NOW - 2 * DAY, "D3"),
    device("d9-a", NOW - 2 * DAY, "D9"),
    ev("x", NOW - 2 * DAY, distinct_id="stranger"),
]
LINKS = [
    device("d1-login", NOW - DAY, "D1", USER, "login"),
    ev("buy", NOW - DAY + 1, "buy", **{"$user_id": USER}),
    device("d2-login", NOW - DAY + 2, "D2", USER, "login"),
    device("d2-a", NOW - DAY + 3, "D2"),
    device("d3-login", NOW - DAY + 4, "D3", USER, "login"),
    device("d9-login", NOW - DAY + 5, "D9", "user-7", "login"),
]
CLUSTER = {"d1-a", "d1-b", "d3-a", "d1-login", "buy", "d2-login", "d2-a", "d3-login"}
CLUSTER_MAPPINGS = [(f"$device:{d}", USER) for d in ("D1", "D2", "D3")]


# -- the store contract ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path, store_kind: str) -> Iterator[Any]:
    """A store of its own per test (chdb runs one embedded engine per process and path: the
    migration test below opens others)."""
    opened = open_store(
        load_config(
            {}, data_dir=str(tmp_path / "data"), store=store_setting(store_kind), commit_interval_ms=0
        )
    )
    yield opened
    opened.close()


def new_project() -> Project:
    return Project(next(PROJECT_IDS), "p", "t", None, "UTC")


def submit(store: Any, project: Project, events: list[dict[str, Any]]) -> None:
    now_ms = int(time.time() * 1000)
    ctx = EventContext(
        endpoint="import",
        strict=True,
        received_ms=now_ms,
        processed_ms=now_ms,
        host="h",
        ip_fallback=False,
        client_ip=None,
    )
    batch = normalize_events(copy.deepcopy(events), ctx, project=project)
    assert batch.failed == []
    store.submit_events(batch.table()).result()


def set_profile(store: Any, project: Project, distinct_id: str, **props: Any) -> None:
    update = ProfileUpdate(distinct_id, "$set", props, int(time.time() * 1000))
    store.submit_profile_updates(project.project_id, "user", "", [update], apply_update).result()


def exported(store: Any, project: Project, *, resolve: bool = True) -> list[bytes]:
    plan = ExportPlan(project.project_id, WHOLE, resolve_identity=resolve)
    return b"".join(bytes(chunk) for chunk in store.export_chunks(plan)).splitlines(keepends=True)


def insert_id(line: bytes) -> str:
    return str(orjson.loads(line)["properties"]["$insert_id"])


def ids_of(lines: list[bytes]) -> dict[str, tuple[str, str | None]]:
    """`$insert_id` → (`distinct_id`, `$distinct_id_before_identity`)."""
    found = {}
    for line in lines:
        props = orjson.loads(line)["properties"]
        found[props["$insert_id"]] = (props["distinct_id"], props.get(BEFORE_IDENTITY))
    return found


def profiles(store: Any, project: Project) -> dict[str, dict[str, Any]]:
    return {
        pid: {k: v for k, v in props.items() if not k.startswith("$")}
        for pid, props in store.profiles(project.project_id, "user")
    }


def seeded(store: Any) -> Project:
    project = new_project()
    submit(store, project, BEFORE_LINKS)
    set_profile(store, project, "$device:D3", early=True)  # before D3 is linked: stays there
    submit(store, project, LINKS)
    set_profile(store, project, USER, name="Ada")
    set_profile(store, project, "user-7", name="Bob")
    set_profile(store, project, "stranger", name="Cy")
    assert store.identity_mappings(project.project_id) == [*CLUSTER_MAPPINGS, ("$device:D9", "user-7")]
    assert profiles(store, project) == {
        "$device:D3": {"early": True},
        USER: {"name": "Ada"},
        "user-7": {"name": "Bob"},
        "stranger": {"name": "Cy"},
    }
    return project


def test_a_retrieval_naming_a_device_returns_the_whole_cluster_resolved(store: Any) -> None:
    project = seeded(store)
    resolved = exported(store, project)
    cluster_lines = [line for line in resolved if insert_id(line) in CLUSTER]
    assert {ids_of(cluster_lines)[i][0] for i in CLUSTER} == {USER}
    for named in (["$device:D1"], ["$device:D2"], [USER], ["$device:D3", "$device:D1"]):
        got = b"".join(bytes(chunk) for chunk in store.user_events(project.project_id, named))
        assert got == b"".join(cluster_lines), named  # the resolved export lines, in order
    # Someone else's device: that cluster only; an id in no cluster: its own events.
    d9 = b"".join(bytes(chunk) for chunk in store.user_events(project.project_id, ["$device:D9"]))
    assert ids_of(d9.splitlines()) == {"d9-a": ("user-7", "$device:D9"), "d9-login": ("user-7", None)}
    alone = b"".join(bytes(chunk) for chunk in store.user_events(project.project_id, ["stranger"]))
    assert list(ids_of(alone.splitlines())) == ["x"]


def test_a_deletion_naming_a_device_forgets_the_whole_cluster(store: Any) -> None:
    project = seeded(store)
    before = exported(store, project)
    kept_as_ingested = [
        line for line in exported(store, project, resolve=False) if insert_id(line) not in CLUSTER
    ]

    deleted = store.delete_users(project.project_id, ["$device:D1"])
    assert (deleted.events, deleted.profiles) == (len(CLUSTER), 2)  # USER's and `$device:D3`'s

    after = exported(store, project)
    assert after == [line for line in before if insert_id(line) not in CLUSTER]
    assert exported(store, project, resolve=False) == kept_as_ingested
    assert store.identity_mappings(project.project_id) == [("$device:D9", "user-7")]
    assert profiles(store, project) == {"user-7": {"name": "Bob"}, "stranger": {"name": "Cy"}}
    assert list(store.user_events(project.project_id, [USER])) == []

    # The forgotten device is a stranger now: its new events are its own, and it can link anew.
    submit(store, project, [device("d1-new", NOW, "D1"), device("d1-relink", NOW, "D1", "user-99")])
    assert store.identity_mappings(project.project_id) == [
        ("$device:D1", "user-99"),
        ("$device:D9", "user-7"),
    ]
    assert ids_of(exported(store, project))["d1-new"] == ("user-99", "$device:D1")


def test_retention_drops_a_mapping_with_the_last_events_that_need_it(store: Any) -> None:
    project = new_project()
    old, recent = NOW - 10 * DAY, NOW - DAY
    submit(
        store,
        project,
        [
            device("d1-anon", old, "D1"),  # link and device events all expire: the row goes
            device("d1-link", old, "D1", USER),
            device("d2-link", old, "D2", USER),  # the link expires, a kept event is D2's: stays
            device("d2-anon", recent, "D2"),
            device("d3-anon", old, "D3"),  # the link is kept: stays
            device("d3-link", recent, "D3", USER),
            device("d4-link", old, "D4", USER),  # D4 never sent an anonymous event: goes
            ev("kept", recent, **{"$user_id": USER}),
        ],
    )
    assert store.identity_mappings(project.project_id) == [
        (f"$device:{d}", USER) for d in ("D1", "D2", "D3", "D4")
    ]
    cutoff_ms = (NOW - 5 * DAY) * 1000
    assert store.drop_events_before(project.project_id, cutoff_ms) == 5
    assert store.identity_mappings(project.project_id) == [("$device:D2", USER), ("$device:D3", USER)]
    assert ids_of(exported(store, project)) == {
        "d2-anon": (USER, "$device:D2"),
        "d3-link": (USER, None),
        "kept": (USER, None),
    }
    # Again, later: nothing more to drop, the rows that are needed stay.
    assert store.drop_events_before(project.project_id, cutoff_ms) == 0
    assert store.identity_mappings(project.project_id) == [("$device:D2", USER), ("$device:D3", USER)]


def test_project_deletion_removes_its_identity_rows(store: Any) -> None:
    doomed, kept = seeded(store), seeded(store)
    kept_lines = exported(store, kept)
    deleted = store.delete_project(doomed.project_id)
    assert (deleted.events, deleted.profiles) == (len(BEFORE_LINKS) + len(LINKS), 4)
    assert store.identity_mappings(doomed.project_id) == []
    assert exported(store, doomed) == []
    assert store.identity_mappings(kept.project_id) == [*CLUSTER_MAPPINGS, ("$device:D9", "user-7")]
    assert exported(store, kept) == kept_lines
    # A project reusing nothing of it: a device event of the deleted project's id reads as sent.
    submit(store, doomed, [device("again", NOW, "D1")])
    assert ids_of(exported(store, doomed)) == {"again": ("$device:D1", None)}


# -- over HTTP: the GDPR API and /engage ------------------------------------------------------------


def http_export(server: LiveServer, project: Project, **params: str) -> bytes:
    days = {"from_date": time.strftime("%Y-%m-%d", time.gmtime(NOW - 30 * DAY))}
    days["to_date"] = time.strftime("%Y-%m-%d", time.gmtime(time.time()))
    response = server.get(
        "/api/2.0/export",
        params={**days, **params},
        headers={**basic(project.api_secret or ""), "Accept-Encoding": "identity"},
    )
    assert response.status_code == 200, response.text
    return response.content


def http_mappings(server: LiveServer, project: Project) -> list[dict[str, str]]:
    response = server.get("/api/rawevents/identity/mappings", headers=basic(project.api_secret or ""))
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def http_import(server: LiveServer, project: Project, events: list[dict[str, Any]]) -> None:
    response = server.post("/import?strict=1", json=events, headers=basic(project.api_secret or ""))
    assert response.status_code == 200, response.text


def http_seeded(server: LiveServer, name: str) -> Project:
    project = server.create_project(name)
    http_import(server, project, BEFORE_LINKS)
    set_profiles(server, project.token, {"$device:D3": {"early": True}})
    http_import(server, project, LINKS)
    set_profiles(server, project.token, {USER: {"name": "Ada"}, "user-7": {"name": "Bob"}})
    return project


def gdpr_task(server: LiveServer, project: Project, kind: str, distinct_ids: list[str]) -> dict[str, Any]:
    """Create a deletion or retrieval and wait for its success; returns its status `results`."""
    auth = bearer(project.api_secret or "")
    created = server.post(f"{kind}?token={project.token}", json={"distinct_ids": distinct_ids}, headers=auth)
    assert created.status_code == 201, created.text
    task_id = created.json()["results"]["task_id"]

    def done() -> Any:
        status = server.get(f"{kind}{task_id}?token={project.token}", headers=auth).json()["results"]
        return status if status["status"] not in ("PENDING", "STARTED") else None

    results: dict[str, Any] = wait_for(done)
    assert results["status"] == "SUCCESS", results
    return results


def retrieved(server: LiveServer, project: Project, distinct_ids: list[str]) -> zipfile.ZipFile:
    results = gdpr_task(server, project, RETRIEVALS, distinct_ids)
    download = server.get(
        results["results"].removeprefix(server.base_url), headers=bearer(project.api_secret or "")
    )
    assert download.status_code == 200, download.text
    return zipfile.ZipFile(io.BytesIO(download.content))


def test_gdpr_api_naming_a_device_covers_the_cluster(server: LiveServer) -> None:
    project = http_seeded(server, "identity-gdpr")
    before = http_export(server, project)
    cluster_lines = [line for line in before.splitlines(keepends=True) if insert_id(line) in CLUSTER]
    assert {orjson.loads(line)["properties"]["distinct_id"] for line in cluster_lines} == {USER}

    archive = retrieved(server, project, ["$device:D1"])
    assert archive.read("events.jsonl") == b"".join(cluster_lines)  # resolved, as the export

    gdpr_task(server, project, DELETIONS, ["$device:D1"])
    after = http_export(server, project)
    assert after == b"".join(
        line for line in before.splitlines(keepends=True) if insert_id(line) not in CLUSTER
    )
    assert http_mappings(server, project) == [{"distinct_id": "$device:D9", "resolved_distinct_id": "user-7"}]
    assert profile_ids(server, project.api_secret or "") == ["user-7"]


def test_gdpr_retrieval_naming_a_device_returns_the_clusters_profiles(server: LiveServer) -> None:
    project = http_seeded(server, "identity-gdpr-profiles")
    archive = retrieved(server, project, ["$device:D1"])
    found = [orjson.loads(line) for line in archive.read("profiles.jsonl").splitlines()]
    assert sorted(p["$distinct_id"] for p in found) == ["$device:D3", USER]


def engage_profiles(server: LiveServer, project: Project) -> dict[str, dict[str, Any]]:
    response = server.get("/api/2.0/engage", headers=basic(project.api_secret or ""))
    assert response.status_code == 200, response.text
    return {
        p["$distinct_id"]: {k: v for k, v in p["$properties"].items() if not k.startswith("$")}
        for p in response.json()["results"]
    }


def test_profile_updates_land_on_the_canonical_profile_once_linked(server: LiveServer) -> None:
    project = server.create_project("identity-engage")
    http_import(server, project, [device("d1-anon", NOW - 60, "D1")])
    set_profiles(server, project.token, {"$device:D1": {"early": 1, "shared": "device"}})
    http_import(server, project, [device("login", NOW - 30, "D1", USER, "login")])
    set_profiles(server, project.token, {"$device:D1": {"late": 2, "shared": "linked"}})
    set_profiles(server, project.token, {USER: {"name": "Ada"}})
    # Before the link: the device's own profile, kept; after it: the user's.
    assert engage_profiles(server, project) == {
        "$device:D1": {"early": 1, "shared": "device"},
        USER: {"late": 2, "shared": "linked", "name": "Ada"},
    }


# -- backup + restore (DuckDB; the ClickHouse store refuses `backup`), and migrate --------------------


@pytest.mark.server
def test_backup_and_restore_keep_the_identity_rows(tmp_path: Path) -> None:
    live_dir, restored_dir, backup_dir = tmp_path / "live", tmp_path / "restored", tmp_path / "backup"
    with live(live_dir) as server:
        project = server.create_project("identity-backup")
        http_import(server, project, BEFORE_LINKS)
        http_import(server, project, LINKS)
        resolved = http_export(server, project)
        as_ingested = http_export(server, project, as_ingested="1")
        mappings = http_mappings(server, project)
        cli_json("backup", "--out", str(backup_dir), "--data-dir", str(live_dir))
    assert len(mappings) == 4 and BEFORE_IDENTITY.encode() in resolved
    cli_json("restore", "--from", str(backup_dir), "--data-dir", str(restored_dir))
    with live(restored_dir) as copy_:
        assert http_export(copy_, project) == resolved
        assert http_export(copy_, project, as_ingested="1") == as_ingested
        assert http_mappings(copy_, project) == mappings
        # The restored rows still resolve what arrives: a late event of a linked device.
        http_import(copy_, project, [device("late", NOW - 4 * DAY, "D2")])
        late = [orjson.loads(line) for line in http_export(copy_, project).splitlines()]
        assert [
            line["properties"]["distinct_id"] for line in late if line["properties"]["$insert_id"] == "late"
        ] == [USER]


def test_migrate_copies_the_identity_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    registry = SqliteRegistry(data_dir)
    simplified = registry.create_project("s", "UTC")
    original = registry.create_project("o", "UTC", id_merge="original")
    anon = "5d1c7f2e-9a3b-4c6d-8e0f-1a2b3c4d5e6f"
    source = open_store(load_config({}, data_dir=str(data_dir), store="duckdb", commit_interval_ms=0))
    try:
        submit(source, simplified, BEFORE_LINKS)
        submit(source, simplified, LINKS)
        submit(
            source,
            original,
            [
                ev("o1", NOW - 60, distinct_id=anon),
                ev("o2", NOW - 50, "$identify", **{"$anon_id": anon, "$identified_id": "u9"}),
                ev("o3", NOW - 40, distinct_id="u10"),
                ev("o4", NOW - 30, "$merge", **{"$distinct_ids": ["u9", "u10"]}),
            ],
        )
        expected = {
            p.project_id: (exported(source, p), exported(source, p, resolve=False))
            for p in (simplified, original)
        }
        mappings = {p.project_id: source.identity_mappings(p.project_id) for p in (simplified, original)}
    finally:
        source.close()
    assert mappings[original.project_id] == [(anon, "u9"), ("u10", "u9")]

    assert main(["migrate", "--from", "duckdb", "--to", "chdb", "--data-dir", str(data_dir)]) == 0
    assert orjson.loads(capsys.readouterr().out)["events"] == len(BEFORE_LINKS) + len(LINKS) + 4
    target = open_store(load_config({}, data_dir=str(data_dir), store="chdb", commit_interval_ms=0))
    try:
        for project in (simplified, original):
            assert (exported(target, project), exported(target, project, resolve=False)) == expected[
                project.project_id
            ]
            assert target.identity_mappings(project.project_id) == mappings[project.project_id]
        # The copied rows go on resolving (and linking) what arrives after the migration.
        submit(target, simplified, [device("late", NOW - 4 * DAY, "D3"), device("d5", NOW, "D5", USER)])
        assert ids_of(exported(target, simplified))["late"] == (USER, "$device:D3")
        assert target.identity_mappings(simplified.project_id) == [
            *CLUSTER_MAPPINGS,
            ("$device:D5", USER),
            ("$device:D9", "user-7"),
        ]
    finally:
        target.close()


def test_migrated_rows_keep_the_time_of_their_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    project = SqliteRegistry(data_dir).create_project("m", "UTC")
    source = open_store(load_config({}, data_dir=str(data_dir), store="duckdb", commit_interval_ms=0))
    try:
        submit(source, project, [device("login", NOW - DAY, "D1", USER, "login")])  # no anonymous event
        assert source.drop_events_before(project.project_id, (NOW - 30 * DAY) * 1000) == 0
        assert source.identity_mappings(project.project_id) == [("$device:D1", USER)]
    finally:
        source.close()
    assert main(["migrate", "--from", "duckdb", "--to", "chdb", "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    target = open_store(load_config({}, data_dir=str(data_dir), store="chdb", commit_interval_ms=0))
    try:
        assert target.drop_events_before(project.project_id, (NOW - 30 * DAY) * 1000) == 0
        assert target.identity_mappings(project.project_id) == [("$device:D1", USER)]
    finally:
        target.close()
