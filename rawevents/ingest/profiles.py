"""`/engage` and `/groups` updates (compat §5.4): parsing, validation and the pure applier the
store runs inside its write transaction.

Operators: `$set` overwrites, `$set_once` sets only missing keys, `$add` increments numbers,
`$append` appends to a list (creating it), `$union` adds missing elements to a list (creating it),
`$remove` removes every occurrence of a value from a list, `$unset` removes keys, `$delete` deletes
the profile. Every update except `$delete`, `$unset` and `$remove` creates a missing profile.
Modifiers: `$time` (seconds or ms) is the update's time; unless `$ignore_time` is true, each update
stamps `$last_seen` with it; `$ip` and `$ignore_alias` are accepted and ignored (no geolocation).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from rawevents.projects import Project
from rawevents.storage.base import ProfileUpdate

OPERATIONS = ("$set", "$set_once", "$add", "$append", "$union", "$remove", "$unset", "$delete")
_DICT_OPERATIONS = frozenset({"$set", "$set_once", "$add", "$append", "$union", "$remove"})
_MS_THRESHOLD = 1e10


@dataclass(frozen=True, slots=True)
class ProfileOp(ProfileUpdate):
    """A `ProfileUpdate` that also carries `$ignore_time` (don't touch `$last_seen`)."""

    ignore_time: bool = False


@dataclass(frozen=True, slots=True)
class ProfileTarget:
    project: Project
    kind: str  # "user" or "group"
    group_key: str  # "" for user profiles


@dataclass(slots=True)
class ProfileBatch:
    updates: dict[tuple[int, str, str], tuple[ProfileTarget, list[ProfileUpdate]]]
    accepted: int = 0  # valid updates, including those for unknown tokens (discarded)
    unknown_token: int = 0  # of `accepted`: updates whose token no project has
    errors: list[str] | None = None

    def error(self, message: str) -> None:
        if self.errors is None:
            self.errors = []
        self.errors.append(message)


def parse_updates(
    items: list[Any],
    *,
    kind: str,
    now_ms: int,
    resolve: Callable[[str], Project | None],
) -> ProfileBatch:
    """Group valid updates by (project, kind, group_key), in request order."""
    batch = ProfileBatch({})
    for index, item in enumerate(items):
        try:
            parsed = _parse_one(item, kind, now_ms)
        except ValueError as exc:
            batch.error(f"update {index}: {exc}")
            continue
        except ArithmeticError:  # a number no conversion can represent: that update fails, not the batch
            batch.error(f"update {index}: a number is out of range")
            continue
        token, group_key, ops = parsed
        batch.accepted += 1
        project = resolve(token)
        if project is None:
            batch.unknown_token += 1
            continue
        key = (project.project_id, kind, group_key)
        entry = batch.updates.get(key)
        if entry is None:
            entry = batch.updates[key] = (ProfileTarget(project, kind, group_key), [])
        entry[1].extend(ops)
    return batch


def _parse_one(item: Any, kind: str, now_ms: int) -> tuple[str, str, list[ProfileUpdate]]:
    if type(item) is not dict:
        raise ValueError("each update must be a JSON object")
    token = item.get("$token")
    if type(token) is not str or not token:
        raise ValueError("$token, missing or empty")
    if kind == "user":
        group_key = ""
        profile_id = _id_text(item.get("$distinct_id"), "$distinct_id")
    else:
        raw_key = item.get("$group_key")
        if type(raw_key) is not str or not raw_key:
            raise ValueError("$group_key, missing or empty")
        group_key = raw_key
        profile_id = _id_text(item.get("$group_id"), "$group_id")
    time_ms = _time_ms(item.get("$time"), now_ms)
    ignore_time = item.get("$ignore_time") in (True, "true", 1)
    ops: list[ProfileUpdate] = []
    for key, value in item.items():
        if key not in OPERATIONS:
            continue
        if key in _DICT_OPERATIONS and type(value) is not dict:
            raise ValueError(f"{key} must be a JSON object")
        if key == "$add":
            for name, amount in value.items():
                if type(amount) is int and not _fits_64_bits(amount):
                    raise ValueError(f"$add value for {name!r} is out of range: integers must fit 64 bits")
                if not _is_number(amount):
                    raise ValueError(f"$add value for {name!r} must be a number")
        if key == "$unset":
            if type(value) is str:
                value = [value]
            if type(value) is not list or not all(type(v) is str for v in value):
                raise ValueError("$unset must be a list of property names")
        try:  # the writer stores values as JSON: refuse what cannot be stored before acknowledging
            orjson.dumps(value)
        except TypeError as exc:
            raise ValueError(f"{key} value cannot be stored: {exc}") from exc
        ops.append(ProfileOp(profile_id, key, value, time_ms, ignore_time))
    if not ops:
        raise ValueError("no operation (one of " + ", ".join(OPERATIONS) + ")")
    return token, group_key, ops


def _id_text(value: Any, name: str) -> str:
    if type(value) is str and value:
        return value
    if type(value) is int:
        return str(value)
    raise ValueError(f"{name}, missing or empty")


def _fits_64_bits(value: int) -> bool:
    """Signed or unsigned 64 bits: what the writer can store as JSON (orjson's range)."""
    return -(2**63) <= value < 2**64


def _is_number(value: Any) -> bool:
    """A number that can be stored and added to. Integers are compared, never converted to
    float: `math.isfinite(10**400)` raises OverflowError."""
    kind = type(value)
    if kind is int:
        return _fits_64_bits(value)
    return kind is float and math.isfinite(value)


# `$time` outside [1971, 10000) cannot be a real update time (and would not fit a datetime).
_MAX_TIME_MS = 253_402_300_800_000


def _time_ms(value: Any, now_ms: int) -> int:
    if type(value) is int and value >= _MAX_TIME_MS:
        raise ValueError("$time is invalid: must be seconds or milliseconds since epoch")
    if not _is_number(value) or value < 0:
        return now_ms
    time_ms = int(value) if value >= _MS_THRESHOLD else int(value * 1000)
    if time_ms >= _MAX_TIME_MS:
        raise ValueError("$time is invalid: must be seconds or milliseconds since epoch")
    return time_ms


def last_seen(time_ms: int) -> str:
    """`$last_seen` as Mixpanel shows it: UTC, `YYYY-MM-DDTHH:MM:SS`."""
    return dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def apply_update(current: dict[str, Any] | None, update: ProfileUpdate) -> dict[str, Any] | None:
    """The profile after `update` (pure: `current` is never mutated); None means no profile."""
    op = update.operation
    value = update.value
    if op == "$delete":
        return None
    if current is None and op in ("$unset", "$remove"):
        return None
    props = dict(current) if current is not None else {}
    if op == "$set":
        props.update(value)
    elif op == "$set_once":
        for key, item in value.items():
            props.setdefault(key, item)
    elif op == "$add":
        for key, amount in value.items():
            existing = props.get(key, 0)
            if _is_number(existing) and _is_number(amount):
                total = existing + amount
                # Beyond 64-bit integers or to infinity: keep the old value rather than fail the commit.
                if _is_number(total):
                    props[key] = total
    elif op == "$append":
        for key, item in value.items():
            existing = props.get(key)
            if existing is None:
                props[key] = [item]
            elif type(existing) is list:
                props[key] = [*existing, item]
    elif op == "$union":
        for key, items in value.items():
            additions = items if type(items) is list else [items]
            existing = props.get(key)
            if existing is None:
                existing = []
            elif type(existing) is not list:
                continue
            merged = list(existing)
            for item in additions:
                if item not in merged:
                    merged.append(item)
            props[key] = merged
    elif op == "$remove":
        for key, item in value.items():
            existing = props.get(key)
            if type(existing) is list:
                props[key] = [x for x in existing if x != item]
    elif op == "$unset":
        for key in value:
            props.pop(key, None)
    if not getattr(update, "ignore_time", False):
        props["$last_seen"] = last_seen(update.time_ms)
    return props
