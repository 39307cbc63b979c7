"""Project and service-account registry, kept in SQLite beside the event store.

SQLite (WAL mode) lets `rawevents project create` write while `rawevents serve` is running: the
server reads the registry on every lookup, so a new project is visible without a restart.
Secrets are looked up by their SHA-256 digest and then compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rawevents.errors import BadRequest

REGISTRY_FILE = "registry.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    api_secret TEXT NOT NULL,
    secret_digest TEXT NOT NULL UNIQUE,
    timezone TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS service_accounts (
    username TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS service_account_grants (
    username TEXT NOT NULL REFERENCES service_accounts(username),
    project_id INTEGER NOT NULL REFERENCES projects(project_id),
    PRIMARY KEY (username, project_id)
);
"""


@dataclass(frozen=True, slots=True)
class Project:
    project_id: int
    name: str
    token: str
    api_secret: str
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def public_dict(self) -> dict[str, object]:
        return {
            "project_id": self.project_id,
            "name": self.name,
            "token": self.token,
            "api_secret": self.api_secret,
            "timezone": self.timezone,
        }


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    username: str
    name: str
    secret: str
    projects: tuple[int, ...]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def validate_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadRequest(
            f"unknown timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from exc
    return name


class Registry:
    """Thread-safe access to the registry file; one SQLite connection per thread."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / REGISTRY_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)
        # It holds project and service-account secrets: owner-only, like an SSH key.
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
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    # -- projects -------------------------------------------------------------------------------

    def create_project(self, name: str, timezone: str = "UTC") -> Project:
        validate_timezone(timezone)
        token = secrets.token_hex(16)
        api_secret = secrets.token_hex(16)
        conn = self._conn()
        cur = conn.execute(
            "INSERT INTO projects (name, token, api_secret, secret_digest, timezone, created_at_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, token, api_secret, _digest(api_secret), timezone, int(time.time() * 1000)),
        )
        project_id = cur.lastrowid
        assert project_id is not None
        return Project(project_id, name, token, api_secret, timezone)

    def list_projects(self) -> list[Project]:
        rows = self._conn().execute("SELECT * FROM projects ORDER BY project_id").fetchall()
        return [_project(row) for row in rows]

    def project_by_id(self, project_id: int) -> Project | None:
        row = self._conn().execute("SELECT * FROM projects WHERE project_id = ?", (project_id,)).fetchone()
        return _project(row) if row else None

    def project_by_token(self, token: str) -> Project | None:
        row = self._conn().execute("SELECT * FROM projects WHERE token = ?", (token,)).fetchone()
        if row is None or not hmac.compare_digest(
            row["token"].encode(), token.encode("utf-8", "surrogatepass")
        ):
            return None
        return _project(row)

    def project_by_secret(self, secret: str) -> Project | None:
        row = (
            self._conn()
            .execute("SELECT * FROM projects WHERE secret_digest = ?", (_digest(secret),))
            .fetchone()
        )
        if row is None:
            return None
        if not hmac.compare_digest(row["api_secret"].encode(), secret.encode("utf-8", "surrogatepass")):
            return None
        return _project(row)

    # -- service accounts -----------------------------------------------------------------------

    def create_service_account(self, project_id: int, name: str = "service-account") -> ServiceAccount:
        if self.project_by_id(project_id) is None:
            raise BadRequest(f"no project with id {project_id}")
        username = f"{_slug(name)}.{secrets.token_hex(4)}.mp-service-account"
        secret = secrets.token_urlsafe(24)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO service_accounts (username, name, secret, created_at_ms) VALUES (?, ?, ?, ?)",
                (username, name, secret, int(time.time() * 1000)),
            )
            conn.execute(
                "INSERT INTO service_account_grants (username, project_id) VALUES (?, ?)",
                (username, project_id),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ServiceAccount(username, name, secret, (project_id,))

    def grant(self, username: str, project_id: int) -> None:
        self._conn().execute(
            "INSERT OR IGNORE INTO service_account_grants (username, project_id) VALUES (?, ?)",
            (username, project_id),
        )

    def service_account(self, username: str, secret: str) -> ServiceAccount | None:
        """The account when `secret` matches, else None (constant-time comparison)."""
        conn = self._conn()
        row = conn.execute("SELECT * FROM service_accounts WHERE username = ?", (username,)).fetchone()
        # Compare against a dummy when the user is unknown so both paths cost the same.
        expected = row["secret"] if row else secrets.token_urlsafe(24)
        matches = hmac.compare_digest(expected.encode(), secret.encode("utf-8", "surrogatepass"))
        if row is None or not matches:
            return None
        grants = conn.execute(
            "SELECT project_id FROM service_account_grants WHERE username = ? ORDER BY project_id",
            (username,),
        ).fetchall()
        return ServiceAccount(row["username"], row["name"], row["secret"], tuple(g[0] for g in grants))


def _project(row: sqlite3.Row) -> Project:
    return Project(row["project_id"], row["name"], row["token"], row["api_secret"], row["timezone"])


def _slug(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    return cleaned or "sa"
