"""The storage contract: everything the server asks of an engine, typed, and nothing else.

Every SQL statement of rawevents lives behind this contract (in `rawevents/storage/`) or in the
per-dialect `where` printers; the export, query and ingest layers hand a store plans and typed
questions, never SQL. Events are stored with the export line already assembled at ingest, so an
export is a scan that hands the engine's string buffers straight to the compressor, never a
per-row Python loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pyarrow as pa

from rawevents.timeutil import TimeSegment
from rawevents.where.ast import Access, Node, children

# `properties["distinct_id"]` (or `$distinct_id`) is every store's `distinct_id` column: ingestion
# keeps the id's text there (NULL when the event has none), so grouping or filtering by it reads no
# JSON (the top distinct_ids of a month, ~15x faster than extracting the property).
DISTINCT_ID_KEYS = (
    Access(scope="properties", name="distinct_id"),
    Access(scope="properties", name="$distinct_id"),
)

# What identity resolution changes in a row: a `where` reading none of these filters the stored
# rows the same before and after resolution, so a store may filter first and resolve the result.
IDENTITY_NAMES = frozenset({"distinct_id", "$distinct_id", "$distinct_id_before_identity"})


def reads_identity(node: Node | None) -> bool:
    """Whether an expression reads a property that identity resolution changes."""
    stack = [] if node is None else [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Access) and current.scope == "properties" and current.name in IDENTITY_NAMES:
            return True
        stack.extend(children(current))
    return False


class StoredEvent(NamedTuple):
    """One normalised event, ready to store.

    `line` is the complete export line, newline included, with `time` in project-local seconds:
    `{"event":…,"properties":{"time":<local s>,"distinct_id":…,<sorted keys>}}\\n`.
    `time_pos` is the character offset where the digits of `time` start inside `line`, so an
    export with `time_in_ms` can splice milliseconds in without parsing JSON.
    """

    project_id: int
    time_ms: int  # UTC epoch milliseconds: the event's instant, used for ranges and ordering
    event: str
    distinct_id: str | None
    insert_id: str
    time_pos: int
    line: str
    # The identity link the event makes (rawevents.identity.Link's fields; kind 0: none). The store
    # applies it in the commit that stores the event.
    link_kind: int = 0
    link_source: str | None = None
    link_target: str | None = None


# Incoming events as Arrow columns; the writer adds `seq` (ingestion order) at commit.
INCOMING_SCHEMA = pa.schema(
    [
        ("project_id", pa.int32()),
        ("time_ms", pa.int64()),
        ("event", pa.string()),
        ("distinct_id", pa.string()),
        ("insert_id", pa.string()),
        ("time_pos", pa.int32()),
        ("line", pa.string()),
        ("link_kind", pa.int8()),
        ("link_source", pa.string()),
        ("link_target", pa.string()),
    ]
)
# The columns a store keeps of each event (the link columns are applied to identity rows instead).
EVENT_COLUMNS = ("project_id", "time_ms", "event", "distinct_id", "insert_id", "time_pos", "line")


def events_table(rows: Sequence[StoredEvent]) -> pa.Table:
    """StoredEvent rows as an Arrow table of INCOMING_SCHEMA (also built in ingest workers)."""
    return pa.Table.from_arrays(
        [
            pa.array(column, type=field.type)
            for column, field in zip(zip(*rows, strict=True), INCOMING_SCHEMA, strict=True)
        ],
        schema=INCOMING_SCHEMA,
    )


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What to export: one project's rows over UTC segments, in (time, ingestion order).

    `where` is the parsed expression; each store compiles it with its own dialect's printer, in
    `timezone` (naive datetimes in `where` are read in the project's zone)."""

    project_id: int
    segments: Sequence[TimeSegment]
    events: tuple[str, ...] | None = None
    where: Node | None = None
    timezone: str = "UTC"
    limit: int | None = None
    time_in_ms: bool = False
    # `time` rendered as the UTC epoch instead of project-local time (the `time_utc` extension).
    time_utc: bool = False
    # Incremental export (rawevents.export.cursor): only events whose store-defined ingestion
    # position is in (after_position, upto_position]; None: no bound.
    after_position: int | None = None
    upto_position: int | None = None
    # Lines with the canonical distinct_id (Mixpanel's export); False: as ingested (an extension).
    resolve_identity: bool = True


