"""The project, service-account and task registry in ClickHouse, for a `clickhouse://` store.

Every rawevents host (and the CLI, from any machine) reads and writes the same tables, so a
project created through one host works on every host. The SQL is one text for the server and
chdb (the tests run it on chdb). ClickHouse has no transactions and no unique constraints, so:

- Rows are versioned. Every table is a ReplacingMergeTree(version) keyed by the row's identity; a
  change inserts a whole new version (copied server-side by one INSERT … SELECT), a deletion a
  tombstone (`deleted = 1`, credentials blanked). Reads use FINAL, which keeps the newest version
  of each key before WHERE filters it: a rotated secret's old digest never matches, even before
  a merge. Versions are the server's clock in µs, so hosts' clocks do not matter.
- Project ids are random in [1, 2^31), checked against every id ever used (tombstones keep
  deleted ids reserved). Two hosts drawing the same id in the same instant is the one unchecked
  case (about 2^-31 per pair of simultaneous creations). Tokens and secrets are 128-bit random
  values, unique by construction; a lookup matching two rows answers "no project" (fail closed).
- Secrets are SHA-256 digests (`rawevents.projects.digest`), compared with hmac.compare_digest.
- A task leaves PENDING (claimed by a runner, or cancelled) through a claim: each contender
  inserts a claim row stamped by the server's clock, waits `settle_s`, then reads the claims of
  that round; the earliest (time, claim id) wins, and everyone reads the same winner. On a single
  server exactly one contender wins unless a one-row claim insert takes longer than `settle_s`
  inside the server; on a cluster, also unless replication lags more than `settle_s` (use
  `insert_quorum`). Every task kind is idempotent, so a double run costs work, not data.
- Hot lookups (project by token, secret or id; service account by name) are cached for
  `CACHE_SECONDS`: a rotation, revocation or deletion made elsewhere takes effect on this host
  within that bound (at once in the process that made it).
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from cachetools import TTLCache

from rawevents.errors import BadRequest, NotFound, Unsupported
from rawevents.identity import DEFAULT_MODE, validate_mode
from rawevents.projects import (
    PENDING,
    REVOKED,
    STARTED,
    USER_TASK_KINDS,
    CredentialColumn,
    Project,
    ServiceAccount,
    StoredCredentials,
    Task,
    check_retention_days,
    digest,
    new_service_account,
    new_task,
    now_ms,
    same_credential,
    secret_matches,
    validate_timezone,
)
from rawevents.storage.clickhouse.conn import Connection, Engine, Params
from rawevents.storage.clickhouse.pipelines import PIPELINE_SCHEMA, ClickHousePipelines

CACHE_SECONDS = 2.0  # the bound on how long another host's change takes to reach this one
CACHE_ENTRIES = 4096
SETTLE_SECONDS = 1.0  # how long a claimant waits before reading who won
RUNNER_STALE_MS = 15_000  # a STARTED task whose runner has not beaten for this long runs again
CANDIDATES = 3  # due tasks tried per claim_task call

_T = TypeVar("_T")

# {engine} is ReplacingMergeTree(version), or its replicated variant on a cluster (one copy on
# every node: the registry is small and read on every request).
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS registry_projects{cluster} (
    project_id Int32, name String, token String, secret_digest String,
    signing_secret Nullable(String), timezone String, retention_days Int32, created_at_ms Int64,
    deleted UInt8, version UInt64, id_merge String DEFAULT 'simplified'
) ENGINE = {engine} ORDER BY project_id
""",
    # Tables made before projects had an identity mode: existing projects get the default.
    """
ALTER TABLE registry_projects{cluster} ADD COLUMN IF NOT EXISTS id_merge String DEFAULT 'simplified'
""",
    """
CREATE TABLE IF NOT EXISTS registry_service_accounts{cluster} (
    username String, name String, secret_digest String, created_at_ms Int64,
    expires_at_ms Nullable(Int64), revoked_at_ms Nullable(Int64), deleted UInt8, version UInt64
) ENGINE = {engine} ORDER BY username
""",
    """
CREATE TABLE IF NOT EXISTS registry_grants{cluster} (
    username String, project_id Int32, deleted UInt8, version UInt64
) ENGINE = {engine} ORDER BY (username, project_id)
""",
    """
CREATE TABLE IF NOT EXISTS registry_tasks{cluster} (
    task_id String, kind String, project_id Nullable(Int32), status String, payload String,
    result String, requested_by String, created_at_ms Int64, run_after_ms Int64,
    updated_at_ms Int64, attempt UInt32, claimed_by String, deleted UInt8, version UInt64
) ENGINE = {engine} ORDER BY task_id
""",
    """
CREATE TABLE IF NOT EXISTS registry_claims{cluster} (
    task_id String, attempt UInt32, claim_id String, claimed_us Int64
) ENGINE = {log_engine} ORDER BY (task_id, attempt, claimed_us, claim_id)
TTL toDateTime(intDiv(claimed_us, 1000000)) + INTERVAL 30 DAY
""",
    """
CREATE TABLE IF NOT EXISTS registry_runners{cluster} (
    runner String, heartbeat_ms Int64, deleted UInt8, version UInt64
) ENGINE = {engine} ORDER BY runner
TTL toDateTime(intDiv(heartbeat_ms, 1000)) + INTERVAL 1 DAY
""",
)
# One Keeper path per table for the whole cluster (no {shard}): every node holds every row.
_REPLICA_PATH = "'/clickhouse/tables/rawevents_registry/{database}/{table}', '{replica}'"


