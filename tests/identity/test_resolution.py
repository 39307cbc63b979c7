"""Random identity histories, delivered in random arrival orders and commits with compaction at
random points, read back from every store exactly as the reference resolver computes them."""

from __future__ import annotations

import copy
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest.mock import patch

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rawevents import identity
from rawevents.ingest.events import EventContext, normalize_events
from rawevents.projects import Project
from rawevents.settings import load_config
from rawevents.storage import open_store
from rawevents.storage.base import EventSelection, ExportPlan, SegmentationQuery
from rawevents.storage.duckdb import export as duckdb_export
from rawevents.timeutil import TimeSegment
from rawevents.where import parse
from tests.identity import reference
from tests.stores import store_setting

NOW = int(time.time())
DAY = 86_400
START = NOW - 5 * DAY  # events over the last four days (some arrive "days late")
WHOLE = [TimeSegment((START - DAY) * 1000, (NOW + DAY) * 1000, 0)]
UUIDS = ["0b7e2c3a-1d4f-4a5b-8c6d-7e8f9a0b1c2d", "F1E2D3C4-B5A6-4978-8695-A4B3C2D1E0F9"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, store_kind: str) -> Iterator[Any]:
    """One store per kind for the module; each example writes a project of its own."""
    data_dir = Path(tmp_path_factory.mktemp("identity")) / "data"
    opened = open_store(
        load_config({}, data_dir=str(data_dir), store=store_setting(store_kind), commit_interval_ms=0)
    )
    yield opened
    opened.close()


PROJECT_IDS = itertools.count(1)


# -- histories ---------------------------------------------------------------------------------------

devices = st.sampled_from(["D1", "D2", "D3", "D4"])
users = st.sampled_from(["u1", "u2", "u3"])
sent_ids = st.sampled_from(["", "x", "$device:D1", "u1"])

simplified_props = st.one_of(
    st.builds(lambda d: {"$device_id": d}, devices),  # anonymous
    st.builds(lambda d, s: {"distinct_id": s, "$device_id": d}, devices, sent_ids),  # `mp.track("", …)`
    st.builds(lambda u: {"$user_id": u}, users),  # identified, no device
    st.builds(lambda d, u: {"$device_id": d, "$user_id": u}, devices, users),  # the link
    st.builds(lambda d, u: {"distinct_id": "x", "$device_id": d, "$user_id": u}, devices, users),
    st.builds(lambda s: {"distinct_id": s}, st.sampled_from(["x", "$device:D1", "$device:D2", "u1"])),
)
simplified_events = st.tuples(st.sampled_from(["e", "login", "$identify", "$merge"]), simplified_props)

anonymous = st.sampled_from(["$device:D1", "$device:D2", *UUIDS])
named = st.sampled_from(["u1", "u2", "u3", "al1", "al2"])
any_id = st.one_of(anonymous, named)


def _with_distinct_id(props: dict[str, Any], sent: str | None) -> dict[str, Any]:
    return props if sent is None else {"distinct_id": sent, **props}


original_events = st.one_of(
    st.tuples(st.sampled_from(["e", "login"]), st.builds(lambda i: {"distinct_id": i}, any_id)),
    st.tuples(
        st.just("e"),  # device and user ids mean nothing in this mode
        st.builds(lambda d, u: {"distinct_id": "x", "$device_id": d, "$user_id": u}, devices, users),
    ),
    st.tuples(
        st.just("$identify"),
        st.builds(
            lambda anon, ident, sent: _with_distinct_id({"$anon_id": anon, "$identified_id": ident}, sent),
            st.one_of(anonymous, anonymous, named),  # a named $anon_id links nothing
            any_id,
            st.one_of(st.none(), any_id),
        ),
    ),
    st.tuples(
        st.just("$create_alias"), st.builds(lambda a, d: {"alias": a, "distinct_id": d}, any_id, any_id)
    ),
    st.tuples(
        st.just("$merge"),
        st.builds(
            lambda a, b, sent: _with_distinct_id({"$distinct_ids": [a, b]}, sent),
            any_id,
            any_id,
            st.one_of(st.none(), st.none(), any_id),
        ),
    ),
)