@dataclass(frozen=True, slots=True)
class ProfileQuery:
    """One page of profiles of a kind, ordered by id; `ids` restricts to those ids."""

    project_id: int
    kind: str
    group_key: str = ""
    ids: tuple[str, ...] | None = None
    offset: int = 0
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class ProfilePage:
    total: int  # profiles matching the query, over every page
    rows: list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    """One `/engage` or `/groups` update for one profile."""

    profile_id: str
    operation: str  # "$set", "$set_once", "$add", "$append", "$union", "$remove", "$unset", "$delete"
    value: Any
    time_ms: int


@dataclass(frozen=True, slots=True)
class DeletedRows:
    events: int
    profiles: int


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """What a store snapshot holds: enough to tell which acknowledged writes it includes."""

    events: int
    profiles: int
    last_seq: int  # ingestion-order number of the newest event in the snapshot (0: none)


@dataclass(frozen=True, slots=True)
class EventSelection:
    """Which events a query reads: one project, a UTC range cut where the UTC offset changes,
    optionally some event names and a parsed `where` (compiled by each store in `timezone`)."""

    project_id: int
    segments: Sequence[TimeSegment]
    timezone: str = "UTC"
    events: tuple[str, ...] | None = None
    where: Node | None = None


UNITS = ("minute", "hour", "day", "week", "month")
KINDS = ("general", "unique", "average")


@dataclass(frozen=True, slots=True)
class SegmentationQuery:
    """Counts per local-time bucket and segment key. Without `on`, the key is the event name.
    Only the `limit` keys with the most events over the whole range are counted."""

    selection: EventSelection
    unit: str  # one of UNITS; buckets start at local wall-clock boundaries (weeks on Monday)
    on: Node | None = None  # keyed by `string(on)`, undefined and null left out
    limit: int = 60
    unique: bool = False  # also count distinct distinct_ids per bucket


class SegmentCount(NamedTuple):
    bucket_ms: int  # local wall-clock start of the bucket, as epoch milliseconds
    key: str
    events: int
    users: int  # distinct distinct_ids (0 unless the query asked for unique)


@dataclass(frozen=True, slots=True)
class EventsPageQuery:
    """One page of raw events in (time, ingestion) order, resuming after `cursor` (keyset)."""

    selection: EventSelection
    limit: int
    newest_first: bool = False
    cursor: tuple[int, int] | None = None  # (time_ms, seq) of the last row already shown


class PageRow(NamedTuple):
    time_ms: int
    seq: int
    line: str  # the export line, newline included


def on_canonical_profiles(updates: Sequence[ProfileUpdate], canonical: dict[str, str]) -> list[ProfileUpdate]:
    """User-profile updates moved to the canonical id of each id that resolves to another (an
    update sent to any id of an identity cluster lands on its canonical profile)."""
    return [replace(u, profile_id=canonical.get(u.profile_id, u.profile_id)) for u in updates]


# Applies one update to a profile's current properties (None: no profile); None result deletes it.
ProfileApplier = Callable[[dict[str, Any] | None, ProfileUpdate], dict[str, Any] | None]


class StoreObserver(Protocol):
    """What a store reports about its own work (the server's metrics implement it), so every engine
    feeds the same dashboards. Called from the store's threads: implementations must be thread-safe
    and cheap."""

    def queue_depth(self, jobs: int) -> None:
        """Write jobs waiting for the writer, after one was queued or a commit took some."""

    def committed(self, jobs: int, events: int, seconds: float) -> None:
        """One group commit: requests (jobs) and event rows it held, and how long it took."""

    def commit_failed(self) -> None:
        """A write transaction failed (its requests get a 503, nothing of it was acknowledged)."""

    def rows_exported(self, rows: int) -> None:
        """An export scan produced `rows` more rows."""

    def compacted(self, seconds: float) -> None:
        """A background compaction (part merge, retention rewrite) finished."""


class NullObserver:
    """The observer of a store nobody watches."""

    def queue_depth(self, jobs: int) -> None:
        pass

    def committed(self, jobs: int, events: int, seconds: float) -> None:
        pass

    def commit_failed(self) -> None:
        pass

    def rows_exported(self, rows: int) -> None:
        pass

    def compacted(self, seconds: float) -> None:
        pass


