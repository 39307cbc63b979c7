"""rawevents.identity: the ingest rule of each mode (`link_of`) and the graph a store's commit
applies links to (`IdentityGraph`), checked against Mixpanel's rules and the reference resolver."""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawevents import identity
from rawevents.identity import (
    ALIAS,
    DEVICE,
    IDENTIFY,
    MAX_CLUSTER,
    MERGE,
    ORIGINAL,
    SIMPLIFIED,
    IdentityGraph,
    Link,
    Refused,
    link_of,
)
from rawevents.ingest.events import EventContext, normalize_events
from rawevents.projects import Project
from tests.identity.reference import Clusters

UUID = "3f2a9c1e-7b4d-4e8a-9f10-0c1d2e3f4a5b"


def linked(event: str, props: dict[str, Any], mode: str, via_import: bool = True) -> tuple[Link | None, Any]:
    """The link and the `distinct_id` the event ends up with (the missing sentinel when none)."""
    link = link_of(event, props, mode, via_import)
    return link, props.get("distinct_id", "<none>")


# -- simplified: the ingest rule -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "distinct_id", "link"),
    [
        ({"$device_id": "D1", "$user_id": "u1"}, "u1", Link(DEVICE, "$device:D1", "u1")),
        ({"distinct_id": "x", "$device_id": "D1", "$user_id": "u1"}, "u1", Link(DEVICE, "$device:D1", "u1")),
        ({"$user_id": "u1"}, "u1", None),
        ({"distinct_id": "x", "$user_id": "u1"}, "u1", None),
        ({"$device_id": "D1"}, "$device:D1", None),
        ({"distinct_id": "", "$device_id": "D1"}, "$device:D1", None),  # mp.track("", …)
        ({"distinct_id": "x", "$device_id": "D1"}, "$device:D1", None),
        ({"distinct_id": "x"}, "x", None),
        ({}, "<none>", None),
        ({"$user_id": 42, "$device_id": 7}, "42", Link(DEVICE, "$device:7", "42")),  # integers: digits
        ({"$user_id": "", "$device_id": "D1"}, "$device:D1", None),  # an empty id is no id
        ({"distinct_id": "x", "$user_id": None, "$device_id": ""}, "x", None),
        ({"distinct_id": "x", "$user_id": 1.5, "$device_id": True}, "x", None),
    ],
)
def test_simplified_ingest_rule(props: dict[str, Any], distinct_id: Any, link: Link | None) -> None:
    assert linked("e", props, SIMPLIFIED) == (link, distinct_id)


@pytest.mark.parametrize("event", ["$identify", "$create_alias", "$merge"])
def test_simplified_leaves_original_events_alone(event: str) -> None:
    props = {"distinct_id": "x", "$anon_id": UUID, "$identified_id": "u", "alias": "a", "$distinct_ids": [1]}
    # ordinary events in this mode: not linked, and a `$merge` is no error even through /track
    assert linked(event, dict(props), SIMPLIFIED, via_import=False) == (None, "x")


# -- original: the ingest rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anon", "link"),
    [
        (UUID, True),
        (UUID.upper(), True),
        ("$device:abc", True),
        ("$device:", True),  # the SDK prefix alone still marks an SDK-generated id
        ("alice", False),  # an identified id: only $merge may join it
        (UUID + "0", False),
        ("x" + UUID, False),
        (UUID.replace("-", ""), False),
        ("3f2a9c1e-7b4d-4e8a-9f10-0c1d2e3f4a5g", False),  # not hex
        ("u", False),  # equal to $identified_id
    ],
)
def test_identify_takes_anonymous_ids_only(anon: str, link: bool) -> None:
    props = {"distinct_id": "u", "$anon_id": anon, "$identified_id": "u"}
    assert linked("$identify", props, ORIGINAL) == ((Link(IDENTIFY, anon, "u") if link else None), "u")


def test_identify_without_distinct_id_gets_the_identified_id() -> None:
    assert linked("$identify", {"$anon_id": UUID, "$identified_id": "u"}, ORIGINAL) == (
        Link(IDENTIFY, UUID, "u"),
        "u",
    )
    # a distinct_id that was sent stays, whatever it is
    assert linked("$identify", {"distinct_id": UUID, "$anon_id": UUID, "$identified_id": "u"}, ORIGINAL) == (
        Link(IDENTIFY, UUID, "u"),
        UUID,
    )
    # through /track too (SDKs send it there)
    assert link_of("$identify", {"$anon_id": UUID, "$identified_id": "u"}, ORIGINAL, False) == Link(
        IDENTIFY, UUID, "u"
    )


