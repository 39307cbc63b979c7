"""The ClickHouse registry as several rawevents hosts see it: two registry objects over one
ClickHouse database (chdb here, the server's SQL) stand for two hosts. What one host changes
reaches the other within the cache bound; a task is claimed by exactly one host; a STARTED task
is requeued only when its runner stopped beating. Also the HTTP requests a lookup sends."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pyarrow as pa
import pytest

from rawevents.auth import ServiceAccountUnauthorized, authenticate_query
from rawevents.errors import BadRequest, Unauthorized, Unsupported
from rawevents.projects import PENDING, REVOKED, STARTED, digest
from rawevents.storage.clickhouse.conn import ChdbEngine, HttpEngine, ServerAddress
from rawevents.storage.clickhouse.pipelines import PIPELINE_SCHEMA
from rawevents.storage.clickhouse.registry import CACHE_SECONDS, SCHEMA, ClickHouseRegistry
from rawevents.storage.duckdb.registry import SqliteRegistry


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def chdb_path(tmp_path: Path) -> Path:
    return tmp_path / "chdb"


@pytest.fixture
def hosts(chdb_path: Path) -> Iterator[tuple[ClickHouseRegistry, ClickHouseRegistry, Clock]]:
    """Two hosts' registries over one database; host B's cache runs on a clock the test moves."""
    clock = Clock()
    a = ClickHouseRegistry(ChdbEngine(chdb_path), settle_s=0.0)
    b = ClickHouseRegistry(ChdbEngine(chdb_path), settle_s=0.0, clock=clock)
    yield a, b, clock
    a.close()
    b.close()


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_what_one_host_changes_reaches_the_other_within_the_cache_bound(
    hosts: tuple[ClickHouseRegistry, ClickHouseRegistry, Clock],
) -> None:
    a, b, clock = hosts
    project = a.create_project("shared")
    account = a.create_service_account(project.project_id, "etl")
    assert project.api_secret is not None and account.secret is not None
    as_account = (basic(account.username, account.secret), {"project_id": str(project.project_id)})

    # Created through host A: host B authenticates it at once (nothing cached yet).
    assert authenticate_query(b, basic(project.api_secret), {}).project_id == project.project_id
    assert authenticate_query(b, *as_account).project_id == project.project_id
    assert b.project_by_token(project.token) is not None

    rotated = a.rotate_secret(project.project_id)
    a.revoke_service_account(account.username)
    assert rotated.api_secret is not None
    # Host A refuses the old secret and the account at once; host B within the bound.
    with pytest.raises(Unauthorized):
        authenticate_query(a, basic(project.api_secret), {})
    with pytest.raises(ServiceAccountUnauthorized, match="revoked"):
        authenticate_query(a, *as_account)
    assert authenticate_query(b, basic(project.api_secret), {}).project_id == project.project_id
    clock.now += CACHE_SECONDS + 0.01
    with pytest.raises(Unauthorized):
        authenticate_query(b, basic(project.api_secret), {})
    with pytest.raises(ServiceAccountUnauthorized, match="revoked"):
        authenticate_query(b, *as_account)
    assert authenticate_query(b, basic(rotated.api_secret), {}).project_id == project.project_id

    assert b.project_by_token(project.token) is not None
    a.delete_project(project.project_id)
    assert a.project_by_token(project.token) is None
    assert b.project_by_token(project.token) is not None  # cached on B
    clock.now += CACHE_SECONDS + 0.01
    assert b.project_by_token(project.token) is None
    with pytest.raises(Unauthorized):
        authenticate_query(b, basic(rotated.api_secret), {})


def test_a_task_is_claimed_by_exactly_one_host(chdb_path: Path) -> None:
    hosts = [ClickHouseRegistry(ChdbEngine(chdb_path), settle_s=0.2) for _ in range(2)]
    try:
        created = {hosts[0].create_task("retention", None, {"n": i}, "cli").task_id for i in range(4)}
        claimed: list[list[str]] = [[], []]

        def run(index: int) -> None:
            while (task := hosts[index].claim_task()) is not None:
                claimed[index].append(task.task_id)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed[0] + claimed[1]) == sorted(created)  # each once, none lost
        assert all(hosts[1].task(t) is not None and _status(hosts[1], t) == STARTED for t in created)
    finally:
        for registry in hosts:
            registry.close()


def test_a_cancellation_racing_a_claim_has_one_winner(chdb_path: Path) -> None:
    runner, api = (ClickHouseRegistry(ChdbEngine(chdb_path), settle_s=0.2) for _ in range(2))
    try:
        task = api.create_task("deletion", None, {"distinct_ids": ["u"]}, "dpo")
        outcome: dict[str, object] = {}
        threads = [
            threading.Thread(target=lambda: outcome.update(claimed=runner.claim_task())),
            threading.Thread(target=lambda: outcome.update(cancelled=api.cancel_task(task.task_id))),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (outcome["claimed"] is not None) != outcome["cancelled"]
        assert _status(api, task.task_id) == (REVOKED if outcome["cancelled"] else STARTED)
    finally:
        runner.close()
        api.close()


def test_a_started_task_is_requeued_only_once_its_runner_stopped_beating(
    hosts: tuple[ClickHouseRegistry, ClickHouseRegistry, Clock],
) -> None:
    a, b, _ = hosts
    task = b.create_task("retention", None, {}, "cli")
    a.beat()
    assert a.claim_task() is not None
    assert b.runner_alive(5000)
    assert b.requeue_started_tasks() == 0  # host A is alive and running it
    assert _status(b, task.task_id) == STARTED
    a.stop_beating()
    assert not b.runner_alive(5000)
    assert b.requeue_started_tasks() == 1
    assert _status(b, task.task_id) == PENDING
    again = b.claim_task()
    assert again is not None and again.task_id == task.task_id


def test_secrets_are_stored_as_digests_and_forgotten_rows_are_gone(chdb_path: Path) -> None:
    registry = ClickHouseRegistry(ChdbEngine(chdb_path), settle_s=0.0)
    con = ChdbEngine(chdb_path).connect()
    try:
        project = registry.create_project("web")
        account = registry.create_service_account(project.project_id)
        assert project.api_secret is not None and account.secret is not None
        stored = con.table("SELECT secret_digest, signing_secret FROM registry_projects").to_pylist()
        assert stored == [{"secret_digest": digest(project.api_secret), "signing_secret": None}]
        accounts = con.table("SELECT secret_digest FROM registry_service_accounts").to_pylist()
        assert accounts == [{"secret_digest": digest(account.secret)}]

        tasks = [registry.create_task("deletion", project.project_id, {"distinct_ids": ["u"]}, "dpo")]
        tasks.append(registry.create_task("purge_project", project.project_id, {}, "cli"))
        registry.forget_project_tasks(project.project_id, keep=tasks[1].task_id)
        remaining = con.table("SELECT task_id FROM registry_tasks").column("task_id").to_pylist()
        assert remaining == [tasks[1].task_id]  # every version of the others, not a tombstone
        with pytest.raises(Unsupported, match="BACKUP"):
            registry.backup_to(chdb_path / "backup.sqlite3")
    finally:
        con.close()
        registry.close()


def _status(registry: ClickHouseRegistry, task_id: str) -> str:
    task = registry.task(task_id)
    assert task is not None
    return task.status


# -- the HTTP engine: what a lookup sends ---------------------------------------------------------

URL = "clickhouse://ana:s3cr%40t@ch.internal:8123/analytics?cluster=main"
PROJECT_ROW = pa.table(
    {
        "project_id": pa.array([7], pa.int32()),
        "name": ["web"],
        "token": ["tok"],
        "secret_digest": [digest("sec")],
        "signing_secret": pa.array([None], pa.string()),
        "timezone": ["UTC"],
        "retention_days": pa.array([0], pa.int32()),
        "id_merge": ["simplified"],
    }
)


def _arrow(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def test_a_token_lookup_over_http_is_one_parameterised_query_then_cached() -> None:
    sent: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        request.read()
        sent.append(request)
        is_select = request.content.startswith(b"SELECT")
        return httpx.Response(200, content=_arrow(PROJECT_ROW) if is_select else b"")

    clock = Clock()
    engine = HttpEngine(ServerAddress.parse(URL), transport=httpx.MockTransport(server))
    registry = ClickHouseRegistry(engine, owns_engine=True, clock=clock)
    ddl = [r.content.decode() for r in sent]
    expected = len(SCHEMA) + len(PIPELINE_SCHEMA)  # 7 + the data pipelines' 6
    assert len(ddl) == expected and all("ON CLUSTER main" in statement for statement in ddl)
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/rawevents_registry/{database}/{table}',"
        " '{replica}', version) ORDER BY project_id" in ddl[0]
    )
    sent.clear()

    project = registry.project_by_token("tok")
    assert project is not None and (project.project_id, project.api_secret) == (7, None)
    [lookup] = sent
    fields = parse_qs(lookup.url.query.decode())
    assert lookup.content == (
        b"SELECT project_id, name, token, secret_digest, signing_secret, timezone, retention_days, id_merge"
        b" FROM registry_projects FINAL WHERE deleted = 0 AND token = {v:String} LIMIT 2\nFORMAT ArrowStream"
    )
    assert fields["param_v"] == ["tok"] and fields["database"] == ["analytics"]
    assert lookup.headers["X-ClickHouse-Key"] == "s3cr@t" and "s3cr" not in str(lookup.url)

    assert registry.project_by_token("tok") == project
    assert len(sent) == 1  # served from the cache
    clock.now += CACHE_SECONDS + 0.01
    assert registry.project_by_token("tok") == project
    assert len(sent) == 2  # the bound passed: asked again
    assert registry.project_by_secret("wrong") is None  # a digest that matches no row
    assert parse_qs(sent[-1].url.query.decode())["param_v"] == [digest("wrong")]
    registry.close()


# -- `rawevents migrate`: the embedded registry moves into ClickHouse -------------------------------


def test_an_embedded_registry_is_adopted_with_its_ids_and_digests(tmp_path: Path, chdb_path: Path) -> None:
    source = SqliteRegistry(tmp_path / "data")
    target = ClickHouseRegistry(ChdbEngine(chdb_path), settle_s=0.0)
    try:
        web = source.create_project("web", "Europe/Berlin")
        legacy = source.create_project("old", legacy_signature=True)
        source.set_retention(web.project_id, 7)
        account = source.create_service_account(web.project_id, "etl", expires_days=3)
        assert web.api_secret is not None and account.secret is not None

        assert target.adopt(source.credentials()) == {"projects": 2, "service_accounts": 1}
        assert target.list_projects() == source.list_projects()
        found = target.project_by_secret(web.api_secret)
        assert found is not None and (found.project_id, found.retention_days) == (web.project_id, 7)
        assert target.project_by_token(legacy.token) == source.project_by_token(legacy.token)
        assert target.service_account(account.username, account.secret) == source.service_account(
            account.username, account.secret
        )

        rotated = target.rotate_secret(web.project_id)  # changed in ClickHouse since: kept
        assert target.adopt(source.credentials()) == {"projects": 2, "service_accounts": 1}
        assert rotated.api_secret is not None and target.project_by_secret(rotated.api_secret) is not None
        assert target.project_by_secret(web.api_secret) is None
        assert len(target.list_projects()) == 2

        native = target.create_project("native")
        clash = source.credentials()
        clash.projects[0]["project_id"] = native.project_id
        with pytest.raises(BadRequest, match=str(native.project_id)):
            target.adopt(clash)
    finally:
        source.close()
        target.close()
