"""Identity merge: Mixpanel's rules for which ids are one person, and which id stands for them.

A project has one mode (docs/identity.md), fixed once it has events:
- `simplified` (Simplified ID Merge, the default of new Mixpanel projects): an event's
  `distinct_id` is its `$user_id` when it has one, else `$device:<$device_id>` when it has a
  `$device_id`, else the id it was sent with. The first event carrying both links the device to
  the user; a device already linked stays with its first user. The canonical id is the user id.
- `original` (Original ID Merge): `$identify` (`$anon_id` → `$identified_id`), `$create_alias`
  (`alias` → `distinct_id`) and `$merge` (`$distinct_ids`, through `/import` only) join ids into
  clusters of at most MAX_CLUSTER ids. A cluster's canonical id is chosen once and kept while ids
  join it; when `$merge` joins two clusters, the larger one's canonical id stays (the first
  listed on a tie).

Links are extracted at ingest (`link_of`) and travel with their event to the store, which applies
them in the commit that stores the event (`IdentityGraph`) and keeps one row per id whose
canonical id is another: `(distinct_id → canonical_id)`. Readers resolve through those rows at
read time, so a link that arrives days late changes how every stored day reads, and no stored
event is rewritten. This module holds the rules only; the stores hold the rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from rawevents.errors import BadRequest

SIMPLIFIED = "simplified"
ORIGINAL = "original"
MODES = (SIMPLIFIED, ORIGINAL)
DEFAULT_MODE = SIMPLIFIED
MAX_CLUSTER = 500  # Original ID Merge: ids in one cluster, at most
DEVICE_PREFIX = "$device:"
BEFORE_IDENTITY = "$distinct_id_before_identity"
LINK_EVENTS = frozenset({"$identify", "$create_alias", "$merge"})

# Link kinds, as stored in the `link_kind` column of incoming events (0: the event links nothing).
NO_LINK = 0
DEVICE = 1  # simplified: `$device:<device_id>` → `$user_id`
IDENTIFY = 2  # original: `$anon_id` → `$identified_id`
ALIAS = 3  # original: `alias` → `distinct_id`
MERGE = 4  # original: `$distinct_ids[0]` ↔ `$distinct_ids[1]`

# The anonymous ids `$identify` merges: a UUID (Mixpanel asks for v4; any version is taken here) or
# an id an SDK generated (`$device:` prefix). Anything else is an identified id, which only `$merge`
# may join to another.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Link(NamedTuple):
    kind: int
    source: str  # the id that joins (device, anon id, alias; the first of a merge)
    target: str  # the id it joins (user, identified id, distinct_id; the second of a merge)


class Refused(Exception):
    """An event whose identity properties Mixpanel refuses (the record fails, with this message)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def validate_mode(mode: str) -> str:
    if mode not in MODES:
        raise BadRequest(f"id_merge must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def _id_text(value: Any) -> str | None:
    """An id property as text: a non-empty string, or an integer's digits; else None."""
    kind = type(value)
    if kind is str:
        return value or None
    if kind is int:
        return str(value)
    return None


def simplified_ids(props: dict[str, Any]) -> Link | None:
    """Set `distinct_id` from `$user_id` / `$device_id` (in place) and return the device link an
    event carrying both makes."""
    user = _id_text(props.get("$user_id"))
    device = _id_text(props.get("$device_id"))
    if user is not None:
        props["distinct_id"] = user
        return Link(DEVICE, DEVICE_PREFIX + device, user) if device is not None else None
    if device is not None:
        props["distinct_id"] = DEVICE_PREFIX + device
    return None


def is_anonymous(distinct_id: str) -> bool:
    return distinct_id.startswith(DEVICE_PREFIX) or _UUID.fullmatch(distinct_id) is not None


def original_link(event: str, props: dict[str, Any], via_import: bool) -> Link | None:
    """The link an `$identify`, `$create_alias` or `$merge` event makes (None: none, or one that
    Mixpanel's conditions leave unmerged). Such an event without a `distinct_id` gets the id it
    merges into. Raises Refused for a `$merge` sent to `/track` or without two ids."""
    if event == "$identify":
        # The API's form is `$anon_id`/`$identified_id`; mixpanel-browser sends `$anon_distinct_id`
        # and the new id as `distinct_id`.
        anon = _id_text(props.get("$anon_id", props.get("$anon_distinct_id")))
        identified = _id_text(props.get("$identified_id", props.get("distinct_id")))
        if identified is not None and "distinct_id" not in props:
            props["distinct_id"] = identified
        if anon is None or identified is None or anon == identified or not is_anonymous(anon):
            return None
        return Link(IDENTIFY, anon, identified)
    if event == "$create_alias":
        alias, original = _id_text(props.get("alias")), _id_text(props.get("distinct_id"))
        if alias is None or original is None or alias == original:
            return None
        return Link(ALIAS, alias, original)
    if event == "$merge":
        if not via_import:
            raise Refused("event", "'$merge' is accepted only by /import, with the project's credentials")
        ids = props.get("$distinct_ids")
        pair = [_id_text(value) for value in ids] if type(ids) is list else []
        if len(pair) != 2 or pair[0] is None or pair[1] is None:
            raise Refused(
                "properties.$distinct_ids",
                "'properties.$distinct_ids' is invalid: must be a list of two distinct ids",
            )
        if "distinct_id" not in props:
            props["distinct_id"] = pair[0]
        return None if pair[0] == pair[1] else Link(MERGE, pair[0], pair[1])
    return None


def link_of(event: str, props: dict[str, Any], mode: str, via_import: bool) -> Link | None:
    """Apply the project's identity mode to one event's properties (before its `distinct_id` is
    read) and return the link it makes, if any."""
    if mode == SIMPLIFIED:
        return simplified_ids(props)
    return original_link(event, props, via_import)


# -- the graph a store's commit applies links to -------------------------------------------------


@dataclass(slots=True)
class IdentityGraph:
    """The part of one project's identity rows that a commit's links touch, and the rule that
    applies a link to them. A store loads `rows` (distinct_id → canonical_id) for every id the
    links name and every member of those ids' clusters (`needed_ids`, then `needed_members`),
    applies the links in ingestion order, and writes the rows of `changed`."""

    rows: dict[str, str]
    members: dict[str, set[str]] = field(default_factory=dict)
    changed: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for member, canonical in self.rows.items():
            self.members.setdefault(canonical, set()).add(member)

    def canonical(self, distinct_id: str) -> str:
        return self.rows.get(distinct_id, distinct_id)

    def size(self, canonical: str) -> int:
        return 1 + len(self.members.get(canonical, ()))

    def in_cluster(self, distinct_id: str) -> bool:
        return distinct_id in self.rows or bool(self.members.get(distinct_id))

    def apply(self, link: Link) -> list[str]:
        """Apply one link; the ids it points to a new canonical id (none: Mixpanel's rules leave
        it unmerged)."""
        kind, source, target = link
        if kind == MERGE:
            return self._merge(self.canonical(source), self.canonical(target))
        # DEVICE, IDENTIFY and ALIAS join a lone id to the target's cluster, once.
        if self.in_cluster(source) or source == self.canonical(target):
            return []
        canonical = self.canonical(target)
        if kind != DEVICE and self.size(canonical) + 1 > MAX_CLUSTER:
            return []
        self._point(source, canonical)
        return [source]

    def _merge(self, first: str, second: str) -> list[str]:
        if first == second or self.size(first) + self.size(second) > MAX_CLUSTER:
            return []
        keep, absorbed = (second, first) if self.size(second) > self.size(first) else (first, second)
        moved = [*sorted(self.members.pop(absorbed, set())), absorbed]
        for member in moved:
            self._point(member, keep)
        return moved

    def _point(self, member: str, canonical: str) -> None:
        old = self.rows.get(member)
        if old is not None and old in self.members:  # a merge pops the absorbed id's members first
            self.members[old].discard(member)
        self.rows[member] = canonical
        self.members.setdefault(canonical, set()).add(member)
        self.changed[member] = canonical


def needed_ids(links: Iterable[Link]) -> set[str]:
    """Every id the links name: their rows (and, through them, their canonical ids) are needed."""
    ids: set[str] = set()
    for _, source, target in links:
        ids.add(source)
        ids.add(target)
    return ids


def line_fragments(distinct_id: str, canonical_id: str) -> tuple[str, str]:
    """What a reader splices into an export line whose `distinct_id` resolves to another id: the
    stored `,"distinct_id":<id>` and its replacement, which also carries the id as sent
    (`$distinct_id_before_identity`, right after `distinct_id`)."""
    sent = orjson.dumps(distinct_id).decode()
    stored = ',"distinct_id":' + sent
    resolved = ',"distinct_id":' + orjson.dumps(canonical_id).decode() + f',"{BEFORE_IDENTITY}":' + sent
    return stored, resolved