def history(mode: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Events as sent (each with its own `$insert_id` and a time in the last few days)."""
    kinds = simplified_events if mode == identity.SIMPLIFIED else original_events
    return st.lists(st.tuples(kinds, st.integers(0, 4 * DAY)), min_size=1, max_size=30).map(
        lambda drawn: [
            {"event": name, "properties": {"time": START + offset, "$insert_id": f"e{i}", **props}}
            for i, ((name, props), offset) in enumerate(drawn)
        ]
    )


@st.composite
def deliveries(
    draw: st.DrawFn,
) -> tuple[str, list[dict[str, Any]], list[list[dict[str, Any]]], set[int], int]:
    """A mode, its history in arrival order (a random permutation, with a few events delivered
    twice), that order cut into commits, the commits after which the store compacts, and the
    cluster cap."""
    mode = draw(st.sampled_from(identity.MODES))
    events = draw(history(mode))
    arrivals = [events[i] for i in draw(st.permutations(range(len(events))))]
    for _ in range(draw(st.integers(0, 3))):  # a client retrying a batch it already sent
        again = draw(st.sampled_from(events))
        arrivals.insert(draw(st.integers(0, len(arrivals))), again)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(arrivals) - 1)), max_size=6)) | {0, len(arrivals)})
    commits = [arrivals[a:b] for a, b in itertools.pairwise(cuts) if a < b]
    compact_after = draw(st.sets(st.integers(0, len(commits) - 1)))
    cap = draw(st.sampled_from([3, 4, identity.MAX_CLUSTER]) if mode == identity.ORIGINAL else st.just(0))
    return mode, arrivals, commits, compact_after, cap


# -- reading the store back ------------------------------------------------------------------------


def lines(store: Any, plan: ExportPlan) -> list[dict[str, Any]]:
    body = b"".join(bytes(chunk) for chunk in store.export_chunks(plan))
    return [orjson.loads(line) for line in body.splitlines()]


def compact(store: Any) -> None:
    """The store's compaction (DuckDB: sort recent rows into runs, merge runs). The ClickHouse
    store exposes none (its MergeTree merges parts on its own): nothing to do there."""
    run = getattr(store, "compact", None)
    if run is not None:
        run()


def submit(store: Any, project: Project, commit: list[dict[str, Any]]) -> None:
    now_ms = int(time.time() * 1000)
    ctx = EventContext(
        endpoint="import",
        strict=True,
        received_ms=now_ms,
        processed_ms=now_ms,
        host="h",
        ip_fallback=False,
        client_ip=None,
    )
    items = [copy.deepcopy(event) for event in commit]  # it edits what it reads (each copy apart)
    batch = normalize_events(items, ctx, project=project)
    assert batch.failed == []
    store.submit_events(batch.table()).result()


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(delivery=deliveries(), per_run=st.booleans())
def test_store_resolves_as_the_reference(store: Any, delivery: Any, per_run: bool) -> None:
    mode, arrivals, commits, compact_after, cap = delivery
    project = Project(next(PROJECT_IDS), "p", "t", None, "UTC", id_merge=mode)
    with ExitStack() as patched:
        if cap:
            patched.enter_context(patch.object(identity, "MAX_CLUSTER", cap))
        if per_run:  # DuckDB: read each sorted run on its own, not the whole range as one window
            patched.enter_context(patch.object(duckdb_export, "SMALL_EXPORT_ROWS", 0))
        for i, commit in enumerate(commits):
            submit(store, project, commit)
            if i in compact_after:
                compact(store)
        expected, mappings = reference.resolve(arrivals, mode, cap or reference.CAP)
        event(f"{mode}: {'some' if mappings else 'no'} ids resolve to another")

        resolved = lines(store, ExportPlan(project.project_id, WHOLE))
        as_ingested = lines(store, ExportPlan(project.project_id, WHOLE, resolve_identity=False))
        u1 = lines(
            store, ExportPlan(project.project_id, WHOLE, where=parse('properties["distinct_id"] == "u1"'))
        )

    # Every event once, under its canonical id, with the id it was stored under when that differs.
    assert Counter(
        (p["$insert_id"], p.get("distinct_id"), p.get(identity.BEFORE_IDENTITY))
        for p in (line["properties"] for line in resolved)
    ) == Counter((e.insert_id, e.distinct_id, e.before_identity) for e in expected.values())
    for line in resolved:
        keys = list(line["properties"])
        if identity.BEFORE_IDENTITY in keys:  # right after distinct_id, as Mixpanel's exports
            assert keys.index(identity.BEFORE_IDENTITY) == keys.index("distinct_id") + 1

    # As ingested: the stored ids, and nothing added.
    assert Counter(
        (p["$insert_id"], p.get("distinct_id"), identity.BEFORE_IDENTITY in p)
        for p in (line["properties"] for line in as_ingested)
    ) == Counter((e.insert_id, e.stored, False) for e in expected.values())
    # The same events in the same order either way.
    assert [line["properties"]["$insert_id"] for line in resolved] == [
        line["properties"]["$insert_id"] for line in as_ingested
    ]

    assert store.identity_mappings(project.project_id) == sorted(mappings.items())

    # `where` reads the canonical id too.
    assert sorted(line["properties"]["$insert_id"] for line in u1) == sorted(
        e.insert_id for e in expected.values() if e.distinct_id == "u1"
    )

    # `unique` counts people: the canonical ids of each day's events, per event name.
    sent = {event["properties"]["$insert_id"]: event for event in arrivals}
    people: dict[tuple[int, str], set[str | None]] = {}
    events: Counter[tuple[int, str]] = Counter()
    for insert_id, exported in expected.items():
        key = (sent[insert_id]["properties"]["time"] // DAY * DAY * 1000, sent[insert_id]["event"])
        events[key] += 1
        people.setdefault(key, set()).add(exported.distinct_id)
    counted = store.segmentation(
        SegmentationQuery(EventSelection(project.project_id, WHOLE), "day", unique=True)
    )
    assert {(c.bucket_ms, c.key): (c.events, c.users) for c in counted} == {
        key: (n, len(people[key])) for key, n in events.items()
    }
