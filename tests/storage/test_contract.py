"""The store contract (`rawevents.storage.base.EventStore`), one set of tests run on every store:
DuckDB, chdb, and a `clickhouse://` server when RAWEVENTS_TEST_CLICKHOUSE_URL is set (tests/stores.py).

What base.py promises: an acknowledged commit is visible and survives a reopen; events are stored
once per dedup key (event, distinct_id, time, $insert_id); an export is in (time, ingestion
order) and its cursor positions split it without loss or repeat; deletions remove what they name
and only that; profile updates apply in order; a device link resolves the device's earlier events
and is listed by identity_mappings. Engine-specific behaviour is tested beside each engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from rawevents.eventline import assemble_line
from rawevents.identity import DEVICE
from rawevents.ingest.profiles import apply_update
from rawevents.settings import load_config
from rawevents.storage import EventStore, ExportPlan, ProfileUpdate, StoredEvent, open_store
from rawevents.timeutil import TimeSegment
from tests.stores import store_setting

T0 = 1_790_812_800_000  # 2026-10-01 UTC
DAY = 86_400_000
WHOLE = [TimeSegment(T0 - 400 * DAY, T0 + 40 * DAY, 0)]
PROJECT_IDS = itertools.count(1)


def _open(data_dir: Path, setting: str) -> EventStore:
    return open_store(load_config({}, data_dir=str(data_dir), store=setting, commit_interval_ms=0))


@pytest.fixture(scope="module")
def setting(store_kind: str) -> str:
    return store_setting(store_kind)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, setting: str) -> Iterator[EventStore]:
    """One store per kind for the module; each test writes a project of its own."""
    opened = _open(tmp_path_factory.mktemp("contract") / "data", setting)
    yield opened
    opened.close()


@pytest.fixture
def project() -> int:
    return next(PROJECT_IDS)


def _event(
    project: int,
    time_ms: int,
    n: int,
    distinct_id: str | None = "u1",
    *,
    event: str = "e",
    insert_id: str | None = None,
    link: tuple[int, str, str] | None = None,
) -> StoredEvent:
    insert_id = f"i{n}" if insert_id is None else insert_id
    props: dict[str, Any] = {"$insert_id": insert_id, "n": n}
    if distinct_id is not None:
        props["distinct_id"] = distinct_id
    pos, line = assemble_line(event, props, time_ms // 1000)
    kind, source, target = link if link is not None else (0, None, None)
    return StoredEvent(project, time_ms, event, distinct_id, insert_id, pos, line, kind, source, target)


def _write(store: EventStore, events: Sequence[StoredEvent]) -> None:
    store.submit_events(list(events)).result(timeout=60)


def _lines(store: EventStore, project: int, **plan: Any) -> list[dict[str, Any]]:
    body = b"".join(bytes(chunk) for chunk in store.export_chunks(ExportPlan(project, WHOLE, **plan)))
    return [orjson.loads(line) for line in body.splitlines()]


def _profiles(store: EventStore, project: int) -> list[tuple[str, dict[str, Any]]]:
    """The project's user profiles, without the `$last_seen` every update stamps."""
    return [
        (pid, {k: v for k, v in props.items() if k != "$last_seen"})
        for pid, props in store.profiles(project, "user")
    ]


def _ns(store: EventStore, project: int, **plan: Any) -> list[int]:
    return [line["properties"]["n"] for line in _lines(store, project, **plan)]


# -- durability ------------------------------------------------------------------------------------


def test_an_acknowledged_commit_is_visible_at_once_and_after_a_reopen(tmp_path: Path, setting: str) -> None:
    data_dir = tmp_path / "data"
    store = _open(data_dir, setting)
    try:
        _write(store, [_event(1, T0 + n * 1000, n) for n in range(50)])
        assert _ns(store, 1) == list(range(50))  # visible as soon as the future resolved
        store.submit_profile_updates(
            1, "user", "", [ProfileUpdate("u1", "$set", {"a": 1}, T0)], apply_update
        ).result(timeout=60)
    finally:
        store.close()
    reopened = _open(data_dir, setting)
    try:
        assert _ns(reopened, 1) == list(range(50))
        assert _profiles(reopened, 1) == [("u1", {"a": 1})]
    finally:
        reopened.close()


# -- dedup -----------------------------------------------------------------------------------------


def test_a_retried_event_is_stored_once_per_dedup_key(store: EventStore, project: int) -> None:
    first = _event(project, T0, 1)
    _write(store, [first, first])  # a repeat inside one commit
    _write(store, [first])  # a retry in a later commit
    # Any part of the key differs: another event.
    _write(
        store,
        [
            _event(project, T0, 2, insert_id="i1", event="other"),
            _event(project, T0, 3, "u2", insert_id="i1"),
            _event(project, T0 + 1, 4, insert_id="i1"),
            _event(project, T0, 5, insert_id="i5"),
            _event(project, T0, 6, None, insert_id="i1"),
        ],
    )
    assert sorted(_ns(store, project)) == [1, 2, 3, 4, 5, 6]
    assert _ns(store, project + 1000) == []  # projects never mix


# -- export order and cursors ----------------------------------------------------------------------


