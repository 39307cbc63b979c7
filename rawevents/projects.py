"""Projects, service accounts and tasks: the values and the registry contract every store shares.

The registry is where credentials are checked on every request and where the CLI hands store
work (GDPR requests, retention, project deletion, backup) to a running server. Two
implementations live in `rawevents/storage/` behind `ProjectRegistry`: a SQLite file under
`data_dir` for the embedded stores (`duckdb`, `chdb`), and tables in ClickHouse for a
`clickhouse://` store, so a project created through one rawevents host works on every host.
`rawevents.storage.factory.open_registry` picks one from the `store` setting.

Secrets are stored as SHA-256 digests of 128-bit (or longer) random values: a digest of a
high-entropy secret cannot be reversed, so no slow hash is needed, and lookups stay an index probe.
A digest is compared with `hmac.compare_digest`. A project's plaintext secret is kept only when the
project opted into the retired `api_key + expire + sig` signature, whose md5 needs it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rawevents.errors import BadRequest
from rawevents.pipelines.model import Pipeline, PipelineSpec, RunState

DAY_MS = 24 * 3600 * 1000
# The registry columns a credential sent with a request is looked up by (a project's token, the
# digest of its secret): registries name them in SQL, so only these two.
CredentialColumn = Literal["token", "secret_digest"]

# Mixpanel's task states (GDPR API v3). A task can be cancelled until it is STARTED.
PENDING, STARTED, SUCCESS, FAILURE, REVOKED = "PENDING", "STARTED", "SUCCESS", "FAILURE", "REVOKED"
FINAL_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
# Pending tasks of these kinds name a deleted project's users: deleting the project revokes them.
USER_TASK_KINDS = ("deletion", "retrieval")


@dataclass(frozen=True, slots=True)
class Project:
    project_id: int
    name: str
    token: str
    # The plaintext secret: set on the value that create/rotate return (shown once), and on
    # lookups only for a project that keeps it for legacy request signatures.
    api_secret: str | None
    timezone: str
    retention_days: int = 0
    legacy_signature: bool = False
    id_merge: str = "simplified"  # rawevents.identity.MODES: fixed once the project has events

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def public_dict(self, *, show_secret: bool = True) -> dict[str, object]:
        """What the CLI prints: the secret only when known and asked for."""
        shown: dict[str, object] = {
            "project_id": self.project_id,
            "name": self.name,
            "token": self.token,
            "timezone": self.timezone,
            "id_merge": self.id_merge,
        }
        if show_secret and self.api_secret is not None:
            shown["api_secret"] = self.api_secret
        return shown

    def listing_dict(self, *, show_secrets: bool) -> dict[str, object]:
        shown = self.public_dict(show_secret=False)
        shown["retention_days"] = self.retention_days
        shown["legacy_signature"] = self.legacy_signature
        if show_secrets:
            # Hashed secrets cannot be shown again: null says so rather than omitting the key.
            shown["api_secret"] = self.api_secret
        return shown


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    username: str
    name: str
    projects: tuple[int, ...]
    created_at_ms: int
    expires_at_ms: int | None = None
    revoked_at_ms: int | None = None
    secret: str | None = None  # plaintext: only on the value `create_service_account` returns

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms

    def public_dict(self) -> dict[str, object]:
        return {
            "username": self.username,
            "name": self.name,
            "projects": list(self.projects),
            "created": iso_time(self.created_at_ms),
            "expires": iso_time(self.expires_at_ms),
            "revoked": iso_time(self.revoked_at_ms),
        }


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    kind: str
    project_id: int | None
    status: str
    payload: dict[str, Any]
    result: str
    requested_by: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class StoredCredentials:
    """Every project, service account and grant row as stored (digests, never secrets): what
    `rawevents migrate` hands from the embedded registry to a ClickHouse one."""

    projects: list[dict[str, Any]]
    accounts: list[dict[str, Any]]
    grants: list[dict[str, Any]]


class ProjectRegistry(Protocol):
    """What the server, the CLI, the task runner and authentication ask of a registry."""

    # -- projects -------------------------------------------------------------------------------

    def create_project(
        self,
        name: str,
        timezone: str = "UTC",
        *,
        legacy_signature: bool = False,
        id_merge: str = "simplified",
    ) -> Project:
        """A new project; the returned value carries the plaintext secret (shown this once)."""

    def list_projects(self) -> list[Project]: ...

    def project_by_id(self, project_id: int) -> Project | None: ...

    def require_project(self, project_id: int) -> Project:
        """The project, or NotFound."""

    def project_by_token(self, token: str) -> Project | None: ...

    def project_by_secret(self, secret: str) -> Project | None: ...

    def rotate_secret(self, project_id: int, *, legacy_signature: bool | None = None) -> Project:
        """Replace the project's secret (returned in plain text, once); the old one stops working.
        `legacy_signature` None keeps the project's choice of keeping the plaintext."""

    def set_retention(self, project_id: int, days: int) -> Project: ...

    def set_id_merge(self, project_id: int, mode: str) -> Project:
        """Record the project's identity mode (the caller checks that it has no events)."""

    def delete_project(self, project_id: int) -> Project:
        """Remove the project and its credentials, revoke its pending user tasks, and delete
        service accounts left with no project. Project ids are never reused."""

    # -- service accounts -----------------------------------------------------------------------

    def create_service_account(
        self, project_id: int, name: str = "service-account", *, expires_days: int | None = None
    ) -> ServiceAccount:
        """A new account; the returned value carries the plaintext secret (shown this once)."""

    def service_account(self, username: str, secret: str) -> ServiceAccount | None:
        """The account when `secret` matches (revoked or expired included: the caller says
        which), else None; constant-time."""

    def list_service_accounts(self, project_id: int | None = None) -> list[ServiceAccount]: ...

    def revoke_service_account(self, username: str) -> ServiceAccount:
        """Stop the account; it stays listed with its revocation time."""

    # -- tasks (GDPR requests, and store work the CLI hands to a running server) -----------------

    def create_task(
        self,
        kind: str,
        project_id: int | None,
        payload: dict[str, Any],
        requested_by: str,
        *,
        delay_ms: int = 0,
    ) -> Task: ...

    def task(self, task_id: str) -> Task | None: ...

    def project_tasks(self, project_id: int, kind: str) -> list[Task]: ...

    def claim_task(self, task_id: str | None = None, now_ms: int | None = None) -> Task | None:
        """Move a due PENDING task (this one, or the oldest) to STARTED and return it; one
        claimant gets it."""

    def finish_task(self, task_id: str, status: str, result: str = "") -> None: ...

    def cancel_task(self, task_id: str) -> bool:
        """REVOKED if still PENDING; False once it has started or ended."""

    def forget_project_tasks(self, project_id: int, keep: str) -> list[Task]:
        """Delete the task rows of a deleted project (they name its users), but `keep`; returns
        the deleted ones so their files can go too."""

    def requeue_started_tasks(self) -> int:
        """Tasks a crashed runner left STARTED run again (every task kind is idempotent)."""

    def beat(self) -> None:
        """This process's task runner says it is alive (the CLI then leaves work to it)."""

    def stop_beating(self) -> None: ...

    def runner_alive(self, within_ms: int) -> bool:
        """Whether some task runner beat within the last `within_ms`."""

    # -- data pipelines (rawevents.pipelines; docs/pipelines.md) ---------------------------------

    def create_pipeline(self, spec: PipelineSpec) -> Pipeline:
        """A new active pipeline; BadRequest when the name is taken."""

    def pipelines(self, project_id: int | None = None) -> list[Pipeline]: ...

    def pipeline(self, name: str) -> Pipeline | None: ...

    def require_pipeline(self, name: str) -> Pipeline:
        """The pipeline, or NotFound."""

    def set_pipeline_status(self, name: str, status: str) -> Pipeline: ...

    def delete_pipeline(self, name: str) -> Pipeline:
        """Remove the pipeline, its runs and its pending deletions (its objects stay)."""

    def save_pipeline_state(self, name: str, state: RunState, run: dict[str, Any] | None = None) -> None:
        """The runner's new state and, with it, the row of a run attempt that ended."""

    def pipeline_runs(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """The latest run attempts, newest first."""

    def add_pipeline_deletion(self, name: str, deletion_id: str, record: dict[str, Any]) -> None:
        """A deletion the pipeline must carry to its destination (idempotent per id)."""

    def pipeline_deletions(self, name: str) -> list[dict[str, Any]]:
        """The deletions not carried out yet, oldest first."""

    def finish_pipeline_deletion(self, name: str, deletion_id: str) -> None: ...

    def claim_pipeline(self, name: str, ttl_ms: int) -> bool:
        """Hold the pipeline for `ttl_ms` (renewed by claiming again); False while another
        process holds it, so hosts sharing a registry run each step once between them."""

    def release_pipeline(self, name: str) -> None: ...

    # -- backup and lifetime --------------------------------------------------------------------

    def backup_to(self, path: Path) -> None:
        """A consistent copy of the registry as a SQLite file, for `rawevents backup`."""

    def close(self) -> None: ...


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def validate_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadRequest(
            f"unknown timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from exc
    return name


def check_retention_days(days: int) -> int:
    if days < 0:
        raise BadRequest("retention days must be 0 (keep forever) or a positive number of days")
    return days


def check_expires_days(expires_days: int | None) -> int | None:
    if expires_days is not None and expires_days <= 0:
        raise BadRequest("--expires must be a positive number of days")
    return expires_days


def account_slug(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    return cleaned or "sa"


def new_service_account(project_id: int, name: str, expires_days: int | None) -> ServiceAccount:
    """A new account granted `project_id`, its plaintext secret included, for a registry to store."""
    check_expires_days(expires_days)
    username = f"{account_slug(name)}.{secrets.token_hex(4)}.mp-service-account"
    created = now_ms()
    expires = created + expires_days * DAY_MS if expires_days is not None else None
    return ServiceAccount(username, name, (project_id,), created, expires, None, secrets.token_urlsafe(24))


def same_credential(stored: str, sent: str) -> bool:
    """Whether a stored token or digest equals the one sent, in constant time (a lookup by index
    alone would answer sooner for a closer guess); `sent` may hold lone surrogates."""
    return hmac.compare_digest(stored.encode("utf-8", "surrogatepass"), sent.encode("utf-8", "surrogatepass"))


def secret_matches(stored_digest: str | None, secret: str) -> bool:
    """Whether `secret` hashes to `stored_digest`, in constant time: an unknown account (None) is
    compared against a dummy digest, so it takes as long as a wrong secret."""
    expected = stored_digest if stored_digest is not None else digest(secrets.token_urlsafe(24))
    matches = same_credential(expected, digest(secret))
    return stored_digest is not None and matches


def new_task(kind: str, project_id: int | None, payload: dict[str, Any], requested_by: str) -> Task:
    """A new PENDING task, created now, for a registry to store."""
    return Task(secrets.token_hex(16), kind, project_id, PENDING, payload, "", requested_by, now_ms())