@pytest.mark.parametrize(
    "props",
    [
        {"$anon_id": UUID},
        {"$identified_id": "u"},
        {"$anon_id": "", "$identified_id": "u"},
        {"$anon_id": UUID, "$identified_id": ""},
        {"$anon_id": [UUID], "$identified_id": "u"},
    ],
)
def test_identify_without_both_ids_links_nothing(props: dict[str, Any]) -> None:
    assert link_of("$identify", dict(props), ORIGINAL, True) is None


def test_create_alias() -> None:
    assert linked("$create_alias", {"distinct_id": "u", "alias": "a"}, ORIGINAL, False) == (
        Link(ALIAS, "a", "u"),
        "u",
    )
    assert linked("$create_alias", {"distinct_id": 5, "alias": 6}, ORIGINAL) == (Link(ALIAS, "6", "5"), 5)
    assert link_of("$create_alias", {"distinct_id": "u", "alias": "u"}, ORIGINAL, True) is None
    assert link_of("$create_alias", {"distinct_id": "u"}, ORIGINAL, True) is None
    assert link_of("$create_alias", {"alias": "a"}, ORIGINAL, True) is None


def test_merge_through_import() -> None:
    assert linked("$merge", {"$distinct_ids": ["a", "b"]}, ORIGINAL) == (Link(MERGE, "a", "b"), "a")
    assert linked("$merge", {"distinct_id": "x", "$distinct_ids": ["a", "b"]}, ORIGINAL) == (
        Link(MERGE, "a", "b"),
        "x",
    )
    assert linked("$merge", {"$distinct_ids": [1, 2]}, ORIGINAL) == (Link(MERGE, "1", "2"), "1")
    # two equal ids: a valid record that joins nothing
    assert linked("$merge", {"$distinct_ids": ["a", "a"]}, ORIGINAL) == (None, "a")


def test_merge_through_track_is_refused() -> None:
    with pytest.raises(Refused) as refused:
        link_of("$merge", {"$distinct_ids": ["a", "b"]}, ORIGINAL, via_import=False)
    assert refused.value.path == "event"
    assert "only by /import" in refused.value.message


@pytest.mark.parametrize(
    "ids",
    [
        None,
        "a,b",
        ["a"],
        ["a", "b", "c"],
        [],
        ["a", None],
        ["a", ""],
        ["a", {"b": 1}],
        ["a", 1.5],
        ("a", "b"),
    ],
)
def test_malformed_distinct_ids_are_refused(ids: Any) -> None:
    props = {} if ids is None else {"$distinct_ids": ids}
    with pytest.raises(Refused) as refused:
        link_of("$merge", props, ORIGINAL, via_import=True)
    assert refused.value.path == "properties.$distinct_ids"


def test_original_ignores_device_and_user_ids() -> None:
    props = {"distinct_id": "x", "$device_id": "D1", "$user_id": "u1"}
    assert linked("e", props, ORIGINAL) == (None, "x")


def _ctx(endpoint: str) -> EventContext:
    now = int(time.time() * 1000)
    return EventContext(
        endpoint=endpoint,
        strict=endpoint == "import",
        received_ms=now,
        processed_ms=now,
        host="h",
        ip_fallback=False,
        client_ip=None,
    )


def test_refusals_fail_the_record_at_ingest() -> None:
    project = Project(1, "p", "tok", None, "UTC", id_merge=ORIGINAL)
    now = int(time.time())
    items = [
        {"event": "$merge", "properties": {"time": now, "$insert_id": "m1", "$distinct_ids": ["a", "b"]}},
        {"event": "$merge", "properties": {"time": now, "$insert_id": "m2", "$distinct_ids": ["a"]}},
        {"event": "e", "properties": {"time": now, "$insert_id": "ok", "distinct_id": "a"}},
    ]
    tracked = normalize_events(copy.deepcopy(items), _ctx("track"), project=project)
    assert [(f.index, f.field) for f in tracked.failed] == [(0, "event"), (1, "event")]
    assert tracked.insert_ids == ["ok"]
    imported = normalize_events(copy.deepcopy(items), _ctx("import"), project=project)
    assert [(f.index, f.field) for f in imported.failed] == [(1, "properties.$distinct_ids")]
    assert imported.insert_ids == ["m1", "ok"]
    assert imported.distinct_ids == ["a", "a"]
    table = imported.table()
    assert [table.column(name).to_pylist() for name in ("link_kind", "link_source", "link_target")] == [
        [MERGE, 0],
        ["a", None],
        ["b", None],
    ]


