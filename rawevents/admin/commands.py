"""What the registry and data-lifecycle CLI commands do, apart from parsing: each takes the resolved
Config and plain arguments and returns the JSON-able answer the CLI prints (so the CLI stays a
thin layer whatever parses its flags).

The registry is the configured store's (`open_registry`): with a `clickhouse://` store these
commands write to ClickHouse directly, so they work while servers run on other hosts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rawevents.admin import backup, handoff, tasks
from rawevents.errors import RawEventsError
from rawevents.identity import validate_mode
from rawevents.projects import SUCCESS, ProjectRegistry
from rawevents.settings import Config


@contextmanager
def _registry(config: Config) -> Iterator[ProjectRegistry]:
    from rawevents.storage.factory import open_registry

    registry = open_registry(config)
    try:
        yield registry
    finally:
        registry.close()


registry_of = _registry  # the configured registry, closed after use (rawevents.cli's pipeline commands)


def project_create(
    config: Config, name: str, timezone: str, legacy_signature: bool, id_merge: str = "simplified"
) -> Any:
    with _registry(config) as registry:
        project = registry.create_project(
            name, timezone, legacy_signature=legacy_signature, id_merge=id_merge
        )
        return project.public_dict()


def project_list(config: Config, show_secrets: bool) -> Any:
    with _registry(config) as registry:
        return [p.listing_dict(show_secrets=show_secrets) for p in registry.list_projects()]


def project_rotate_secret(config: Config, project_id: int, legacy_signature: bool | None) -> Any:
    with _registry(config) as registry:
        return registry.rotate_secret(project_id, legacy_signature=legacy_signature).public_dict()


def project_delete(config: Config, project_id: int) -> Any:
    with _registry(config) as registry:
        project = registry.delete_project(project_id)  # its credentials stop working now
        deleted = run_store_task(config, registry, tasks.PURGE_PROJECT, project.project_id, {})
    return {"project_id": project.project_id, "name": project.name, "deleted": deleted}


def project_set_id_merge(config: Config, project_id: int, mode: str) -> Any:
    with _registry(config) as registry:
        registry.require_project(project_id)
        return run_store_task(config, registry, tasks.SET_ID_MERGE, project_id, {"mode": validate_mode(mode)})


def project_set_retention(config: Config, project_id: int, days: int) -> Any:
    with _registry(config) as registry:
        return registry.set_retention(project_id, days).listing_dict(show_secrets=False)


def service_account_create(config: Config, project_id: int, name: str, expires_days: int | None) -> Any:
    with _registry(config) as registry:
        account = registry.create_service_account(project_id, name, expires_days=expires_days)
    return {**account.public_dict(), "secret": account.secret}


def service_account_list(config: Config, project_id: int | None) -> Any:
    with _registry(config) as registry:
        return [a.public_dict() for a in registry.list_service_accounts(project_id)]


def service_account_revoke(config: Config, username: str) -> Any:
    with _registry(config) as registry:
        return registry.revoke_service_account(username).public_dict()


def retention_apply(config: Config, project_id: int | None) -> Any:
    with _registry(config) as registry:
        if project_id is not None:
            registry.require_project(project_id)
        return run_store_task(config, registry, tasks.RETENTION, project_id, {})


def backup_write(config: Config, out: str) -> Any:
    target = Path(out).resolve()
    with _registry(config) as registry:
        manifest = run_store_task(config, registry, tasks.BACKUP, None, {"out": str(target)})
    return {"out": str(target), **manifest}


def backup_restore(config: Config, source: str) -> Any:
    from rawevents.storage.factory import restore_store

    return backup.restore_backup(
        Path(source).resolve(), Path(config.data_dir), lambda s: restore_store(config, s)
    )


def run_store_task(
    config: Config, registry: ProjectRegistry, kind: str, project_id: int | None, payload: dict[str, Any]
) -> Any:
    """Create a task, get it done (by the running server, or here), return its JSON result."""
    from rawevents.storage.factory import open_store_unless_busy

    task = registry.create_task(kind, project_id, payload, requested_by="cli")

    done = handoff.run_task(
        registry,
        Path(config.data_dir),
        task,
        lambda: open_store_unless_busy(config),
        on_wait=lambda message: print(f"rawevents: {message}", file=sys.stderr, flush=True),
    )
    if done.status != SUCCESS:
        raise RawEventsError(f"{kind} {done.status.lower()}: {done.result}")
    return json.loads(done.result)
