"""How the DuckDB store reads an export: the time-clustered layout's runs in storage order, the
rest in sorted windows, every query a bounded page.

A stretch covered by one sorted run alone (storage/duckdb/schema.py) is read with a plain
filtered scan: DuckDB returns it in storage order, so no sort runs. A stretch where runs overlap,
or recent (not yet compacted) rows fall, is read as small windows with `ORDER BY time_ms, seq`.
The first window is short so the first byte leaves quickly; later windows are sized from the row
density just seen to hold about TARGET_ROWS rows (~9 MB of lines). Small windows sort faster per
row (1M rows as windows of ~8k rows: 0.8-1.0 s; as daily windows of ~33k rows: 1.9-2.1 s;
docs/performance.md) and the sort's memory stays flat whatever the store's size.

Every query is a page: it has a LIMIT and continues after the last (time_ms, seq) it returned,
bounded below by that time_ms too: the scan prunes with a plain bound, not with the OR of the
key, which made each page decode the lines of every row before it again (a 1M-row export read
in 2.1-2.6 s instead of 1.3-1.8 s, in process). It is read whole into Arrow memory and its
engine result released before its first byte is yielded, so a slow or stalled client holds one
page, never engine memory.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from rawevents.storage.arrow_strings import plain_strings, string_column_bytes
from rawevents.storage.base import ExportPlan, StoreObserver, reads_identity
from rawevents.storage.duckdb import identity, schema
from rawevents.storage.duckdb.schema import RECENT, RUNS, Run
from rawevents.timeutil import TimeSegment
from rawevents.where.printer import Sql

FIRST_CHUNK_MS = 15 * 60 * 1000
MIN_CHUNK_MS = 1000
MAX_CHUNK_MS = 7 * 24 * 3600 * 1000
TARGET_ROWS = 12_000
MIN_PAGE_ROWS = 256
FIRST_LINE_BYTES = 1024  # assumed line size until the first page says otherwise
ROWS_PER_BATCH = 16384
# At most this many rows in the range (all runs and recent rows): the export is one sorted window.
# A 1 % project beside a big one has a short run in each of its days; a query per run made its
# 10,000-row export cost 14 % of the big project's 1M-row export instead of 1 % (docs/performance.md).
SMALL_EXPORT_ROWS = 50_000

Window = tuple[int, int, int]  # start_ms, end_ms, offset_ms


@dataclass(frozen=True, slots=True)
class ExportBounds:
    """What bounds one export's engine use: bytes of lines per page, and the engine-wide slots
    for page queries (shared by every export)."""

    window_bytes: int
    slots: threading.BoundedSemaphore
    observer: StoreObserver


def read_export(
    con: duckdb.DuckDBPyConnection,
    plan: ExportPlan,
    where: Sql | None,
    bounds: ExportBounds,
    resolve: bool = False,
) -> Iterator[bytes | memoryview]:
    """The plan's lines, in (time, seq) order, read on `con` inside one snapshot: a compaction
    committing meanwhile moves rows between areas, and must neither hide nor repeat them.
    `resolve`: read ids resolved through the project's identity rows (identity)."""
    if not plan.segments:
        return
    con.execute("BEGIN TRANSACTION")
    start, end = plan.segments[0].start_ms, plan.segments[-1].end_ms
    runs = project_runs(con, plan.project_id, start, end)
    recent = recent_buckets(con, plan.project_id, start, end)
    reader = _Reader(con, plan, where, bounds, resolve)
    if sum(run.rows for run in runs) + sum(recent.values()) <= SMALL_EXPORT_ROWS:
        # A few rows spread over many runs: one sorted scan costs less than a query per run.
        for segment in plan.segments:
            yield from reader.whole(segment)
        return
    for piece in plan_pieces(plan.segments, runs, sorted(recent)):
        if reader.spent:
            return
        yield from reader.piece(piece)


