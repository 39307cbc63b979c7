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
from rawevents.projects import Project, Registry

INVALID_SECRET = (
    "Unauthorized, invalid project secret. See docs for more information: "
    "https://developer.mixpanel.com/reference/authentication#project-secret"
)


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
    registry: Registry,
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
        return _resolve_secret_or_account(registry, credentials, project_id)
    except Unauthorized:
        # A plain-text secret can happen to be valid base64 too: try the text as sent.
        plain = _plain_basic(authorization)
        if plain is None or plain == credentials:
            raise
        return _resolve_secret_or_account(registry, plain, project_id)


def _plain_basic(header: str | None) -> BasicCredentials | None:
    value = (header or "").strip().partition(" ")[2].strip()
    if not value:
        return None
    username, _, password = value.partition(":")
    return BasicCredentials(username, password)


def authenticate_import(
    registry: Registry, authorization: str | None, params: Mapping[str, str]
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
    registry: Registry, credentials: BasicCredentials, project_id: int | None
) -> Project:
    if project_id is not None and credentials.password:
        account = registry.service_account(credentials.username, credentials.password)
        if account is not None:
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


def _authenticate_signature(registry: Registry, params: Mapping[str, str], now: float | None) -> Project:
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
    sent = params.get("sig", "").lower().encode()
    ok = False
    for sort_pairs in (False, True):
        expected = signature(params, project.api_secret, sort_pairs=sort_pairs).encode()
        ok |= hmac.compare_digest(expected, sent)
    if not ok:
        raise Unauthorized("Invalid API signature")
    return project
