"""The project, service-account and task registry of the embedded stores: a SQLite file beside
the event store in `data_dir`.

SQLite (WAL mode) lets the CLI write while `rawevents serve` is running: the server reads the
registry on every lookup, so a new project, a rotated secret or a revoked service account takes
effect at once. The registry is also how the CLI hands store work (project deletion, retention,
backup) to a running server, which alone may open the event store: see `rawevents.admin`.
Secrets are kept as digests (`rawevents.projects`); deleted rows are overwritten (secure_delete).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rawevents.errors import BadRequest, NotFound
from rawevents.identity import validate_mode
from rawevents.projects import (
    PENDING,
    REVOKED,
    STARTED,
    CredentialColumn,
    Project,
    ServiceAccount,
    StoredCredentials,
    Task,
    check_retention_days,
    digest,
    new_service_account,
    new_task,
    same_credential,
    secret_matches,
    validate_timezone,
)
from rawevents.projects import now_ms as _now_ms
from rawevents.storage.duckdb.pipelines import SqlitePipelines

REGISTRY_FILE = "registry.sqlite3"


SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    secret_digest TEXT NOT NULL UNIQUE,
    signing_secret TEXT,
    timezone TEXT NOT NULL,
    retention_days INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    id_merge TEXT NOT NULL DEFAULT 'simplified'
);
CREATE TABLE IF NOT EXISTS service_accounts (
    username TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_digest TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS service_account_grants (
    username TEXT NOT NULL REFERENCES service_accounts(username),
    project_id INTEGER NOT NULL REFERENCES projects(project_id),
    PRIMARY KEY (username, project_id)
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    project_id INTEGER,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    result TEXT NOT NULL DEFAULT '',
    requested_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    run_after_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, run_after_ms);
CREATE TABLE IF NOT EXISTS runner (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    heartbeat_ms INTEGER NOT NULL
);
"""


