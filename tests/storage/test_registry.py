"""The registry contract (`rawevents.projects.ProjectRegistry`), run on both implementations with
one parametrised fixture: the SQLite file of the embedded stores, and the ClickHouse tables of a
`clickhouse://` store (on chdb: the same SQL the server runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rawevents.errors import BadRequest, NotFound
from rawevents.projects import FINAL_STATES, PENDING, REVOKED, STARTED, SUCCESS, ProjectRegistry
from rawevents.storage.clickhouse.conn import ChdbEngine
from rawevents.storage.clickhouse.registry import ClickHouseRegistry
from rawevents.storage.duckdb.registry import SqliteRegistry


def _clickhouse(path: Path) -> ProjectRegistry:
    # No wait for competing claims: these tests have one claimant at a time.
    return ClickHouseRegistry(ChdbEngine(path / "chdb"), settle_s=0.0)


OPENERS: dict[str, Callable[[Path], ProjectRegistry]] = {"sqlite": SqliteRegistry, "clickhouse": _clickhouse}


@pytest.fixture(params=sorted(OPENERS))
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProjectRegistry]:
    opened = OPENERS[request.param](tmp_path)
    yield opened
    opened.close()


# -- projects -----------------------------------------------------------------------------------


def test_a_project_is_found_by_token_secret_and_id_without_its_secret(registry: ProjectRegistry) -> None:
    created = registry.create_project("web", "Europe/Berlin")
    assert created.api_secret is not None and created.timezone == "Europe/Berlin"
    stored = registry.project_by_token(created.token)
    assert stored is not None and stored.api_secret is None  # only its digest is kept
    assert (stored.project_id, stored.name, stored.token) == (created.project_id, "web", created.token)
    assert registry.project_by_secret(created.api_secret) == stored
    assert registry.project_by_id(created.project_id) == stored
    assert registry.require_project(created.project_id) == stored
    assert registry.project_by_token(created.api_secret) is None
    assert registry.project_by_secret(created.token) is None
    assert registry.project_by_token("") is None and registry.project_by_secret("x") is None


def test_projects_are_listed_by_id_with_distinct_credentials(registry: ProjectRegistry) -> None:
    made = [registry.create_project(f"p{i}") for i in range(3)]
    listed = registry.list_projects()
    assert [p.project_id for p in listed] == sorted(p.project_id for p in made)
    assert len({p.token for p in made} | {p.api_secret for p in made}) == 6
    assert all(p.project_id > 0 for p in made)


def test_a_legacy_signature_project_keeps_its_plaintext_secret(registry: ProjectRegistry) -> None:
    created = registry.create_project("old-sdk", legacy_signature=True)
    stored = registry.project_by_token(created.token)
    assert stored is not None and stored.legacy_signature and stored.api_secret == created.api_secret


def test_rotating_a_secret_stops_the_old_one(registry: ProjectRegistry) -> None:
    created = registry.create_project("web")
    assert created.api_secret is not None
    assert registry.project_by_secret(created.api_secret) is not None
    rotated = registry.rotate_secret(created.project_id, legacy_signature=True)
    assert rotated.api_secret not in (None, created.api_secret)
    assert registry.project_by_secret(created.api_secret) is None
    assert rotated.api_secret is not None
    found = registry.project_by_secret(rotated.api_secret)
    assert found is not None and found.legacy_signature and found.api_secret == rotated.api_secret
    again = registry.rotate_secret(created.project_id)  # None keeps the legacy choice
    assert again.legacy_signature
    with pytest.raises(NotFound):
        registry.rotate_secret(created.project_id + 1)


def test_retention_days(registry: ProjectRegistry) -> None:
    created = registry.create_project("web")
    assert registry.set_retention(created.project_id, 30).retention_days == 30
    assert [p.retention_days for p in registry.list_projects()] == [30]
    with pytest.raises(BadRequest):
        registry.set_retention(created.project_id, -1)
    with pytest.raises(NotFound):
        registry.set_retention(created.project_id + 1, 3)


def test_a_bad_timezone_is_refused(registry: ProjectRegistry) -> None:
    with pytest.raises(BadRequest, match="unknown timezone"):
        registry.create_project("web", "Mars/Olympus")
    assert registry.list_projects() == []


def test_deleting_a_project_removes_its_credentials_accounts_and_pending_user_tasks(
    registry: ProjectRegistry,
) -> None:
    doomed, kept = registry.create_project("doomed"), registry.create_project("kept")
    assert doomed.api_secret is not None
    only = registry.create_service_account(doomed.project_id, "only")
    shared = registry.create_service_account(kept.project_id, "shared")
    pending = registry.create_task("deletion", doomed.project_id, {"distinct_ids": ["u1"]}, "dpo")
    other = registry.create_task("deletion", kept.project_id, {"distinct_ids": ["u2"]}, "dpo")

    assert registry.delete_project(doomed.project_id).name == "doomed"
    assert registry.project_by_token(doomed.token) is None
    assert registry.project_by_secret(doomed.api_secret) is None
    assert registry.project_by_id(doomed.project_id) is None
    with pytest.raises(NotFound):
        registry.require_project(doomed.project_id)
    with pytest.raises(NotFound):
        registry.delete_project(doomed.project_id)
    assert [p.project_id for p in registry.list_projects()] == [kept.project_id]
    assert only.secret is not None and registry.service_account(only.username, only.secret) is None
    assert [a.username for a in registry.list_service_accounts()] == [shared.username]
    assert _status(registry, pending.task_id) == REVOKED
    assert _status(registry, other.task_id) == PENDING
    assert registry.create_project("next").project_id != doomed.project_id


# -- service accounts ---------------------------------------------------------------------------


def test_a_service_account_authenticates_with_its_secret_only(registry: ProjectRegistry) -> None:
    project = registry.create_project("web")
    account = registry.create_service_account(project.project_id, "ETL job", expires_days=30)
    assert account.secret is not None and account.username.startswith("etl-job.")
    assert account.expires_at_ms == account.created_at_ms + 30 * 86_400_000
    found = registry.service_account(account.username, account.secret)
    assert found is not None and found.secret is None
    assert (found.username, found.name, found.projects) == (
        account.username,
        "ETL job",
        (project.project_id,),
    )
    assert found.expires_at_ms == account.expires_at_ms and found.revoked_at_ms is None
    assert registry.service_account(account.username, account.secret + "x") is None
    assert registry.service_account("nobody.mp-service-account", account.secret) is None


def test_service_accounts_are_listed_per_project(registry: ProjectRegistry) -> None:
    a, b = registry.create_project("a"), registry.create_project("b")
    first = registry.create_service_account(a.project_id, "first")
    second = registry.create_service_account(b.project_id, "second")
    assert [x.username for x in registry.list_service_accounts()] == [first.username, second.username]
    assert [x.username for x in registry.list_service_accounts(b.project_id)] == [second.username]
    assert registry.list_service_accounts(b.project_id)[0].projects == (b.project_id,)


def test_a_revoked_account_is_still_found_and_says_so(registry: ProjectRegistry) -> None:
    project = registry.create_project("web")
    account = registry.create_service_account(project.project_id)
    assert account.secret is not None
    revoked = registry.revoke_service_account(account.username)
    assert revoked.revoked_at_ms is not None
    found = registry.service_account(account.username, account.secret)
    assert found is not None and found.revoked_at_ms == revoked.revoked_at_ms
    assert registry.revoke_service_account(account.username).revoked_at_ms == revoked.revoked_at_ms
    with pytest.raises(NotFound):
        registry.revoke_service_account("nobody")


def test_service_account_arguments_are_checked(registry: ProjectRegistry) -> None:
    project = registry.create_project("web")
    with pytest.raises(BadRequest, match="no project"):
        registry.create_service_account(project.project_id + 1)
    with pytest.raises(BadRequest, match="expires"):
        registry.create_service_account(project.project_id, expires_days=0)
    assert registry.list_service_accounts() == []


# -- tasks --------------------------------------------------------------------------------------


def _status(registry: ProjectRegistry, task_id: str) -> str:
    task = registry.task(task_id)
    assert task is not None
    return task.status


def test_tasks_are_claimed_oldest_first_once(registry: ProjectRegistry) -> None:
    project = registry.create_project("web")
    first = registry.create_task("deletion", project.project_id, {"distinct_ids": ["ü", "a\tb"]}, "dpo")
    second = registry.create_task("retention", None, {}, "cli")
    assert registry.task(first.task_id) == first
    assert first.payload == {"distinct_ids": ["ü", "a\tb"]} and first.status == PENDING
    claimed = registry.claim_task()
    assert claimed is not None and claimed.task_id == first.task_id and claimed.status == STARTED
    assert _status(registry, first.task_id) == STARTED
    later = registry.claim_task()
    assert later is not None and later.task_id == second.task_id and later.project_id is None
    assert registry.claim_task() is None
    registry.finish_task(first.task_id, SUCCESS, '{"events": 3}')
    done = registry.task(first.task_id)
    assert done is not None and (done.status, done.result) == (SUCCESS, '{"events": 3}')
    assert registry.task("no-such-task") is None


def test_a_delayed_task_waits_and_a_named_task_is_claimed_alone(registry: ProjectRegistry) -> None:
    delayed = registry.create_task("retention", None, {}, "cli", delay_ms=60_000)
    named = registry.create_task("retention", None, {}, "cli")
    assert delayed.created_at_ms <= named.created_at_ms
    assert registry.claim_task(delayed.task_id) is None
    claimed = registry.claim_task(named.task_id)
    assert claimed is not None and claimed.task_id == named.task_id
    assert registry.claim_task() is None
    due = registry.claim_task(now_ms=delayed.created_at_ms + 60_000)
    assert due is not None and due.task_id == delayed.task_id


def test_only_a_pending_task_can_be_cancelled(registry: ProjectRegistry) -> None:
    waiting = registry.create_task("deletion", None, {}, "dpo")
    running = registry.create_task("deletion", None, {}, "dpo", delay_ms=0)
    assert registry.cancel_task(waiting.task_id)
    assert _status(registry, waiting.task_id) == REVOKED
    assert not registry.cancel_task(waiting.task_id)
    claimed = registry.claim_task()
    assert claimed is not None and claimed.task_id == running.task_id
    assert not registry.cancel_task(running.task_id)
    assert _status(registry, running.task_id) == STARTED
    assert REVOKED in FINAL_STATES


def test_a_project_lists_its_tasks_and_forgets_them(registry: ProjectRegistry) -> None:
    project = registry.create_project("web")
    tasks = [registry.create_task("deletion", project.project_id, {"n": i}, "dpo") for i in range(3)]
    registry.create_task("retrieval", project.project_id, {}, "dpo")
    assert [t.task_id for t in registry.project_tasks(project.project_id, "deletion")] == [
        t.task_id for t in tasks
    ]
    forgotten = registry.forget_project_tasks(project.project_id, keep=tasks[0].task_id)
    assert len(forgotten) == 3 and tasks[0].task_id not in {t.task_id for t in forgotten}
    assert [t.task_id for t in registry.project_tasks(project.project_id, "deletion")] == [tasks[0].task_id]
    assert registry.task(tasks[1].task_id) is None


def test_a_task_left_started_by_a_dead_runner_runs_again(registry: ProjectRegistry) -> None:
    task = registry.create_task("retention", None, {}, "cli")
    assert registry.claim_task() is not None
    assert registry.claim_task() is None
    assert registry.requeue_started_tasks() == 1
    assert _status(registry, task.task_id) == PENDING
    again = registry.claim_task()
    assert again is not None and again.task_id == task.task_id


def test_the_runner_heartbeat(registry: ProjectRegistry) -> None:
    assert not registry.runner_alive(5000)
    registry.beat()
    assert registry.runner_alive(5000)
    registry.stop_beating()
    assert not registry.runner_alive(5000)