def test_an_export_is_in_time_then_ingestion_order(store: EventStore, project: int) -> None:
    times = [T0 + 5000, T0, T0 + 5000, T0 - 3 * DAY, T0 + 5000, T0]  # shuffled, with ties
    _write(store, [_event(project, t, n) for n, t in enumerate(times[:3])])
    _write(store, [_event(project, t, n + 3) for n, t in enumerate(times[3:])])
    assert _ns(store, project) == [3, 1, 5, 0, 2, 4]
    assert _ns(store, project, limit=2) == [3, 1]
    assert _ns(store, project, events=("nothing",)) == []


def test_cursor_positions_split_an_export_without_loss_or_repeat(
    store: EventStore, project: int, store_kind: str
) -> None:
    _write(store, [_event(project, T0 + n * 1000, n) for n in range(0, 20, 2)])
    position = store.ingest_position()
    _write(store, [_event(project, T0 + n * 1000, n) for n in range(1, 20, 2)])  # interleaved in time
    end = store.ingest_position()
    upto = _ns(store, project, upto_position=position)
    after = _ns(store, project, after_position=position)
    assert sorted(upto + after) == list(range(20))
    assert upto == sorted(upto) and after == sorted(after)  # each part in time order
    assert _ns(store, project, after_position=position, upto_position=end) == [n for n in after if n <= 19]
    if store_kind != "clickhouse":  # a shared server's positions trail its clock (docs/scale-out.md)
        assert upto == list(range(0, 20, 2))
        assert after == list(range(1, 20, 2))
        assert _ns(store, project, after_position=end) == []
    assert end >= position


# -- deletions -------------------------------------------------------------------------------------


def test_delete_users_removes_their_events_and_profiles_only(store: EventStore, project: int) -> None:
    _write(store, [_event(project, T0 + n, n, f"u{n % 3}") for n in range(9)])
    for user in ("u0", "u1"):
        store.submit_profile_updates(
            project, "user", "", [ProfileUpdate(user, "$set", {"x": user}, T0)], apply_update
        ).result(timeout=60)
    deleted = store.delete_users(project, ["u0"])
    assert (deleted.events, deleted.profiles) == (3, 1)
    assert _ns(store, project) == [1, 2, 4, 5, 7, 8]
    assert _profiles(store, project) == [("u1", {"x": "u1"})]


def test_drop_events_before_keeps_the_cutoff_and_later(store: EventStore, project: int) -> None:
    _write(store, [_event(project, T0 + (n - 5) * DAY, n) for n in range(10)])
    assert store.drop_events_before(project, T0) == 5
    assert _ns(store, project) == [5, 6, 7, 8, 9]
    assert store.drop_events_before(project, T0) == 0


def test_delete_project_removes_everything_of_that_project_only(store: EventStore, project: int) -> None:
    other = next(PROJECT_IDS)
    for p in (project, other):
        _write(store, [_event(p, T0 + n, n) for n in range(4)])
        store.submit_profile_updates(
            p, "user", "", [ProfileUpdate("u1", "$set", {"a": 1}, T0)], apply_update
        ).result(timeout=60)
    deleted = store.delete_project(project)
    assert (deleted.events, deleted.profiles) == (4, 1)
    assert _ns(store, project) == [] and _profiles(store, project) == []
    assert _ns(store, other) == [0, 1, 2, 3] and _profiles(store, other) == [("u1", {"a": 1})]


# -- profiles --------------------------------------------------------------------------------------


def test_profile_updates_apply_in_order(store: EventStore, project: int) -> None:
    def update(updates: list[ProfileUpdate]) -> None:
        store.submit_profile_updates(project, "user", "", updates, apply_update).result(timeout=60)

    update([ProfileUpdate("u1", "$set", {"a": 1}, T0), ProfileUpdate("u1", "$set", {"a": 2}, T0)])
    update(
        [ProfileUpdate("u1", "$set_once", {"a": 3, "b": 1}, T0), ProfileUpdate("u1", "$add", {"c": 5}, T0)]
    )
    update([ProfileUpdate("u2", "$set", {"a": 1}, T0), ProfileUpdate("u2", "$delete", "", T0)])
    update([ProfileUpdate("u3", "$delete", "", T0), ProfileUpdate("u3", "$set", {"z": 1}, T0)])
    assert _profiles(store, project) == [("u1", {"a": 2, "b": 1, "c": 5}), ("u3", {"z": 1})]


# -- identity --------------------------------------------------------------------------------------


def test_a_device_link_resolves_the_devices_earlier_events(store: EventStore, project: int) -> None:
    device = "$device:D1"
    _write(store, [_event(project, T0, 0, device), _event(project, T0 + 1000, 1, "u9")])
    assert store.identity_mappings(project) == []
    before = store.ingest_position()
    _write(store, [_event(project, T0 + 2000, 2, "u1", link=(DEVICE, device, "u1"))])
    ids = [line["properties"]["distinct_id"] for line in _lines(store, project)]
    assert ids == ["u1", "u9", "u1"]
    as_sent = [line["properties"]["distinct_id"] for line in _lines(store, project, resolve_identity=False)]
    assert as_sent == [device, "u9", "u1"]
    assert store.identity_mappings(project) == [(device, "u1")]
    assert store.identity_mappings(project, after=before) == [(device, "u1")]
    assert store.identity_mappings(project, after=store.ingest_position()) == []