class EventStore(Protocol):
    """What the server calls. Writes return futures that resolve once the data is durable
    (acknowledge only then); reads run on the caller's thread and never see uncommitted rows."""

    # The kind of ingestion position this store's cursors carry (rawevents.export.cursor).
    cursor_kind: str

    def ingest_position(self) -> int:
        """The position of the newest committed event: every event at or below it is committed and
        visible to reads that start now; events committed later get higher positions."""

    def submit_events(self, events: Sequence[StoredEvent] | pa.Table) -> Future[None]:
        """Queue events (rows, or an Arrow table of INCOMING_SCHEMA) for the next durable commit,
        idempotent on the dedup key (event, distinct_id, time, $insert_id) per project."""

    def submit_profile_updates(
        self,
        project_id: int,
        kind: str,
        group_key: str,
        updates: Sequence[ProfileUpdate],
        apply: ProfileApplier,
    ) -> Future[None]:
        """Apply updates in order, atomically; the future resolves once they are durable."""

    def export_chunks(self, plan: ExportPlan) -> Iterator[bytes | memoryview]:
        """Yield export JSONL bytes in (time, ingestion order); closing the iterator stops the scan.
        Raises WhereError (a 400) before the first chunk when the plan's `where` cannot compile."""

    def profile_page(self, query: ProfileQuery) -> ProfilePage: ...

    def profiles(
        self, project_id: int, kind: str, group_key: str = ""
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every stored profile of a kind as (id, properties), ordered by id."""

    def event_property_counts(
        self, project_id: int, event: str | None, sample_rows: int, limit: int | None
    ) -> list[tuple[str, int]]:
        """(property name, events carrying it) over the project's `sample_rows` most recent events
        (of `event`, when given), most frequent first, then by name; `time` excluded."""

    def identity_mappings(
        self, project_id: int, after: int | None = None, upto: int | None = None
    ) -> list[tuple[str, str]]:
        """(distinct_id, resolved_distinct_id) of every id of the project that resolves to
        another, ordered by id; with `after`/`upto` (ingestion positions, as export cursors carry),
        only those whose resolution changed in that range."""

    def put_identity_mappings(self, project_id: int, rows: Sequence[tuple[str, str, int]]) -> None:
        """Store (distinct_id, canonical_id, time_ms of the linking event) rows as given, durably
        (a migration between stores; the time keeps retention's rule)."""

    def check(self, timeout: float) -> None:
        """Raise StorageError unless the store answers a read and its write path takes a job
        within `timeout` seconds (the readiness probe)."""

    # -- data lifecycle (GDPR requests, retention, project deletion, backup) ---------------------
    # Writes are serialised with ingestion commits and durable when they return.

    def delete_users(self, project_id: int, distinct_ids: Sequence[str]) -> DeletedRows:
        """Delete every event of the listed users' identity clusters, their user profiles (not
        groups') and the clusters' identity rows."""

    def drop_events_before(self, project_id: int, cutoff_ms: int) -> int:
        """Delete the project's events with time_ms < cutoff_ms; returns how many."""

    def delete_project(self, project_id: int) -> DeletedRows:
        """Delete every event and profile of the project."""

    def user_events(self, project_id: int, distinct_ids: Sequence[str]) -> Iterator[bytes | memoryview]:
        """The events of the users' identity clusters as resolved export lines, in (time,
        ingestion order)."""

    def user_profiles(
        self, project_id: int, distinct_ids: Sequence[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The profiles of the users' identity clusters as (distinct_id, properties), by id."""

    def backup(self, target: Path) -> BackupInfo:
        """Write a consistent snapshot of the whole store into the new directory `target`, while
        ingestion goes on; a restore of it exports byte-identical lines."""

    def segmentation(self, query: SegmentationQuery) -> list[SegmentCount]:
        """Event (and optionally user) counts per bucket and key, for the top `limit` keys."""

    def top_values(self, selection: EventSelection, on: Node, limit: int) -> list[tuple[str, int]]:
        """The `limit` most frequent values of `on` (as `string()` renders them; undefined and
        null values are left out) with their event counts, most frequent first, then by value."""

    def events_page(self, query: EventsPageQuery) -> list[PageRow]:
        """Up to `limit` rows after the cursor, in the asked order."""

    def close(self) -> None: ...
