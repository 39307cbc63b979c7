"""Credential parsing and resolution for every auth style Mixpanel clients send (compat §3).

Framework-free: callers pass the raw `Authorization` header and the merged parameters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from rawevents.errors import BadRequest, Forbidden, Unauthorized
from rawevents.projects import Project, ProjectRegistry, ServiceAccount

INVALID_SECRET = (
    "Unauthorized, invalid project secret. See docs for more information: "
    "https://developer.mixpanel.com/reference/authentication#project-secret"
)
INVALID_SERVICE_ACCOUNT = (
    "Unauthorized, invalid service account credentials. See docs for more information: "
    "https://developer.mixpanel.com/reference/service-accounts"
)
REVOKED_SERVICE_ACCOUNT = "Unauthorized, this service account has been revoked"
NO_SIGNING_SECRET = (
    "Invalid API signature: this project keeps its secret hashed; legacy signatures need "
    "`rawevents project rotate-secret --legacy-signature`"
)


class ServiceAccountUnauthorized(Unauthorized):
    """A service account's credentials were refused: its message names the service account."""


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: str
    password: str


def parse_basic(header: str | None) -> BasicCredentials | None:
    """Decode `Basic …` leniently: standard or URL-safe base64, missing padding, no colon
    (password empty), or plain-text `user:secret` as the docs allow."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    value = value.strip()
    decoded = _b64decode_lenient(value)
    if decoded is None or (":" in value and ":" not in decoded):
        # Not base64 (or base64 by accident of the alphabet while the raw text has the colon).
        decoded = value
    username, _, password = decoded.partition(":")
    return BasicCredentials(username, password)


def _b64decode_lenient(value: str) -> str | None:
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _project_id_param(params: Mapping[str, str]) -> int | None:
    raw = params.get("project_id")
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw).strip())
    except ValueError as exc:
        raise BadRequest(f"project_id must be an integer, got {raw!r}") from exc


def authenticate_query(
    registry: ProjectRegistry,
    authorization: str | None,
    params: Mapping[str, str],
    *,
    legacy_signature: bool = True,
    now: float | None = None,
) -> Project:
    """The project an export/query request may read (compat §3.6), or Unauthorized/Forbidden."""
    if "sig" in params:
        if not legacy_signature:
            raise BadRequest("invalid parameter: sig")
        return _authenticate_signature(registry, params, now)
    credentials = parse_basic(authorization)
    project_id = _project_id_param(params)
    if credentials is None:
        raise Unauthorized(
            "missing credentials: send the project secret or a service account with HTTP Basic auth"
        )
    try:
        return _resolve_secret_or_account(registry, credentials, project_id, now)
    except Unauthorized as refused:
        # A plain-text secret can happen to be valid base64 too: try the text as sent.
        plain = _plain_basic(authorization)
        if plain is None or plain == credentials:
            raise
        try:
            return _resolve_secret_or_account(registry, plain, project_id, now)
        except Unauthorized:
            raise refused from None  # the decoded reading's reason is the one to report


def _plain_basic(header: str | None) -> BasicCredentials | None:
    value = (header or "").strip().partition(" ")[2].strip()
    if not value:
        return None
    username, _, password = value.partition(":")
    return BasicCredentials(username, password)


def authenticate_import(
    registry: ProjectRegistry, authorization: str | None, params: Mapping[str, str]
) -> Project | None:
    """The project of an `/import` request: service account + project_id, project secret, or the
    project token as Basic username (compat §3.4). None when no credentials were sent at all."""
    credentials = parse_basic(authorization)
    if credentials is None:
        return None
    project_id = _project_id_param(params)
    try:
        return _resolve_secret_or_account(registry, credentials, project_id)
    except Unauthorized:
        if project_id is None and not credentials.password:
            project = registry.project_by_token(credentials.username)
            if project is not None:
                return project
        raise


def _resolve_secret_or_account(
    registry: ProjectRegistry, credentials: BasicCredentials, project_id: int | None, now: float | None = None
) -> Project:
    if project_id is not None and credentials.password:
        # `user:secret` with a project_id can only be a service account (a project secret has no
        # password): say so when it is refused, without telling whether the username exists.
        account = check_service_account(registry, credentials.username, credentials.password, now)
        if project_id not in account.projects:
            raise Forbidden(f"service account has no access to project {project_id}")
        project = registry.project_by_id(project_id)
        if project is None:
            raise Forbidden(f"service account has no access to project {project_id}")
        return project
    project = registry.project_by_secret(credentials.username) if not credentials.password else None
    if project is None:
        raise Unauthorized(INVALID_SECRET)
    if project_id is not None and project_id != project.project_id:
        raise Forbidden(f"project secret does not belong to project {project_id}")
    return project


def check_service_account(
    registry: ProjectRegistry, username: str, secret: str, now: float | None = None
) -> ServiceAccount:
    """The account, if the secret matches and it is neither revoked nor expired."""
    account = registry.service_account(username, secret)
    if account is None:
        raise ServiceAccountUnauthorized(INVALID_SERVICE_ACCOUNT)
    if account.revoked_at_ms is not None:
        raise ServiceAccountUnauthorized(REVOKED_SERVICE_ACCOUNT)
    now_ms = int((time.time() if now is None else now) * 1000)
    if account.expires_at_ms is not None and account.expired(now_ms):
        expired_on = time.strftime("%Y-%m-%d", time.gmtime(account.expires_at_ms / 1000))
        raise ServiceAccountUnauthorized(f"Unauthorized, this service account expired on {expired_on}")
    return account


def signature(params: Mapping[str, str], secret: str, *, sort_pairs: bool = False) -> str:
    """Mixpanel's legacy request signature: md5 of the sorted `k=v` pairs (excluding `sig` and
    `callback`) concatenated, then the secret. `sort_pairs` sorts the joined pairs instead of the
    keys, as some clients do; the two differ only for keys that prefix each other."""
    pairs = [(k, v) for k, v in params.items() if k not in ("sig", "callback")]
    if sort_pairs:
        text = "".join(sorted(f"{k}={v}" for k, v in pairs))
    else:
        text = "".join(f"{k}={v}" for k, v in sorted(pairs))
    return hashlib.md5((text + secret).encode("utf-8")).hexdigest()


def _authenticate_signature(
    registry: ProjectRegistry, params: Mapping[str, str], now: float | None
) -> Project:
    api_key = params.get("api_key", "")
    project = registry.project_by_token(api_key) if api_key else None
    if project is None:
        raise Unauthorized("Invalid API key")
    try:
        expire = int(params.get("expire", ""))
    except ValueError as exc:
        raise Unauthorized("Expired request") from exc
    if (time.time() if now is None else now) > expire:
        raise Unauthorized("Expired request")
    if project.api_secret is None:
        raise Unauthorized(NO_SIGNING_SECRET)
    sent = params.get("sig", "").lower().encode()
    ok = False
    for sort_pairs in (False, True):
        expected = signature(params, project.api_secret, sort_pairs=sort_pairs).encode()
        ok |= hmac.compare_digest(expected, sent)
    if not ok:
        raise Unauthorized("Invalid API signature")
    return project


@dataclass(frozen=True, slots=True)
class GdprCaller:
    project: Project
    requested_by: str  # the service account's username, or "project-secret"


MISSING_BEARER = (
    "missing credentials: send `Authorization: Bearer <project secret>` or "
    "`Authorization: Bearer <service account username>:<secret>`"
)


def authenticate_gdpr(
    registry: ProjectRegistry, authorization: str | None, params: Mapping[str, str]
) -> GdprCaller:
    """The GDPR API's caller. Mixpanel authenticates it with a personal OAuth token; self-hosted,
    the bearer token is the project secret or `username:secret` of a service account with access
    to the project (HTTP Basic with the same credentials works too). `token` names the project."""
    token = params.get("token", "")
    if not token:
        raise BadRequest("missing required parameter: token")
    credentials = _bearer(authorization) or parse_basic(authorization)
    if credentials is None:
        raise Unauthorized(MISSING_BEARER)
    project = registry.project_by_token(token)
    if credentials.password:
        account = check_service_account(registry, credentials.username, credentials.password)
        if project is None or project.project_id not in account.projects:
            raise Forbidden("service account has no access to the project of this token")
        return GdprCaller(project, account.username)
    owner = registry.project_by_secret(credentials.username)
    if owner is None:
        raise Unauthorized(INVALID_SECRET)
    if project is None or not hmac.compare_digest(owner.token.encode(), project.token.encode()):
        raise Forbidden("project secret does not belong to the project of this token")
    return GdprCaller(owner, "project-secret")


def _bearer(header: str | None) -> BasicCredentials | None:
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    username, _, password = value.partition(":")
    return BasicCredentials(username, password)