def test_ingest_sets_the_simplified_distinct_id_in_the_line() -> None:
    project = Project(1, "p", "tok", None, "UTC")  # simplified: the default
    now = int(time.time())
    items = [
        {"event": "e", "properties": {"time": now, "$insert_id": "i", "distinct_id": "", "$device_id": "D"}}
    ]
    batch = normalize_events(items, _ctx("track"), project=project)
    assert batch.distinct_ids == ["$device:D"]
    assert b'"distinct_id":"$device:D"' in batch.lines[0]


# -- IdentityGraph ---------------------------------------------------------------------------------


def graph_of(*links: Link, rows: dict[str, str] | None = None) -> IdentityGraph:
    graph = IdentityGraph(dict(rows or {}))
    for link in links:
        graph.apply(link)
    return graph


def test_first_device_link_wins() -> None:
    graph = IdentityGraph({})
    assert graph.apply(Link(DEVICE, "$device:D", "u1")) == ["$device:D"]
    assert graph.apply(Link(DEVICE, "$device:D", "u2")) == []
    assert graph.apply(Link(DEVICE, "$device:D2", "u1")) == ["$device:D2"]  # any number of devices
    assert graph.rows == {"$device:D": "u1", "$device:D2": "u1"}
    assert graph.changed == graph.rows


def test_an_id_in_a_cluster_is_never_relinked() -> None:
    # a member: it stays
    graph = graph_of(Link(IDENTIFY, UUID, "u1"))
    assert graph.apply(Link(IDENTIFY, UUID, "u2")) == []
    assert graph.apply(Link(ALIAS, UUID, "u2")) == []
    # a canonical id with members is in a cluster too: it does not join another
    graph = graph_of(Link(ALIAS, "a", "$device:x"))
    assert graph.apply(Link(IDENTIFY, "$device:x", "u")) == []
    assert graph.rows == {"a": "$device:x"}
    # a link back into its own cluster changes nothing
    graph = graph_of(Link(ALIAS, "a", "u"))
    assert graph.apply(Link(ALIAS, "u", "a")) == []
    assert graph.rows == {"a": "u"}


def test_joining_keeps_the_target_clusters_canonical_id() -> None:
    graph = graph_of(Link(IDENTIFY, UUID, "u"), Link(ALIAS, "al", UUID), Link(ALIAS, "al2", "al"))
    assert graph.rows == {UUID: "u", "al": "u", "al2": "u"}
    assert graph.members == {"u": {UUID, "al", "al2"}}
    assert graph.size("u") == 4 and graph.size("al") == 1  # size is asked of canonical ids


def test_chains_resolve_to_one_canonical_id() -> None:
    # c ← b, then b ← a: a resolves straight to c (no chain of rows to follow at read time)
    assert graph_of(Link(ALIAS, "b", "c"), Link(ALIAS, "a", "b")).rows == {"b": "c", "a": "c"}
    # the other order: b is a canonical id by then, so it does not join c
    assert graph_of(Link(ALIAS, "a", "b"), Link(ALIAS, "b", "c")).rows == {"a": "b"}
    # merges chain: every member follows its canonical id
    graph = graph_of(Link(ALIAS, "a1", "a"), Link(ALIAS, "b1", "b"), Link(ALIAS, "c1", "c"))
    graph.apply(Link(MERGE, "a1", "b1"))
    graph.apply(Link(MERGE, "c", "b"))
    assert graph.rows == {"a1": "a", "b1": "a", "b": "a", "c1": "a", "c": "a"}
    assert graph.members == {"a": {"a1", "b", "b1", "c", "c1"}}


def test_merge_keeps_the_larger_clusters_canonical_id() -> None:
    base = [Link(ALIAS, "a1", "a"), Link(ALIAS, "b1", "b"), Link(ALIAS, "b2", "b")]
    graph = graph_of(*base)
    assert sorted(graph.apply(Link(MERGE, "a1", "b2"))) == ["a", "a1"]  # a's cluster moves
    assert graph.rows == {"a1": "b", "a": "b", "b1": "b", "b2": "b"}
    graph = graph_of(*base)
    assert sorted(graph.apply(Link(MERGE, "b", "a"))) == ["a", "a1"]  # listed first or second
    assert graph.canonical("a") == "b"


def test_merge_tie_keeps_the_first_listed() -> None:
    graph = graph_of(Link(ALIAS, "a1", "a"), Link(ALIAS, "b1", "b"))
    assert sorted(graph.apply(Link(MERGE, "b1", "a1"))) == ["a", "a1"]
    assert graph.canonical("a") == "b" and graph.canonical("a1") == "b"
    # two lone identified ids: the first listed is canonical
    assert graph_of(Link(MERGE, "x", "y")).rows == {"y": "x"}
    # merging ids of one cluster changes nothing
    graph = graph_of(Link(ALIAS, "a1", "a"))
    assert graph.apply(Link(MERGE, "a1", "a")) == [] and graph.changed == {"a1": "a"}