class _Reader:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        plan: ExportPlan,
        where: Sql | None,
        bounds: ExportBounds,
        resolve: bool,
    ) -> None:
        self._con = con
        # With identity rows, a page is read from the stored rows and its lines resolved after
        # (identity.PageResolver), unless `where` reads a resolved id: then the page is
        # read from the resolved relation, which a join reorders, so it is sorted.
        resolve_after = resolve and not reads_identity(plan.where)
        self._resolver = identity.PageResolver(con, plan.project_id) if resolve_after else None
        self._resolve_in_query = resolve and not resolve_after
        self._plan = plan
        self._where = where
        self._bounds = bounds
        self._remaining = plan.limit
        self._line_bytes = FIRST_LINE_BYTES

    @property
    def spent(self) -> bool:
        return self._remaining is not None and self._remaining <= 0

    def whole(self, segment: TimeSegment) -> Iterator[bytes | memoryview]:
        """Every row of the segment as one sorted window, page by page."""
        if not self.spent:
            yield from self._pages((segment.start_ms, segment.end_ms, segment.offset_ms), None)

    def piece(self, piece: Piece) -> Iterator[bytes | memoryview]:
        """A run's stretch in storage order; any other stretch as sorted windows."""
        if piece.run_batch is not None:
            yield from self._pages((piece.start_ms, piece.end_ms, piece.offset_ms), piece.run_batch)
            return
        pace = _Pace()
        for window in _windows(TimeSegment(piece.start_ms, piece.end_ms, piece.offset_ms), pace):
            if self.spent:
                return
            rows = yield from self._pages(window, None)
            pace.observe(window[1] - window[0], rows)

    def _pages(self, window: Window, run_batch: int | None) -> Generator[bytes | memoryview, None, int]:
        """Every row of the window (of one run, or of both areas sorted), page by page; returns
        how many there were."""
        after: tuple[int, int] | None = None
        rows = 0
        while not self.spent:
            page_rows = max(MIN_PAGE_ROWS, min(TARGET_ROWS, self._bounds.window_bytes // self._line_bytes))
            limit = page_rows if self._remaining is None else min(page_rows, self._remaining)
            sql, params = export_query(
                self._plan,
                self._where,
                window,
                run_batch,
                after,
                limit,
                resolve=self._resolve_in_query,
                with_ids=self._resolver is not None,
            )
            with self._bounds.slots:
                page = self._con.sql(sql, params=params).to_arrow_table(ROWS_PER_BATCH)
            if page.num_rows == 0:
                break
            rows += page.num_rows
            if self._remaining is not None:
                self._remaining -= page.num_rows
            lines = page.column(0)
            self._line_bytes = max(1, lines.nbytes // page.num_rows)
            after = (page.column(1)[-1].as_py(), page.column(2)[-1].as_py())
            self._bounds.observer.rows_exported(page.num_rows)
            if self._resolver is not None:
                yield self._resolver.page_bytes(plain_strings(lines), page.column(3))
            else:
                for chunk in lines.chunks:
                    yield string_column_bytes(chunk)
            if page.num_rows < limit:
                break
        return rows


class _Pace:
    """The width of the next export window, steered towards `target` rows per window."""

    def __init__(self, target: int = TARGET_ROWS) -> None:
        self.width = FIRST_CHUNK_MS
        self.target = target

    def observe(self, width_ms: int, rows: int) -> None:
        """Size the next window from the density of the last one: at most 16x wider (sparse or
        filtered exports reach wide windows quickly), at most 4x narrower."""
        if width_ms <= 0:
            return
        wanted = width_ms * 16 if rows == 0 else width_ms * self.target // rows
        wanted = max(width_ms // 4, min(width_ms * 16, wanted))
        self.width = max(MIN_CHUNK_MS, min(MAX_CHUNK_MS, wanted))


def _windows(segment: TimeSegment, pace: _Pace) -> Iterator[Window]:
    """Consecutive half-open time windows over the segment, each as wide as `pace` says when it is
    produced (the caller feeds `pace` what each window returned)."""
    start = segment.start_ms
    while start < segment.end_ms:
        end = min(segment.end_ms, start + pace.width)
        yield start, end, segment.offset_ms
        start = end


def export_query(
    plan: ExportPlan,
    where: Sql | None,
    window: Window,
    run_batch: int | None,
    after: tuple[int, int] | None,
    limit: int | None,
    *,
    resolve: bool = False,
    with_ids: bool = False,
) -> tuple[str, list[Any]]:
    """One page of a window: rows in [start, end) after the (time_ms, seq) key `after`, from one
    run in storage order (`run_batch`), or from both areas sorted (None). With `resolve`, ids are
    resolved through the identity rows; the join does not keep storage order, so a run's page is
    sorted too. `with_ids`: the stored `distinct_id` as a fourth column."""
    start, end, offset_ms = window
    if after is not None:
        start = max(start, after[0])
    column, params = _line_column(plan, offset_ms)
    conditions = ["project_id = ?", "time_ms >= ?", "time_ms < ?"]
    params += [plan.project_id, start, end]
    if run_batch is not None:
        conditions.append("run_batch = ?")
        params.append(run_batch)
    if after is not None:
        conditions.append("(time_ms > ? OR (time_ms = ? AND seq > ?))")
        params += [after[0], after[0], after[1]]
    if plan.events is not None:
        conditions.append("list_contains(?, event)")
        params.append(list(plan.events))
    if where is not None:
        conditions.append(f"({where.text})")
        params.extend(where.params)
    conditions += position_conditions(plan, params)
    source, order = (schema.SORTED, "") if run_batch is not None else ("events", " ORDER BY time_ms, seq")
    if resolve:
        source, order = (
            identity.resolved(source, run_batch=run_batch is not None),
            " ORDER BY time_ms, seq",
        )
    ids = ", distinct_id" if with_ids else ""
    sql = f"SELECT {column} AS line, time_ms, seq{ids} FROM {source} WHERE {' AND '.join(conditions)}{order}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def _line_column(plan: ExportPlan, offset_ms: int) -> tuple[str, list[Any]]:
    """The stored line, or (time_in_ms, time_utc) the line with its time rendered again: the
    rendered value is spliced over the stored local seconds, whose digits start at time_pos."""
    if not (plan.time_in_ms or plan.time_utc):
        return "line", []
    column = (
        f"line[:time_pos] || {_SHOWN_TIME}"
        " || line[time_pos + 1 + length(CAST((time_ms + ?) // 1000 AS VARCHAR)):]"
    )
    return column, [*_shown_time_params(plan, offset_ms), offset_ms]


# The `time` an exported line shows, as text: the stored local seconds, or as time_in_ms and
# time_utc render it (its parameter: _shown_time_params).
_SHOWN_TIME = "CAST((time_ms + ?) // ? AS VARCHAR)"


def _shown_time_params(plan: ExportPlan, offset_ms: int) -> list[Any]:
    return [0 if plan.time_utc else offset_ms, 1 if plan.time_in_ms else 1000]


def position_conditions(plan: ExportPlan, params: list[Any]) -> list[str]:
    """The incremental-export bounds on `seq` as SQL conditions, their values appended to params."""
    conditions = []
    if plan.after_position is not None:
        conditions.append("seq > ?")
        params.append(plan.after_position)
    if plan.upto_position is not None:
        conditions.append("seq <= ?")
        params.append(plan.upto_position)
    return conditions


RECENT_BUCKET_MS = 60_000  # resolution at which an export locates recent rows


@dataclass(frozen=True, slots=True)
class Piece:
    """A stretch [start_ms, end_ms) of one export segment: read from one run in storage order
    (`run_batch` set), or from both areas with a sort (`run_batch` None)."""

    start_ms: int
    end_ms: int
    offset_ms: int
    run_batch: int | None


def project_runs(con: duckdb.DuckDBPyConnection, project_id: int, start_ms: int, end_ms: int) -> list[Run]:
    rows = con.execute(
        f"SELECT run_batch, project_id, part, min_time, max_time, rows FROM {RUNS}"
        " WHERE project_id = ? AND max_time >= ? AND min_time < ? ORDER BY min_time",
        [project_id, start_ms, end_ms],
    ).fetchall()
    return [Run(*map(int, row)) for row in rows]


def recent_buckets(
    con: duckdb.DuckDBPyConnection, project_id: int, start_ms: int, end_ms: int
) -> dict[int, int]:
    """Rows of the project's recent area in the range, per RECENT_BUCKET_MS bucket."""
    rows = con.execute(
        f"SELECT time_ms // ?, count(*) FROM {RECENT}"
        " WHERE project_id = ? AND time_ms >= ? AND time_ms < ? GROUP BY 1",
        [RECENT_BUCKET_MS, project_id, start_ms, end_ms],
    ).fetchall()
    return {int(bucket): int(count) for bucket, count in rows}


def plan_pieces(segments: Sequence[TimeSegment], runs: Sequence[Run], buckets: Sequence[int]) -> list[Piece]:
    """Cut the segments where the set of sources changes: a stretch covered by one run alone is
    read in that run's order; a stretch covered by several runs or by recent rows is sorted;
    stretches with no rows are skipped."""
    sources: list[tuple[int, int, int | None]] = [(r.min_time, r.max_time + 1, r.run_batch) for r in runs]
    sources += [(b * RECENT_BUCKET_MS, (b + 1) * RECENT_BUCKET_MS, None) for b in buckets]
    pieces: list[Piece] = []
    for segment in segments:
        pieces += _segment_pieces(segment, sources)
    return pieces


def _segment_pieces(segment: TimeSegment, sources: Iterable[tuple[int, int, int | None]]) -> list[Piece]:
    """Sweep the sources' edges in time order, keeping the set of sources active in between."""
    changes: list[tuple[int, int, int | None]] = []
    for lo, hi, run in sources:
        lo, hi = max(lo, segment.start_ms), min(hi, segment.end_ms)
        if lo < hi:
            changes += [(lo, 1, run), (hi, -1, run)]
    changes.sort(key=lambda change: change[0])
    active: Counter[int | None] = Counter()
    pieces: list[Piece] = []
    for index, (edge, delta, run) in enumerate(changes):
        active[run] += delta
        if active[run] == 0:
            del active[run]
        following = changes[index + 1][0] if index + 1 < len(changes) else edge
        if following == edge or not active:
            continue
        only = next(iter(active)) if len(active) == 1 and sum(active.values()) == 1 else None
        previous = pieces[-1] if pieces else None
        if previous is not None and previous.end_ms == edge and previous.run_batch == only:
            pieces[-1] = Piece(previous.start_ms, following, segment.offset_ms, only)
        else:
            pieces.append(Piece(edge, following, segment.offset_ms, only))
    return pieces
