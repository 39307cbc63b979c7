from __future__ import annotations

from typing import Any

import pytest

from rawevents.ingest.profiles import ProfileOp, apply_update, last_seen, parse_updates
from rawevents.projects import Project

T_MS = 1_700_000_000_000
PROJECT = Project(3, "p", "tok", "s", "UTC")


def op(operation: str, value: Any, ignore_time: bool = True) -> ProfileOp:
    return ProfileOp("u1", operation, value, T_MS, ignore_time)


def apply_all(current: dict[str, Any] | None, *ops: ProfileOp) -> dict[str, Any] | None:
    for update in ops:
        current = apply_update(current, update)
    return current


@pytest.mark.parametrize(
    ("current", "update", "expected"),
    [
        (None, op("$set", {"a": 1}), {"a": 1}),
        ({"a": 1, "b": 2}, op("$set", {"a": 5}), {"a": 5, "b": 2}),
        ({"a": 1}, op("$set_once", {"a": 9, "b": 2}), {"a": 1, "b": 2}),
        (None, op("$set_once", {"a": 9}), {"a": 9}),
        ({"n": 1}, op("$add", {"n": 2, "m": 1.5}), {"n": 3, "m": 1.5}),
        ({"n": "text"}, op("$add", {"n": 2}), {"n": "text"}),  # non-numeric target left alone
        ({"l": [1]}, op("$append", {"l": 2, "new": "x"}), {"l": [1, 2], "new": ["x"]}),
        ({"l": "scalar"}, op("$append", {"l": 2}), {"l": "scalar"}),
        ({"l": [1, 2]}, op("$union", {"l": [2, 3, 3], "new": ["a"]}), {"l": [1, 2, 3], "new": ["a"]}),
        ({"l": [1, 2, 1, 3]}, op("$remove", {"l": 1, "missing": 5}), {"l": [2, 3]}),
        ({"a": 1, "b": 2}, op("$unset", ["a", "zzz"]), {"b": 2}),
        (None, op("$unset", ["a"]), None),
        (None, op("$remove", {"l": 1}), None),
        ({"a": 1}, op("$delete", ""), None),
        (None, op("$delete", ""), None),
    ],
)
def test_operators(
    current: dict[str, Any] | None, update: ProfileOp, expected: dict[str, Any] | None
) -> None:
    snapshot = None if current is None else dict(current)
    assert apply_update(current, update) == expected
    assert current == snapshot  # pure: the current profile is never mutated


def test_last_seen_unless_ignore_time() -> None:
    assert apply_update(None, op("$set", {"a": 1}, ignore_time=False)) == {
        "a": 1,
        "$last_seen": "2023-11-14T22:13:20",
    }
    assert last_seen(T_MS) == "2023-11-14T22:13:20"


def test_sequence_delete_then_recreate() -> None:
    assert apply_all({"a": 1}, op("$delete", ""), op("$set_once", {"b": 2})) == {"b": 2}


def _parse(items: list[Any], kind: str = "user") -> Any:
    return parse_updates(items, kind=kind, now_ms=T_MS, resolve={"tok": PROJECT}.get)


def test_parse_groups_by_target_and_keeps_order() -> None:
    batch = _parse(
        [
            {"$token": "tok", "$distinct_id": "u1", "$set": {"a": 1}, "$time": 1_600_000_000},
            {"$token": "tok", "$distinct_id": 5, "$add": {"n": 1}, "$ignore_time": True},
            {"$token": "unknown", "$distinct_id": "u1", "$set": {"a": 1}},
        ]
    )
    assert batch.accepted == 3 and batch.errors is None
    [(target, updates)] = batch.updates.values()
    assert (target.project.project_id, target.kind, target.group_key) == (3, "user", "")
    assert [(u.profile_id, u.operation, u.time_ms) for u in updates] == [
        ("u1", "$set", 1_600_000_000_000),
        ("5", "$add", T_MS),
    ]
    assert updates[1].ignore_time is True


def test_parse_groups_endpoint() -> None:
    batch = _parse(
        [{"$token": "tok", "$group_key": "company", "$group_id": "acme", "$set": {"x": 1}}], "group"
    )
    [(target, updates)] = batch.updates.values()
    assert (target.kind, target.group_key, updates[0].profile_id) == ("group", "company", "acme")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ([1], "each update must be a JSON object"),
        ({"$distinct_id": "u", "$set": {}}, "$token, missing or empty"),
        ({"$token": "tok", "$set": {"a": 1}}, "$distinct_id, missing or empty"),
        ({"$token": "tok", "$distinct_id": "u"}, "no operation"),
        ({"$token": "tok", "$distinct_id": "u", "$set": [1]}, "$set must be a JSON object"),
        ({"$token": "tok", "$distinct_id": "u", "$add": {"n": "1"}}, "must be a number"),
        ({"$token": "tok", "$distinct_id": "u", "$unset": [1]}, "$unset must be a list of property names"),
    ],
)
def test_parse_rejects(item: Any, message: str) -> None:
    batch = _parse([item])
    assert batch.accepted == 0 and batch.updates == {}
    assert batch.errors and message in batch.errors[0]


def test_group_update_needs_group_key() -> None:
    batch = _parse([{"$token": "tok", "$group_id": "acme", "$set": {"x": 1}}], "group")
    assert batch.errors == ["update 0: $group_key, missing or empty"]