def big_cluster(canonical: str, size: int) -> dict[str, str]:
    """Rows of a cluster of `size` ids (its canonical id included)."""
    return {f"{canonical}-{i}": canonical for i in range(size - 1)}


def test_cluster_cap() -> None:
    assert MAX_CLUSTER == 500
    graph = IdentityGraph(big_cluster("u", MAX_CLUSTER - 1))
    assert graph.apply(Link(ALIAS, "one-more", "u")) == ["one-more"]  # 500 ids: allowed
    assert graph.size("u") == MAX_CLUSTER
    assert graph.apply(Link(ALIAS, "too-many", "u")) == []
    assert graph.apply(Link(IDENTIFY, UUID, "u-3")) == []  # through a member too
    assert "too-many" not in graph.rows and UUID not in graph.rows
    # simplified links are not capped: a user may have any number of devices
    assert graph.apply(Link(DEVICE, "$device:D", "u")) == ["$device:D"]


def test_merge_cap() -> None:
    rows = {**big_cluster("a", 250), **big_cluster("b", 250), **big_cluster("c", 251)}
    graph = IdentityGraph(dict(rows))
    assert len(graph.apply(Link(MERGE, "a", "b-1"))) == 250  # exactly 500
    assert graph.size("a") == MAX_CLUSTER
    graph = IdentityGraph(dict(rows))
    assert graph.apply(Link(MERGE, "a-0", "c")) == [] and graph.changed == {}
    assert graph.apply(Link(MERGE, "lone", "a")) == ["lone"]  # 251 ids; the larger cluster's id stays
    assert graph.canonical("lone") == "a"


def test_loaded_rows_are_clusters() -> None:
    graph = IdentityGraph({"a": "u", "b": "u", "c": "v"})
    assert graph.members == {"u": {"a", "b"}, "v": {"c"}}
    assert graph.in_cluster("u") and graph.in_cluster("a") and not graph.in_cluster("w")
    assert graph.apply(Link(MERGE, "c", "b")) == ["c", "v"]
    assert graph.rows == {"a": "u", "b": "u", "c": "u", "v": "u"}
    assert graph.changed == {"c": "u", "v": "u"}


def test_module_constants() -> None:
    assert identity.DEFAULT_MODE == SIMPLIFIED and identity.MODES == (SIMPLIFIED, ORIGINAL)
    assert identity.line_fragments("$device:D", "u") == (
        ',"distinct_id":"$device:D"',
        ',"distinct_id":"u","$distinct_id_before_identity":"$device:D"',
    )


# -- the graph agrees with the reference over random link sequences ---------------------------------

IDS = ["u1", "u2", "u3", UUID, "$device:a", "$device:b", "al1", "al2"]
links = st.lists(
    st.builds(
        Link, st.sampled_from([DEVICE, IDENTIFY, ALIAS, MERGE]), st.sampled_from(IDS), st.sampled_from(IDS)
    ),
    max_size=25,
)


@given(
    links=links, commits=st.lists(st.integers(0, 25), max_size=4), cap=st.sampled_from([2, 3, 4, MAX_CLUSTER])
)
def test_graph_agrees_with_the_reference(links: list[Link], commits: list[int], cap: int) -> None:
    """Links applied commit by commit (each commit a new graph over the rows so far, as a store
    loads them) end as the reference's clusters."""
    reference = Clusters(cap)
    for kind, source, target in links:
        if kind == MERGE:
            reference.merge(source, target)
        elif kind == IDENTIFY and not identity.is_anonymous(source):
            continue  # link_of makes no such link
        elif source != target:
            reference.join(source, target, capped=kind != DEVICE)
    rows: dict[str, str] = {}
    cuts = sorted({0, len(links), *(min(c, len(links)) for c in commits)})
    with patch.object(identity, "MAX_CLUSTER", cap):  # read by the graph when it applies a link
        for start, end in itertools.pairwise(cuts):
            graph = IdentityGraph(dict(rows))
            for link in links[start:end]:
                if link.kind == IDENTIFY and not identity.is_anonymous(link.source):
                    continue
                if link.source == link.target:
                    continue
                graph.apply(link)
            assert set(graph.changed.items()) <= set(graph.rows.items())
            rows.update(graph.changed)
    assert rows == reference.mappings()
