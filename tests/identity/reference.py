"""A small reference resolver, written from Mixpanel's identity rules (rawevents/identity.py's
docstring, docs/identity.md) and independent of rawevents.identity: given one project's events as
sent, in arrival order, it computes what an export shows for each.

It keeps the clusters as plainly as it can: `canonical_of` maps every id that belongs to a
cluster of two or more ids (its canonical id included) to that canonical id, and a cluster's
members are found by scanning it. Slow, and obviously right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEVICE = "$device:"
CAP = 500  # Original ID Merge: ids in one cluster, at most
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def text(value: Any) -> str | None:
    """An id as the rules read it: a non-empty string or an integer's digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    return None


def anonymous(distinct_id: str) -> bool:
    return distinct_id.startswith(DEVICE) or UUID.fullmatch(distinct_id) is not None


@dataclass
class Clusters:
    cap: int = CAP
    canonical_of: dict[str, str] = field(default_factory=dict)

    def canonical(self, distinct_id: str) -> str:
        return self.canonical_of.get(distinct_id, distinct_id)

    def members(self, canonical: str) -> list[str]:
        """Every id of the cluster whose canonical id is `canonical` (itself when alone)."""
        return [d for d, c in self.canonical_of.items() if c == canonical] or [canonical]

    def join(self, source: str, target: str, capped: bool) -> None:
        """A lone id joins the target's cluster, under its canonical id; an id already in a
        cluster is never moved."""
        if source in self.canonical_of or source == target:
            return
        canonical = self.canonical(target)
        cluster = self.members(canonical)
        if capped and len(cluster) + 1 > self.cap:
            return
        for member in [*cluster, source]:
            self.canonical_of[member] = canonical

    def merge(self, first: str, second: str) -> None:
        """Two clusters become one; the larger one's canonical id stays, the first's on a tie."""
        a, b = self.canonical(first), self.canonical(second)
        if a == b:
            return
        ours, theirs = self.members(a), self.members(b)
        if len(ours) + len(theirs) > self.cap:
            return
        keep = b if len(theirs) > len(ours) else a
        for member in [*ours, *theirs]:
            self.canonical_of[member] = keep

    def mappings(self) -> dict[str, str]:
        """The non-trivial mappings: every id whose canonical id is another."""
        return {d: c for d, c in self.canonical_of.items() if d != c}


@dataclass(frozen=True)
class Exported:
    insert_id: str
    distinct_id: str | None  # as exported (canonical)
    before_identity: str | None  # `$distinct_id_before_identity`, only when it differs
    stored: str | None  # the id the event is stored under (the as-ingested export)


def stored_id(event: Mapping[str, Any], mode: str) -> str | None:
    """The id an event is stored under, from its properties as sent."""
    props = event["properties"]
    sent = props.get("distinct_id")
    sent_id = sent if isinstance(sent, str) else text(sent)
    if mode == "simplified":
        user, device = text(props.get("$user_id")), text(props.get("$device_id"))
        if user is not None:
            return user
        if device is not None:
            return DEVICE + device
        return sent_id
    if "distinct_id" not in props:
        if event["event"] == "$identify":
            return text(props.get("$identified_id"))
        if event["event"] == "$merge":
            ids = props.get("$distinct_ids")
            return text(ids[0]) if isinstance(ids, list) and ids else None
    return sent_id


def apply(clusters: Clusters, event: Mapping[str, Any], mode: str) -> None:
    """The link the event makes, if any, applied to the clusters."""
    props, name = event["properties"], event["event"]
    if mode == "simplified":
        user, device = text(props.get("$user_id")), text(props.get("$device_id"))
        if user is not None and device is not None:
            clusters.join(DEVICE + device, user, capped=False)
        return
    if name == "$identify":
        anon, identified = text(props.get("$anon_id")), text(props.get("$identified_id"))
        if anon is not None and identified is not None and anonymous(anon):
            clusters.join(anon, identified, capped=True)
    elif name == "$create_alias":
        alias, original = text(props.get("alias")), text(props.get("distinct_id"))
        if alias is not None and original is not None:
            clusters.join(alias, original, capped=True)
    elif name == "$merge":
        ids = props.get("$distinct_ids")
        if isinstance(ids, list) and len(ids) == 2:
            first, second = text(ids[0]), text(ids[1])
            if first is not None and second is not None:
                clusters.merge(first, second)


def resolve(
    arrivals: Iterable[Mapping[str, Any]], mode: str, cap: int = CAP
) -> tuple[dict[str, Exported], dict[str, str]]:
    """Each event's export (by `$insert_id`; a redelivered copy is stored once) and the project's
    non-trivial mappings, after every event of `arrivals` (in arrival order) has arrived."""
    clusters = Clusters(cap)
    stored: dict[str, str | None] = {}
    for event in arrivals:
        stored.setdefault(event["properties"]["$insert_id"], stored_id(event, mode))
        apply(clusters, event, mode)
    exported = {}
    for insert_id, distinct_id in stored.items():
        canonical = None if distinct_id is None else clusters.canonical(distinct_id)
        before = distinct_id if canonical != distinct_id else None
        exported[insert_id] = Exported(insert_id, canonical, before, distinct_id)
    return exported, clusters.mappings()