def _table_engines(cluster: str | None) -> dict[str, str]:
    if cluster is None:
        return {"cluster": "", "engine": "ReplacingMergeTree(version)", "log_engine": "MergeTree"}
    return {
        "cluster": f" ON CLUSTER {cluster}",
        "engine": f"ReplicatedReplacingMergeTree({_REPLICA_PATH}, version)",
        "log_engine": f"ReplicatedMergeTree({_REPLICA_PATH})",
    }


_NOW_US = "toUnixTimestamp64Micro(now64(6))"
_NEXT_VERSION = f"greatest(version + 1, {_NOW_US})"

_PROJECTS = (
    "SELECT project_id, name, token, secret_digest, signing_secret, timezone, retention_days, id_merge"
    " FROM registry_projects FINAL WHERE deleted = 0"
)
# A new version of a project row: {token}, {secret_digest}, {signing_secret}, {retention_days},
# {id_merge} and {deleted} are each the new value's SQL, or the column's own name to keep it.
_PROJECT_VERSION = (
    "INSERT INTO registry_projects (project_id, name, token, secret_digest, signing_secret, timezone,"
    " retention_days, created_at_ms, deleted, version, id_merge)"
    " SELECT project_id, name, {token}, {secret_digest}, {signing_secret}, timezone, {retention_days},"
    f" created_at_ms, {{deleted}}, {_NEXT_VERSION}, {{id_merge}}"
    " FROM registry_projects FINAL WHERE project_id = {{p:Int32}} AND deleted = 0"
)
_ACCOUNTS = (
    "SELECT username, name, secret_digest, created_at_ms, expires_at_ms, revoked_at_ms"
    " FROM registry_service_accounts FINAL WHERE deleted = 0"
)
_GRANTS = "SELECT username, project_id FROM registry_grants FINAL WHERE deleted = 0"
_TASKS = (
    "SELECT task_id, kind, project_id, status, payload, result, requested_by, created_at_ms, attempt"
    " FROM registry_tasks FINAL WHERE deleted = 0"
)
# A new version of the task rows the WHERE selects, with status/result/attempt/claimed_by set.
_TASK_VERSION = (
    "INSERT INTO registry_tasks (task_id, kind, project_id, status, payload, result, requested_by,"
    " created_at_ms, run_after_ms, updated_at_ms, attempt, claimed_by, deleted, version)"
    " SELECT task_id, kind, project_id, {{status:String}}, payload, {result}, requested_by,"
    " created_at_ms, run_after_ms, {{now:Int64}}, attempt + {{bump:UInt32}}, {claimed_by}, 0,"
    f" {_NEXT_VERSION} FROM registry_tasks FINAL WHERE deleted = 0 AND {{where}}"
)
# The (task_id, attempt) pairs a claim is about, from two array parameters.
_KEYS = "SELECT arrayJoin(arrayZip({ids:Array(String)}, {attempts:Array(UInt32)}))"
_LIVE_RUNNERS = (
    "SELECT runner FROM registry_runners FINAL WHERE deleted = 0"
    " AND heartbeat_ms >= toUnixTimestamp64Milli(now64(3)) - {within:Int64}"
)