class SqliteRegistry(SqlitePipelines):
    """Thread-safe access to the registry file; one SQLite connection per thread (data
    pipelines' tables: the SqlitePipelines mixin)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / REGISTRY_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        _migrate(self._conn())
        self._create_pipeline_tables()
        # It holds secret digests and GDPR requests: owner-only, like an SSH key.
        for path in (
            self.path,
            self.path.with_name(self.path.name + "-wal"),
            self.path.with_name(self.path.name + "-shm"),
        ):
            if path.exists():
                path.chmod(0o600)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            # Deleted rows (old digests, GDPR requests) are overwritten, not left in free pages.
            conn.execute("PRAGMA secure_delete=ON")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

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
        validate_timezone(timezone)
        validate_mode(id_merge)
        token = secrets.token_hex(16)
        api_secret = secrets.token_hex(16)
        signing = api_secret if legacy_signature else None
        cur = self._conn().execute(
            "INSERT INTO projects (name, token, secret_digest, signing_secret, timezone, created_at_ms,"
            " id_merge) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, token, digest(api_secret), signing, timezone, _now_ms(), id_merge),
        )
        project_id = cur.lastrowid
        assert project_id is not None
        return Project(project_id, name, token, api_secret, timezone, 0, legacy_signature, id_merge)

    def list_projects(self) -> list[Project]:
        rows = self._conn().execute("SELECT * FROM projects ORDER BY project_id").fetchall()
        return [_project(row) for row in rows]

    def project_by_id(self, project_id: int) -> Project | None:
        row = self._conn().execute("SELECT * FROM projects WHERE project_id = ?", (project_id,)).fetchone()
        return _project(row) if row else None

    def require_project(self, project_id: int) -> Project:
        project = self.project_by_id(project_id)
        if project is None:
            raise NotFound(f"no project with id {project_id}")
        return project

    def project_by_token(self, token: str) -> Project | None:
        return self._project_matching("token", token)

    def project_by_secret(self, secret: str) -> Project | None:
        return self._project_matching("secret_digest", digest(secret))

    def _project_matching(self, column: CredentialColumn, value: str) -> Project | None:
        """The project whose `column` holds `value`, confirmed by a constant-time comparison."""
        row = self._conn().execute(f"SELECT * FROM projects WHERE {column} = ?", (value,)).fetchone()
        if row is None or not same_credential(row[column], value):
            return None
        return _project(row)

    def rotate_secret(self, project_id: int, *, legacy_signature: bool | None = None) -> Project:
        """Replace the project's secret; the old one stops working at once (no grace period).
        `legacy_signature` None keeps the project's choice of keeping the plaintext."""
        project = self.require_project(project_id)
        keep = project.legacy_signature if legacy_signature is None else legacy_signature
        api_secret = secrets.token_hex(16)
        self._conn().execute(
            "UPDATE projects SET secret_digest = ?, signing_secret = ? WHERE project_id = ?",
            (digest(api_secret), api_secret if keep else None, project_id),
        )
        return replace(project, api_secret=api_secret, legacy_signature=keep)

    def set_retention(self, project_id: int, days: int) -> Project:
        check_retention_days(days)
        self.require_project(project_id)
        self._conn().execute(
            "UPDATE projects SET retention_days = ? WHERE project_id = ?", (days, project_id)
        )
        return self.require_project(project_id)

    def set_id_merge(self, project_id: int, mode: str) -> Project:
        validate_mode(mode)
        self.require_project(project_id)
        self._conn().execute("UPDATE projects SET id_merge = ? WHERE project_id = ?", (mode, project_id))
        return self.require_project(project_id)

    def delete_project(self, project_id: int) -> Project:
        """Remove the project and its credentials: its token and secret stop working at once.
        Service accounts left with no project are deleted; its stored data is the caller's (a
        `purge_project` task). Project ids are never reused, so the purge cannot hit a new one."""
        project = self.require_project(project_id)
        with self._transaction() as conn:
            accounts = [
                row[0]
                for row in conn.execute(
                    "SELECT username FROM service_account_grants WHERE project_id = ?", (project_id,)
                )
            ]
            conn.execute("DELETE FROM service_account_grants WHERE project_id = ?", (project_id,))
            for username in accounts:
                left = conn.execute(
                    "SELECT count(*) FROM service_account_grants WHERE username = ?", (username,)
                ).fetchone()[0]
                if left == 0:
                    conn.execute("DELETE FROM service_accounts WHERE username = ?", (username,))
            conn.execute(
                "UPDATE tasks SET status = ?, updated_at_ms = ? WHERE project_id = ? AND status = ?"
                " AND kind IN ('deletion', 'retrieval')",
                (REVOKED, _now_ms(), project_id, PENDING),
            )
            conn.execute("DELETE FROM projects WHERE project_id = ?", (project_id,))
        return project

    # -- service accounts -----------------------------------------------------------------------

    def create_service_account(
        self, project_id: int, name: str = "service-account", *, expires_days: int | None = None
    ) -> ServiceAccount:
        """A new account; the returned value carries the plaintext secret (shown this once)."""
        if self.project_by_id(project_id) is None:
            raise BadRequest(f"no project with id {project_id}")
        account = new_service_account(project_id, name, expires_days)
        assert account.secret is not None
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO service_accounts (username, name, secret_digest, created_at_ms, expires_at_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    account.username,
                    name,
                    digest(account.secret),
                    account.created_at_ms,
                    account.expires_at_ms,
                ),
            )
            conn.execute(
                "INSERT INTO service_account_grants (username, project_id) VALUES (?, ?)",
                (account.username, project_id),
            )
        return account

    def grant(self, username: str, project_id: int) -> None:
        self._conn().execute(
            "INSERT OR IGNORE INTO service_account_grants (username, project_id) VALUES (?, ?)",
            (username, project_id),
        )

    def service_account(self, username: str, secret: str) -> ServiceAccount | None:
        """The account when `secret` matches (revoked or expired included: the caller says which),
        else None. Constant-time: an unknown username is compared against a dummy digest."""
        row = (
            self._conn().execute("SELECT * FROM service_accounts WHERE username = ?", (username,)).fetchone()
        )
        if not secret_matches(row["secret_digest"] if row else None, secret):
            return None
        return self._account(row)

    def is_service_account(self, username: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM service_accounts WHERE username = ?", (username,))
        return row.fetchone() is not None

    def list_service_accounts(self, project_id: int | None = None) -> list[ServiceAccount]:
        if project_id is None:
            rows = self._conn().execute("SELECT * FROM service_accounts ORDER BY created_at_ms, username")
        else:
            rows = self._conn().execute(
                "SELECT a.* FROM service_accounts a JOIN service_account_grants g USING (username)"
                " WHERE g.project_id = ? ORDER BY a.created_at_ms, a.username",
                (project_id,),
            )
        return [self._account(row) for row in rows.fetchall()]

    def revoke_service_account(self, username: str) -> ServiceAccount:
        """Stop the account at once; the row stays (without access) so `list` shows the revocation."""
        cur = self._conn().execute(
            "UPDATE service_accounts SET revoked_at_ms = coalesce(revoked_at_ms, ?) WHERE username = ?",
            (_now_ms(), username),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no service account {username!r}")
        row = self._conn().execute("SELECT * FROM service_accounts WHERE username = ?", (username,))
        return self._account(row.fetchone())

    def _account(self, row: sqlite3.Row) -> ServiceAccount:
        grants = self._conn().execute(
            "SELECT project_id FROM service_account_grants WHERE username = ? ORDER BY project_id",
            (row["username"],),
        )
        return ServiceAccount(
            row["username"],
            row["name"],
            tuple(g[0] for g in grants.fetchall()),
            row["created_at_ms"],
            row["expires_at_ms"],
            row["revoked_at_ms"],
        )

    # -- tasks (GDPR requests, and store work the CLI hands to the running server) ---------------

    def create_task(
        self,
        kind: str,
        project_id: int | None,
        payload: dict[str, Any],
        requested_by: str,
        *,
        delay_ms: int = 0,
    ) -> Task:
        task = new_task(kind, project_id, payload, requested_by)
        now = task.created_at_ms
        self._conn().execute(
            "INSERT INTO tasks (task_id, kind, project_id, status, payload, requested_by, created_at_ms,"
            " run_after_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task.task_id,
                kind,
                project_id,
                PENDING,
                json.dumps(payload),
                requested_by,
                now,
                now + delay_ms,
                now,
            ),
        )
        return task

    def task(self, task_id: str) -> Task | None:
        row = self._conn().execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return _task(row) if row else None

    def project_tasks(self, project_id: int, kind: str) -> list[Task]:
        rows = self._conn().execute(
            "SELECT * FROM tasks WHERE project_id = ? AND kind = ? ORDER BY created_at_ms",
            (project_id, kind),
        )
        return [_task(row) for row in rows.fetchall()]

    def claim_task(self, task_id: str | None = None, now_ms: int | None = None) -> Task | None:
        """Move a due PENDING task (this one, or the oldest) to STARTED and return it; atomic, so
        one runner gets it."""
        now = _now_ms() if now_ms is None else now_ms
        query = "SELECT * FROM tasks WHERE status = ? AND run_after_ms <= ?"
        args: tuple[Any, ...] = (PENDING, now)
        if task_id is not None:
            query += " AND task_id = ?"
            args += (task_id,)
        with self._transaction() as conn:
            row = conn.execute(query + " ORDER BY created_at_ms LIMIT 1", args).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE tasks SET status = ?, updated_at_ms = ? WHERE task_id = ?",
                (STARTED, now, row["task_id"]),
            )
        return _task(row, status=STARTED)

    def finish_task(self, task_id: str, status: str, result: str = "") -> None:
        self._conn().execute(
            "UPDATE tasks SET status = ?, result = ?, updated_at_ms = ? WHERE task_id = ?",
            (status, result, _now_ms(), task_id),
        )

    def cancel_task(self, task_id: str) -> bool:
        """REVOKED if still PENDING; False once it has started or ended."""
        cur = self._conn().execute(
            "UPDATE tasks SET status = ?, updated_at_ms = ? WHERE task_id = ? AND status = ?",
            (REVOKED, _now_ms(), task_id, PENDING),
        )
        return cur.rowcount == 1

    def forget_project_tasks(self, project_id: int, keep: str) -> list[Task]:
        """Delete the task rows of a deleted project (they name its users), but `keep`; returns
        the deleted ones so their files can go too."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM tasks WHERE project_id = ? AND task_id != ?", (project_id, keep)
            ).fetchall()
            conn.execute("DELETE FROM tasks WHERE project_id = ? AND task_id != ?", (project_id, keep))
        return [_task(row) for row in rows]

    def requeue_started_tasks(self) -> int:
        """Tasks a crashed server left STARTED run again (every task kind is idempotent)."""
        cur = self._conn().execute(
            "UPDATE tasks SET status = ?, updated_at_ms = ? WHERE status = ?", (PENDING, _now_ms(), STARTED)
        )
        return cur.rowcount

    def beat(self) -> None:
        """The running server's task runner says it is alive (the CLI then leaves work to it)."""
        self._conn().execute(
            "INSERT INTO runner (id, heartbeat_ms) VALUES (1, ?)"
            " ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
            (_now_ms(),),
        )

    def stop_beating(self) -> None:
        self._conn().execute("DELETE FROM runner")

    def runner_alive(self, within_ms: int) -> bool:
        row = self._conn().execute("SELECT heartbeat_ms FROM runner WHERE id = 1").fetchone()
        return row is not None and _now_ms() - row[0] <= within_ms

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- backup and migration -------------------------------------------------------------------

    def credentials(self) -> StoredCredentials:
        with self._transaction() as conn:  # one consistent snapshot of the three tables
            return StoredCredentials(
                [dict(row) for row in conn.execute("SELECT * FROM projects ORDER BY project_id")],
                [dict(row) for row in conn.execute("SELECT * FROM service_accounts ORDER BY username")],
                [dict(row) for row in conn.execute("SELECT * FROM service_account_grants")],
            )

    def backup_to(self, path: Path) -> None:
        """A consistent copy of the registry (SQLite's online backup), without the backup tasks
        themselves (a restored registry must not run them again) or the runner's heartbeat."""
        target = sqlite3.connect(path, isolation_level=None)
        try:
            self._conn().backup(target)
            target.execute("PRAGMA secure_delete=ON")
            target.execute("DELETE FROM tasks WHERE kind = 'backup'")
            target.execute("DELETE FROM runner")
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
        path.chmod(0o600)