class ClickHouseRegistry(ClickHousePipelines):
    """The registry over a ClickHouse engine; thread-safe (a pool of connections). Data
    pipelines' tables: the ClickHousePipelines mixin."""

    def __init__(
        self,
        engine: Engine,
        *,
        owns_engine: bool = False,
        cache_seconds: float = CACHE_SECONDS,
        settle_s: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._owns_engine = owns_engine
        self._settle_s = settle_s
        self._runner = secrets.token_hex(8)  # this process's task runner, in claims and heartbeats
        self._idle: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._cache: TTLCache[tuple[object, ...], Any] = TTLCache(CACHE_ENTRIES, cache_seconds, timer=clock)
        with self._connection() as con:
            for statement in (*SCHEMA, *PIPELINE_SCHEMA):
                con.command(statement.format(**_table_engines(engine.cluster)))

    # -- connections and the cache --------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        try:
            con = self._idle.get_nowait()
        except queue.Empty:
            con = self._engine.connect()
        try:
            yield con
        finally:
            self._idle.put(con)

    def _rows(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        with self._connection() as con:
            rows: list[dict[str, Any]] = con.table(sql, params).to_pylist()
        return rows

    def _command(self, sql: str, params: Params | None = None) -> None:
        with self._connection() as con:
            con.command(sql, params)
        self._forget()

    def _cached(self, key: tuple[object, ...], load: Callable[[], _T]) -> _T:
        with self._lock:
            if key in self._cache:
                found: _T = self._cache[key]
                return found
        value = load()
        with self._lock:
            self._cache[key] = value
        return value

    def _forget(self) -> None:
        """After a write: this process sees its own change at once."""
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break
        if self._owns_engine:
            self._engine.close()

    # -- projects -------------------------------------------------------------------------------

    def create_project(
        self,
        name: str,
        timezone: str = "UTC",
        *,
        legacy_signature: bool = False,
        id_merge: str = DEFAULT_MODE,
    ) -> Project:
        validate_timezone(timezone)
        validate_mode(id_merge)
        token, api_secret = secrets.token_hex(16), secrets.token_hex(16)
        project_id = self._unused_project_id()
        self._command(
            "INSERT INTO registry_projects (project_id, name, token, secret_digest, signing_secret,"
            " timezone, retention_days, created_at_ms, deleted, version, id_merge)"
            " SELECT {p:Int32}, {name:String}, {token:String}, {digest:String}, {signing:Nullable(String)},"
            f" {{tz:String}}, 0, {{now:Int64}}, 0, {_NOW_US}, {{mode:String}}",
            {
                "p": project_id,
                "name": name,
                "token": token,
                "digest": digest(api_secret),
                "signing": api_secret if legacy_signature else None,
                "tz": timezone,
                "now": now_ms(),
                "mode": id_merge,
            },
        )
        return Project(project_id, name, token, api_secret, timezone, 0, legacy_signature, id_merge)

    def _unused_project_id(self) -> int:
        while True:
            candidate = secrets.randbelow(2**31 - 1) + 1
            # Without FINAL: every version counts, tombstones included (ids are never reused).
            used = self._rows(
                "SELECT count() AS n FROM registry_projects WHERE project_id = {p:Int32}", {"p": candidate}
            )
            if used[0]["n"] == 0:
                return candidate

    def list_projects(self) -> list[Project]:
        return [_project(row) for row in self._rows(_PROJECTS + " ORDER BY project_id")]

    def project_by_id(self, project_id: int) -> Project | None:
        return self._cached(("id", project_id), lambda: self._fresh_project(project_id))

    def _fresh_project(self, project_id: int) -> Project | None:
        rows = self._rows(_PROJECTS + " AND project_id = {p:Int32}", {"p": project_id})
        return _project(rows[0]) if len(rows) == 1 else None

    def require_project(self, project_id: int) -> Project:
        project = self._fresh_project(project_id)
        if project is None:
            raise NotFound(f"no project with id {project_id}")
        return project

    def project_by_token(self, token: str) -> Project | None:
        return self._project_matching("token", token)

    def project_by_secret(self, secret: str) -> Project | None:
        return self._project_matching("secret_digest", digest(secret))

    def _project_matching(self, column: CredentialColumn, value: str) -> Project | None:
        """The project whose `column` holds `value`, confirmed by a constant-time comparison."""
        rows = self._cached(
            (column, value),
            lambda: self._rows(_PROJECTS + f" AND {column} = {{v:String}} LIMIT 2", {"v": value}),
        )
        if len(rows) != 1 or not same_credential(rows[0][column], value):
            return None
        return _project(rows[0])

    def rotate_secret(self, project_id: int, *, legacy_signature: bool | None = None) -> Project:
        project = self.require_project(project_id)
        keep = project.legacy_signature if legacy_signature is None else legacy_signature
        api_secret = secrets.token_hex(16)
        self._new_project_version(
            project_id,
            {"secret_digest": "{d:String}", "signing_secret": "{s:Nullable(String)}"},
            {"d": digest(api_secret), "s": api_secret if keep else None},
        )
        return replace(project, api_secret=api_secret, legacy_signature=keep)

    def set_retention(self, project_id: int, days: int) -> Project:
        check_retention_days(days)
        self.require_project(project_id)
        self._new_project_version(project_id, {"retention_days": "{days:Int32}"}, {"days": days})
        return self.require_project(project_id)

    def set_id_merge(self, project_id: int, mode: str) -> Project:
        validate_mode(mode)
        self.require_project(project_id)
        self._new_project_version(project_id, {"id_merge": "{mode:String}"}, {"mode": mode})
        return self.require_project(project_id)

    def _new_project_version(self, project_id: int, changes: dict[str, str], params: dict[str, Any]) -> None:
        kept = ("token", "secret_digest", "signing_secret", "retention_days", "id_merge")
        columns = {name: changes.get(name, name) for name in kept}
        sql = _PROJECT_VERSION.format(deleted=changes.get("deleted", "0"), **columns)
        self._command(sql, {"p": project_id, **params})

    def delete_project(self, project_id: int) -> Project:
        project = self.require_project(project_id)
        # Credentials first: they stop working here at once, elsewhere within CACHE_SECONDS.
        tombstone = {"token": "''", "secret_digest": "''", "signing_secret": "NULL", "deleted": "1"}
        self._new_project_version(project_id, tombstone, {})
        self._revoke_pending_user_tasks(project_id)
        p = {"p": project_id}
        self._command(
            "INSERT INTO registry_grants (username, project_id, deleted, version)"
            f" SELECT username, project_id, 1, {_NEXT_VERSION} FROM registry_grants FINAL"
            " WHERE project_id = {p:Int32} AND deleted = 0",
            p,
        )
        # Accounts that had this project (tombstoned grants) and now have none go too.
        self._command(
            "INSERT INTO registry_service_accounts (username, name, secret_digest, created_at_ms,"
            " expires_at_ms, revoked_at_ms, deleted, version)"
            " SELECT username, name, '', created_at_ms, expires_at_ms, revoked_at_ms, 1,"
            f" {_NEXT_VERSION} FROM registry_service_accounts FINAL WHERE deleted = 0"
            " AND username IN (SELECT username FROM registry_grants FINAL WHERE project_id = {p:Int32})"
            " AND username NOT IN (SELECT username FROM registry_grants FINAL WHERE deleted = 0)",
            p,
        )
        return project

    def _revoke_pending_user_tasks(self, project_id: int) -> None:
        pending = self._rows(
            _TASKS
            + " AND project_id = {p:Int32} AND status = {s:String} AND has({kinds:Array(String)}, kind)",
            {"p": project_id, "s": PENDING, "kinds": list(USER_TASK_KINDS)},
        )
        for row in self._win(pending):
            self._set_task(row["task_id"], REVOKED)

    # -- service accounts -----------------------------------------------------------------------

    def create_service_account(
        self, project_id: int, name: str = "service-account", *, expires_days: int | None = None
    ) -> ServiceAccount:
        if self._fresh_project(project_id) is None:
            raise BadRequest(f"no project with id {project_id}")
        account = new_service_account(project_id, name, expires_days)
        assert account.secret is not None
        # The grant first: without its account row it grants nothing.
        self._command(
            "INSERT INTO registry_grants (username, project_id, deleted, version)"
            f" SELECT {{u:String}}, {{p:Int32}}, 0, {_NOW_US}",
            {"u": account.username, "p": project_id},
        )
        self._command(
            "INSERT INTO registry_service_accounts (username, name, secret_digest, created_at_ms,"
            " expires_at_ms, revoked_at_ms, deleted, version)"
            " SELECT {u:String}, {name:String}, {digest:String}, {created:Int64},"
            f" {{expires:Nullable(Int64)}}, NULL, 0, {_NOW_US}",
            {
                "u": account.username,
                "name": name,
                "digest": digest(account.secret),
                "created": account.created_at_ms,
                "expires": account.expires_at_ms,
            },
        )
        return account

    def service_account(self, username: str, secret: str) -> ServiceAccount | None:
        """Constant-time: an unknown username is compared against a dummy digest."""
        found = self._cached(("account", username), lambda: self._fresh_account(username))
        # The digest is compared first, also for an unknown account: `found is None` after it only
        # narrows the type (testing it first would skip the comparison and time apart the unknown).
        if not secret_matches(found[0] if found else None, secret) or found is None:
            return None
        return found[1]

    def _fresh_account(self, username: str) -> tuple[str, ServiceAccount] | None:
        """The account and its secret digest."""
        rows = self._rows(_ACCOUNTS + " AND username = {u:String}", {"u": username})
        if len(rows) != 1:
            return None
        grants = self._rows(_GRANTS + " AND username = {u:String} ORDER BY project_id", {"u": username})
        return rows[0]["secret_digest"], _account(rows[0], tuple(g["project_id"] for g in grants))

    def list_service_accounts(self, project_id: int | None = None) -> list[ServiceAccount]:
        sql, params = _ACCOUNTS, {}
        if project_id is not None:
            sql += f" AND username IN (SELECT username FROM ({_GRANTS}) WHERE project_id = {{p:Int32}})"
            params = {"p": project_id}
        grants: dict[str, list[int]] = {}
        for grant in self._rows(_GRANTS + " ORDER BY username, project_id"):
            grants.setdefault(grant["username"], []).append(grant["project_id"])
        rows = self._rows(sql + " ORDER BY created_at_ms, username", params)
        return [_account(row, tuple(grants.get(row["username"], ()))) for row in rows]

    def revoke_service_account(self, username: str) -> ServiceAccount:
        if self._fresh_account(username) is None:
            raise NotFound(f"no service account {username!r}")
        self._command(
            "INSERT INTO registry_service_accounts (username, name, secret_digest, created_at_ms,"
            " expires_at_ms, revoked_at_ms, deleted, version)"
            " SELECT username, name, secret_digest, created_at_ms, expires_at_ms,"
            f" coalesce(revoked_at_ms, {{now:Int64}}), 0, {_NEXT_VERSION}"
            " FROM registry_service_accounts FINAL WHERE username = {u:String} AND deleted = 0",
            {"u": username, "now": now_ms()},
        )
        found = self._fresh_account(username)
        assert found is not None
        return found[1]

    # -- tasks ----------------------------------------------------------------------------------

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
        self._command(
            "INSERT INTO registry_tasks (task_id, kind, project_id, status, payload, result, requested_by,"
            " created_at_ms, run_after_ms, updated_at_ms, attempt, claimed_by, deleted, version)"
            " SELECT {t:String}, {kind:String}, {p:Nullable(Int32)}, {status:String}, {payload:String}, '',"
            f" {{by:String}}, {{now:Int64}}, {{after:Int64}}, {{now:Int64}}, 0, '', 0, {_NOW_US}",
            {
                "t": task.task_id,
                "kind": kind,
                "p": project_id,
                "status": PENDING,
                "payload": json.dumps(payload),
                "by": requested_by,
                "now": now,
                "after": now + delay_ms,
            },
        )
        return task

    def task(self, task_id: str) -> Task | None:
        rows = self._rows(_TASKS + " AND task_id = {t:String}", {"t": task_id})
        return _task(rows[0]) if rows else None

    def project_tasks(self, project_id: int, kind: str) -> list[Task]:
        rows = self._rows(
            _TASKS + " AND project_id = {p:Int32} AND kind = {kind:String} ORDER BY created_at_ms, task_id",
            {"p": project_id, "kind": kind},
        )
        return [_task(row) for row in rows]

    def claim_task(self, task_id: str | None = None, now_ms: int | None = None) -> Task | None:
        """Move a due PENDING task (this one, or the oldest) to STARTED and return it; a claim
        decides between runners on several hosts (module docstring)."""
        sql = _TASKS + " AND status = {s:String} AND run_after_ms <= {now:Int64}"
        params: dict[str, Any] = {"s": PENDING, "now": _clock_ms(now_ms)}
        if task_id is not None:
            sql += " AND task_id = {t:String}"
            params["t"] = task_id
        for row in self._rows(sql + f" ORDER BY created_at_ms, task_id LIMIT {CANDIDATES}", params):
            if self._win([row]):
                self._set_task(row["task_id"], STARTED, claimed_by=self._runner)
                return _task(row, status=STARTED)
        return None

    def _win(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows (PENDING tasks at their attempt) whose claim this call wins."""
        if not rows:
            return []
        claim = secrets.token_hex(16)
        keys = {"ids": [r["task_id"] for r in rows], "attempts": [r["attempt"] for r in rows]}
        self._command(
            "INSERT INTO registry_claims (task_id, attempt, claim_id, claimed_us)"
            f" SELECT t.1, t.2, {{c:String}}, {_NOW_US} FROM ({_KEYS} AS t)",
            {"c": claim, **keys},
        )
        time.sleep(self._settle_s)
        winners = self._rows(
            "SELECT task_id, argMin(claim_id, (claimed_us, claim_id)) AS winner FROM registry_claims"
            f" WHERE (task_id, attempt) IN ({_KEYS}) GROUP BY task_id",
            keys,
        )
        won = {w["task_id"] for w in winners if w["winner"] == claim}
        return [r for r in rows if r["task_id"] in won]

    def _set_task(
        self,
        task_id: str,
        status: str,
        *,
        result: str | None = None,
        claimed_by: str | None = None,
    ) -> None:
        params: dict[str, Any] = {"t": task_id, "status": status, "now": now_ms(), "bump": 0}
        if result is not None:
            params["result"] = result
        if claimed_by is not None:
            params["by"] = claimed_by
        sql = _TASK_VERSION.format(
            result="result" if result is None else "{result:String}",
            claimed_by="claimed_by" if claimed_by is None else "{by:String}",
            where="task_id = {t:String}",
        )
        self._command(sql, params)

    def finish_task(self, task_id: str, status: str, result: str = "") -> None:
        self._set_task(task_id, status, result=result)

    def cancel_task(self, task_id: str) -> bool:
        rows = self._rows(
            _TASKS + " AND task_id = {t:String} AND status = {s:String}", {"t": task_id, "s": PENDING}
        )
        if not self._win(rows):
            return False
        self._set_task(task_id, REVOKED)
        return True

    def forget_project_tasks(self, project_id: int, keep: str) -> list[Task]:
        where = "project_id = {p:Int32} AND task_id != {keep:String}"
        params = {"p": project_id, "keep": keep}
        rows = self._rows(_TASKS + f" AND {where}", params)
        # A real delete (every version): these rows name the project's users.
        self._command(f"DELETE FROM registry_tasks WHERE {where}", params)
        return [_task(row) for row in rows]

    def requeue_started_tasks(self) -> int:
        """STARTED tasks whose runner stopped beating (it crashed) go back to PENDING, in a new
        claim round."""
        stale = f"status = {{s:String}} AND claimed_by NOT IN ({_LIVE_RUNNERS})"
        params: dict[str, Any] = {"s": STARTED, "within": RUNNER_STALE_MS}
        ids = [row["task_id"] for row in self._rows(_TASKS + f" AND {stale}", params)]
        if ids:
            sql = _TASK_VERSION.format(
                result="result", claimed_by="''", where=f"has({{ids:Array(String)}}, task_id) AND {stale}"
            )
            self._command(sql, {**params, "ids": ids, "status": PENDING, "now": now_ms(), "bump": 1})
        return len(ids)

    def beat(self) -> None:
        self._runner_row(deleted=0)

    def stop_beating(self) -> None:
        self._runner_row(deleted=1)

    def _runner_row(self, deleted: int) -> None:
        with self._connection() as con:  # no cache to clear: nothing cached depends on it
            con.command(
                "INSERT INTO registry_runners (runner, heartbeat_ms, deleted, version)"
                f" SELECT {{r:String}}, toUnixTimestamp64Milli(now64(3)), {{d:UInt8}}, {_NOW_US}",
                {"r": self._runner, "d": deleted},
            )

    def runner_alive(self, within_ms: int) -> bool:
        """Some host's runner beat within `within_ms` of the server's clock."""
        return bool(self._rows(_LIVE_RUNNERS + " LIMIT 1", {"within": within_ms}))

    # -- migration and backup -------------------------------------------------------------------

    def adopt(self, source: StoredCredentials) -> dict[str, int]:
        """Take over an embedded store's registry (`rawevents migrate`): projects keep their ids
        (their events are stored under them), tokens and secret digests; accounts their digests
        and grants. The rows go in as version 1, so whatever changed here since wins and a re-run
        changes nothing. Refuses ids this registry already gave to other projects."""
        self._check_ids_free(source.projects)
        tables = [
            ("registry_projects", source.projects, _PROJECT_TYPES),
            ("registry_service_accounts", source.accounts, _ACCOUNT_TYPES),
            ("registry_grants", source.grants, _GRANT_TYPES),
        ]
        with self._connection() as con:
            for table, rows, types in tables:
                if rows:
                    con.insert(table, _adopted(rows, types))
        self._forget()
        return {"projects": len(source.projects), "service_accounts": len(source.accounts)}

    def _check_ids_free(self, projects: list[dict[str, Any]]) -> None:
        tokens = {row["project_id"]: row["token"] for row in projects}
        used = self._rows(
            "SELECT DISTINCT project_id, token FROM registry_projects"
            " WHERE has({ids:Array(Int32)}, project_id) AND token != ''",
            {"ids": list(tokens)},
        )
        taken = sorted({row["project_id"] for row in used if row["token"] != tokens[row["project_id"]]})
        if taken:
            raise BadRequest(
                f"project ids {taken} are already used by other projects in this ClickHouse registry"
            )

    def backup_to(self, path: Path) -> None:
        raise Unsupported(
            "rawevents backup copies the embedded stores' registry file; a ClickHouse registry is"
            " backed up with its database (ClickHouse's BACKUP … TO, docs/scale-out.md)"
        )


# Column types of the rows `adopt` inserts (SQLite's rows, plus deleted = 0 and version = 1).
_PROJECT_TYPES = {
    "project_id": pa.int32(),
    "name": pa.string(),
    "token": pa.string(),
    "secret_digest": pa.string(),
    "signing_secret": pa.string(),
    "timezone": pa.string(),
    "retention_days": pa.int32(),
    "created_at_ms": pa.int64(),
    "id_merge": pa.string(),
}
_ACCOUNT_TYPES = {
    "username": pa.string(),
    "name": pa.string(),
    "secret_digest": pa.string(),
    "created_at_ms": pa.int64(),
    "expires_at_ms": pa.int64(),
    "revoked_at_ms": pa.int64(),
}
_GRANT_TYPES = {"username": pa.string(), "project_id": pa.int32()}


def _adopted(rows: list[dict[str, Any]], types: dict[str, pa.DataType]) -> pa.Table:
    columns = {name: pa.array([row[name] for row in rows], kind) for name, kind in types.items()}
    columns["deleted"] = pa.array([0] * len(rows), pa.uint8())
    columns["version"] = pa.array([1] * len(rows), pa.uint64())
    return pa.table(columns)


def _clock_ms(given: int | None) -> int:
    return now_ms() if given is None else given


def _project(row: dict[str, Any]) -> Project:
    signing = row["signing_secret"]
    return Project(
        row["project_id"],
        row["name"],
        row["token"],
        signing,
        row["timezone"],
        row["retention_days"],
        signing is not None,
        row["id_merge"],
    )


def _account(row: dict[str, Any], projects: tuple[int, ...]) -> ServiceAccount:
    return ServiceAccount(
        row["username"],
        row["name"],
        projects,
        row["created_at_ms"],
        row["expires_at_ms"],
        row["revoked_at_ms"],
    )


def _task(row: dict[str, Any], status: str | None = None) -> Task:
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