def _project(row: sqlite3.Row) -> Project:
    return Project(
        row["project_id"],
        row["name"],
        row["token"],
        row["signing_secret"],
        row["timezone"],
        row["retention_days"],
        row["signing_secret"] is not None,
        row["id_merge"],
    )


def _task(row: sqlite3.Row, status: str | None = None) -> Task:
    return Task(
        row["task_id"],
        row["kind"],
        row["project_id"],
        status or row["status"],
        json.loads(row["payload"]),
        row["result"],
        row["requested_by"],
        row["created_at_ms"],
    )


# -- schema migrations --------------------------------------------------------------------------


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 1 kept every secret in plain text. Hash service-account secrets, drop project
    plaintext secrets (Basic auth keeps working through the existing digests; a project that
    needs legacy signatures opts in again with `project rotate-secret --legacy-signature`)."""
    projects = _columns(conn, "projects")
    if "api_secret" in projects:
        conn.execute("ALTER TABLE projects ADD COLUMN signing_secret TEXT")
        conn.execute("ALTER TABLE projects ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 0")
        conn.execute("ALTER TABLE projects DROP COLUMN api_secret")
    accounts = _columns(conn, "service_accounts")
    if "secret" in accounts:
        conn.execute("ALTER TABLE service_accounts ADD COLUMN secret_digest TEXT NOT NULL DEFAULT ''")
        conn.execute("ALTER TABLE service_accounts ADD COLUMN expires_at_ms INTEGER")
        conn.execute("ALTER TABLE service_accounts ADD COLUMN revoked_at_ms INTEGER")
        for username, secret in conn.execute("SELECT username, secret FROM service_accounts").fetchall():
            conn.execute(
                "UPDATE service_accounts SET secret_digest = ? WHERE username = ?", (digest(secret), username)
            )
        conn.execute("ALTER TABLE service_accounts DROP COLUMN secret")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Version 3 records each project's identity mode; existing projects get the default."""
    conn.execute("ALTER TABLE projects ADD COLUMN id_merge TEXT NOT NULL DEFAULT 'simplified'")


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_projects = "project_id" in _columns(conn, "projects")
        if version == 0 and has_projects:
            version = 1  # files from before versioning
        while version < SCHEMA_VERSION and version in _MIGRATIONS:
            _MIGRATIONS[version](conn)
            version += 1
        # One statement at a time: executescript would commit the open transaction first.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    # Overwrite what the dropped plaintext columns left behind, in the file and in the WAL.
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
