"""The time-clustered layout through the store's public methods: whatever the arrival order and
however far compaction got, an export returns exactly the stored rows in (time, ingestion order),
dedup holds against both areas, and `seq` survives compaction."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import duckdb
import orjson
import pytest

from rawevents.eventline import assemble_line
from rawevents.storage.base import ExportPlan, StoredEvent
from rawevents.storage.duckdb import compaction, export, schema
from rawevents.storage.duckdb.store import DuckDBStore
from rawevents.timeutil import TimeSegment

DAY = 86_400_000
T0 = 1_790_812_800_000  # a UTC midnight


def _event(project: int, time_ms: int, n: int, event: str = "e") -> StoredEvent:
    props = {"distinct_id": f"u{n % 7}", "$insert_id": f"i{n}", "n": n}
    pos, line = assemble_line(event, props, time_ms // 1000)
    return StoredEvent(project, time_ms, event, f"u{n % 7}", f"i{n}", pos, line)


def _ns(store: DuckDBStore, plan: ExportPlan) -> list[int]:
    body = b"".join(bytes(chunk) for chunk in store.export_chunks(plan))
    return [orjson.loads(line)["properties"]["n"] for line in body.splitlines()]


def _full(project: int = 1, **kwargs: object) -> ExportPlan:
    return ExportPlan(project, [TimeSegment(T0 - DAY, T0 + 40 * DAY, 0)], **kwargs)  # type: ignore[arg-type]


pytestmark = pytest.mark.usefixtures("export_reading")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
    yield s
    s.close()


def _expected(events: list[StoredEvent]) -> list[int]:
    """Export order: time, then arrival (n is the arrival index in these tests)."""
    ns = [orjson.loads(e.line)["properties"]["n"] for e in events]
    return [n for _, n in sorted(zip((e.time_ms for e in events), ns, strict=True))]


def _counts(store: DuckDBStore) -> tuple[int, int, int]:
    [(recent,)] = store.query(f"SELECT count(*) FROM {schema.RECENT}")
    [(stored,)] = store.query(f"SELECT count(*) FROM {schema.SORTED}")
    [(runs,)] = store.query(f"SELECT count(*) FROM {schema.RUNS}")
    return int(recent), int(stored), int(runs)


def test_shuffled_arrival_is_sorted_into_one_run_per_day(store: DuckDBStore) -> None:
    rng = random.Random(3)
    events = [_event(1, T0 + rng.randrange(30 * DAY), n) for n in range(3000)]
    for i in range(0, 3000, 500):
        store.submit_events(events[i : i + 500]).result()
    assert _ns(store, _full()) == _expected(events)  # all recent: sorted windows
    store.compact()
    assert _counts(store) == (0, 3000, 30)
    assert _ns(store, _full()) == _expected(events)
    # Every row kept its ingestion order number.
    seqs = store.query(f"SELECT seq FROM {schema.SORTED} ORDER BY seq")
    assert [s for (s,) in seqs] == list(range(1, 3001))


def test_exports_are_exact_at_every_stage_of_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random batches, flushes and merges in between (in slices and windows of a few rows, so each
    step is several statements); each export compared to the reference."""
    monkeypatch.setattr(compaction, "SORT_ROWS", 40)
    monkeypatch.setattr(compaction, "SLICE_ROWS", 150)
    rng = random.Random(11)
    store = DuckDBStore(tmp_path, commit_interval_ms=0, compact_rows=1, background_compaction=False)
    compactor = store._compactor
    con = store._db.cursor()
    events: list[StoredEvent] = []
    try:
        for step in range(25):
            batch = [
                _event(1 + (n % 3 == 0), T0 + rng.randrange(4 * DAY), n)
                for n in range(len(events), len(events) + rng.randrange(1, 300))
            ]
            # Some rows share a millisecond: ingestion order must break the tie.
            batch += [
                _event(1, T0 + DAY + 5, n)
                for n in range(len(events) + len(batch), len(events) + len(batch) + 3)
            ]
            events += batch
            store.submit_events(batch).result()
            action = rng.choice(["none", "flush", "merge", "both"])
            if action in ("flush", "both"):
                compactor._flush(con, 1)
            if action in ("merge", "both"):
                compactor._merge(con, rng.choice([compaction._every_day, compaction._no_day]))
            mine = [e for e in events if e.project_id == 1]
            assert _ns(store, _full()) == _expected(mine), step
            start = T0 + rng.randrange(4 * DAY)
            end = start + rng.randrange(1, 2 * DAY)
            limit = rng.choice([None, 1, 77])
            plan = ExportPlan(1, [TimeSegment(start, end, 0)], limit=limit)
            want = _expected([e for e in mine if start <= e.time_ms < end])
            assert _ns(store, plan) == want[:limit] if limit else want, step
    finally:
        con.close()
        store.close()


def test_a_merge_rewrites_no_more_rows_than_fit_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of overlapping runs bigger than a merge may rewrite is merged smallest runs first, in
    bounded transactions, and still exports exactly."""
    monkeypatch.setattr(compaction, "SLICE_ROWS", 100)  # each flush: a 100-row run over the whole day
    monkeypatch.setattr(compaction, "SORT_BYTES_PER_ROW", 1 << 62)  # sorts of MIN_SORT_ROWS rows
    monkeypatch.setattr(compaction, "MIN_SORT_ROWS", 150)  # so a merge rewrites at most 150 rows
    store = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
    try:
        rng = random.Random(11)
        events = [_event(1, T0 + rng.randrange(DAY), n) for n in range(1000)]
        for i in range(0, 1000, 250):
            store.submit_events(events[i : i + 250]).result()
        store.compact()
        sizes = sorted(rows for (rows,) in store.query(f"SELECT rows FROM {schema.RUNS}"))
        assert sum(sizes) == 1000 and max(sizes) <= 150
        assert len(sizes) < 10  # merges did happen
        assert _ns(store, _full()) == _expected(events)
    finally:
        store.close()


def _small_sorts(monkeypatch: pytest.MonkeyPatch, sort_rows: int) -> None:
    """The compactor sorts `sort_rows` rows at a time: flushes, merges and consolidation windows
    move at most that many rows each."""
    monkeypatch.setattr(compaction, "SORT_BYTES_PER_ROW", 1 << 62)
    monkeypatch.setattr(compaction, "MIN_SORT_ROWS", sort_rows)


def _runs_by_day(store: DuckDBStore) -> dict[tuple[int, int], list[tuple[int, int, int]]]:
    """Each (project, day)'s recorded runs as (min_time, max_time, rows), in time order."""
    days: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for project, part, low, high, rows in store.query(
        f"SELECT project_id, part, min_time, max_time, rows FROM {schema.RUNS} ORDER BY ALL"
    ):
        days.setdefault((project, part), []).append((low, high, rows))
    return days


def _assert_runs_recorded_exactly(store: DuckDBStore) -> None:
    recorded = store.query(
        f"SELECT run_batch, project_id, part, min_time, max_time, rows FROM {schema.RUNS} ORDER BY ALL"
    )
    actual = store.query(
        f"SELECT run_batch, project_id, time_ms // {DAY}, min(time_ms), max(time_ms), count(*)"
        f" FROM {schema.SORTED} GROUP BY ALL ORDER BY ALL"
    )
    assert recorded == actual


def _assert_no_overlap(store: DuckDBStore) -> None:
    for day, runs in _runs_by_day(store).items():
        assert all(a[1] < b[0] for a, b in pairwise(runs)), day


def test_a_day_too_big_for_one_merge_ends_as_runs_that_do_not_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shuffled arrival over several days, each day bigger than a merge may rewrite: the idle
    compactor consolidates each day window by window into runs of at most one merge's rows that
    do not overlap, which an export reads in storage order."""
    _small_sorts(monkeypatch, 100)
    store = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
    try:
        rng = random.Random(7)
        events = [_event(1 + (n % 5 == 0), T0 + rng.randrange(3 * DAY), n) for n in range(3000)]
        # Some rows share a millisecond: ingestion order must break the tie.
        events += [_event(1, T0 + DAY + 5, n) for n in range(3000, 3010)]
        for i in range(0, len(events), 400):
            store.submit_events(events[i : i + 400]).result()
        store.compact()
        _assert_runs_recorded_exactly(store)
        _assert_no_overlap(store)
        days = _runs_by_day(store)
        assert len(days) == 6 and all(rows <= 100 for runs in days.values() for *_, rows in runs)
        assert len(days[1, T0 // DAY]) > 1  # ~800 rows: consolidated, not merged into one run
        mine = [e for e in events if e.project_id == 1]
        assert _ns(store, _full()) == _expected(mine)
        runs = [schema.Run(*row) for row in store.query(f"SELECT * FROM {schema.RUNS} WHERE project_id = 1")]
        pieces = export.plan_pieces(
            [TimeSegment(T0, T0 + 3 * DAY, 0)], sorted(runs, key=lambda r: r.min_time), []
        )
        assert all(piece.run_batch is not None for piece in pieces)  # no sorted stretch left
        # A late event overlaps one run of its day: that run alone is rewritten with it.
        before_late = _runs_by_day(store)
        late = _event(1, T0 + DAY + 5, 5000)
        store.submit_events([late]).result()
        store.compact()
        _assert_runs_recorded_exactly(store)
        _assert_no_overlap(store)
        changed = set(_runs_by_day(store)[1, T0 // DAY + 1]) ^ set(before_late[1, T0 // DAY + 1])
        assert 2 <= len(changed) <= 3  # one run out; the merge, or the two halves of a split, in
        assert _ns(store, _full()) == _expected([*mine, late])
        # Dedup is exact across the consolidated runs: a retry of everything adds nothing.
        before = store.query(f"SELECT count(*) FROM {schema.SORTED}")
        store.submit_events([*events, late]).result()
        store.compact()
        assert store.query(f"SELECT count(*) FROM {schema.SORTED}") == before == [(3011,)]
        assert _ns(store, _full()) == _expected([*mine, late])
        assert _ns(store, _full(2)) == _expected([e for e in events if e.project_id == 2])
    finally:
        store.close()


def test_a_day_of_more_than_max_runs_windows_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A day of 25 windows' worth of shuffled rows: consolidation ends after a bounded number of
    steps with runs that do not overlap (more than MAX_RUNS of them: no two fit one merge, so
    none is merged and split again); exports are exact after every step."""
    _small_sorts(monkeypatch, 100)
    store = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
    con = store._db.cursor()
    try:
        times = random.Random(5).sample(range(T0, T0 + DAY), 2500)
        events = [_event(1, t, n) for n, t in enumerate(times)]
        store.submit_events(events).result()
        while store._compactor._flush(con, 1):
            pass
        assert len(_runs_by_day(store)[1, T0 // DAY]) == 25  # flushes of 100 rows over the day
        steps = 0
        while store._compactor._merge(con, compaction._every_day):
            steps += 1
            assert steps < 200, "compaction does not end"
            assert _ns(store, _full()) == _expected(events), steps  # exact between steps too
        _assert_runs_recorded_exactly(store)
        _assert_no_overlap(store)
        runs = _runs_by_day(store)[1, T0 // DAY]
        assert len(runs) == 25 and max(rows for *_, rows in runs) <= 100
        assert _ns(store, _full()) == _expected(events)
    finally:
        con.close()
        store.close()


def test_dedup_holds_against_both_areas(store: DuckDBStore) -> None:
    events = [_event(1, T0 + n * 1000, n) for n in range(200)]
    store.submit_events(events[:100]).result()
    store.compact()  # the first 100 are in runs now
    store.submit_events(events[100:]).result()  # these stay recent
    store.submit_events(events[50:150]).result()  # a retry over both areas
    store.submit_events(events[:10] + events[:10]).result()
    assert _ns(store, _full()) == list(range(200))
    store.compact()
    assert _ns(store, _full()) == list(range(200))
    # Same key in another project, or another distinct_id: not a duplicate.
    other = events[0]._replace(project_id=2)
    moved = events[1]._replace(distinct_id="someone else")
    store.submit_events([other, moved]).result()
    assert _ns(store, _full(2)) == [0]
    assert sorted(_ns(store, _full())) == sorted([*range(200), 1])


def test_dedup_holds_for_a_retry_whose_times_are_days_apart(store: DuckDBStore) -> None:
    # Ten clusters of times over five days: more than HIT_RANGES, so the dedup check reads some
    # clusters in one range and splits others apart; a retry must find its copies in each.
    starts = [T0 + cluster * DAY // 2 + cluster**3 * 60_000 for cluster in range(10)]
    times = [start + k * 1000 for start in starts for k in range(5)]
    events = [_event(1, time_ms, n) for n, time_ms in enumerate(times)]
    store.submit_events(events[::2]).result()
    store.compact()
    store.submit_events(events[1::4]).result()  # recent
    store.submit_events(events).result()  # the retry, in both areas
    assert _ns(store, _full()) == list(range(50))
    store.compact()
    assert _ns(store, _full()) == list(range(50))


def test_an_empty_batch_stores_nothing(store: DuckDBStore) -> None:
    store.submit_events([]).result()
    store.submit_events([_event(1, T0, 0)]).result()
    assert _ns(store, _full()) == [0]


def test_a_small_project_reads_only_its_own_runs(store: DuckDBStore) -> None:
    big = [_event(1, T0 + (n * 7919) % (10 * DAY), n) for n in range(5000)]
    small = [_event(2, T0 + (n * 104729) % (10 * DAY), n) for n in range(50)]
    store.submit_events(big + small).result()
    store.compact()
    assert _ns(store, _full(2)) == _expected(small)
    runs = store.query(f"SELECT DISTINCT project_id FROM {schema.RUNS} WHERE project_id = 2")
    assert runs == [(2,)]


def test_filters_and_time_in_ms_on_runs(store: DuckDBStore) -> None:
    events = [_event(1, T0 + n * 997, n, event=("a" if n % 2 else "b")) for n in range(100)]
    store.submit_events(events).result()
    store.compact()
    assert _ns(store, _full(events=("a",))) == list(range(1, 100, 2))
    body = b"".join(bytes(c) for c in store.export_chunks(_full(time_in_ms=True, limit=3)))
    assert [orjson.loads(line)["properties"]["time"] for line in body.splitlines()] == [
        T0,
        T0 + 997,
        T0 + 2 * 997,
    ]


def test_delete_events_removes_from_both_areas(store: DuckDBStore) -> None:
    events = [_event(1, T0 + n * 1000, n) for n in range(70)]
    store.submit_events(events[:35]).result()
    store.compact()
    store.submit_events(events[35:]).result()
    deleted = store.delete_users(1, ["u0"])
    assert deleted.events == 10
    assert _ns(store, _full()) == [n for n in range(70) if n % 7]
    assert store.drop_events_before(1, T0 + 40_000) == 40 - 6
    assert _ns(store, _full()) == [n for n in range(40, 70) if n % 7]


def test_a_store_from_before_the_layout_is_migrated(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "events.duckdb"))
    con.execute(
        "CREATE TABLE events (project_id INTEGER NOT NULL, time_ms BIGINT NOT NULL, seq BIGINT NOT NULL,"
        " event VARCHAR NOT NULL, distinct_id VARCHAR, insert_id VARCHAR NOT NULL,"
        " time_pos INTEGER NOT NULL, line VARCHAR NOT NULL)"
    )
    events = [_event(1, T0 + (n * 37) % 1000 * 1000, n) for n in range(100)]
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.project_id, e.time_ms, n + 1, e.event, e.distinct_id, e.insert_id, e.time_pos, e.line)
            for n, e in enumerate(events)
        ],
    )
    con.close()
    store = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
    try:
        assert _ns(store, _full()) == _expected(events)
        store.submit_events([_event(1, T0, 100)]).result()
        store.compact()
        assert _counts(store)[:2] == (0, 101)
        assert _ns(store, _full()) == _expected([*events, _event(1, T0, 100)])
    finally:
        store.close()


def test_plan_pieces_reads_lone_runs_in_order_and_sorts_the_rest() -> None:
    runs = [
        schema.Run(1, 1, 0, 0, 99, 10),
        schema.Run(2, 1, 0, 50, 149, 10),  # overlaps run 1 from 50 to 99
        schema.Run(3, 1, 0, 300, 399, 10),
    ]
    bucket = 5  # recent rows in [5 * B, 6 * B)
    b = export.RECENT_BUCKET_MS
    pieces = export.plan_pieces([TimeSegment(0, 10 * b, 0)], runs, [bucket])
    assert [(p.start_ms, p.end_ms, p.run_batch) for p in pieces] == [
        (0, 50, 1),
        (50, 100, None),
        (100, 150, 2),
        (300, 400, 3),
        (5 * b, 6 * b, None),
    ]
    # A segment boundary cuts a run into two pieces with their own offsets.
    cut = export.plan_pieces([TimeSegment(0, 320, 0), TimeSegment(320, 1000, 3600)], runs[2:], [])
    assert [(p.start_ms, p.end_ms, p.offset_ms, p.run_batch) for p in cut] == [
        (300, 320, 0, 3),
        (320, 400, 3600, 3),
    ]


def test_a_checkpoint_reclaims_the_rows_compaction_moved_while_the_store_is_open(store: DuckDBStore) -> None:
    """No connection of the store keeps a transaction open between statements: one did (a result
    read with fetchone), and no checkpoint could then reclaim a deleted row while the store ran."""
    rng = random.Random(5)
    events = [_event(1, T0 + rng.randrange(3 * DAY), n) for n in range(3000)]
    for i in range(0, 3000, 100):
        store.submit_events(events[i : i + 100]).result()
        store.compact()
    store.query("CHECKPOINT")
    [(slots,)] = store.query(
        f"SELECT coalesce(sum(count), 0) FROM pragma_storage_info('{schema.RECENT}') WHERE column_id = 0"
    )
    assert _counts(store)[:2] == (0, 3000)
    assert slots == 0  # every row flushed out of the recent area, and its space reclaimed
    assert _ns(store, _full()) == _expected(events)


def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_background_compactor_empties_the_recent_area(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path, commit_interval_ms=0, compact_rows=100)
    try:
        events = [_event(1, T0 + (n * 7919) % DAY, n) for n in range(1000)]
        for i in range(0, 1000, 100):
            store.submit_events(events[i : i + 100]).result()
        _until(lambda: _counts(store)[0] == 0, 10)
        assert _counts(store)[:2] == (0, 1000)
        assert _ns(store, _full()) == _expected(events)
    finally:
        store.close()


def _runs_of_day(store: DuckDBStore, part: int) -> list[schema.Run]:
    rows = store.query(
        f"SELECT run_batch, project_id, part, min_time, max_time, rows FROM {schema.RUNS}"
        " WHERE part = ? ORDER BY min_time",
        [part],
    )
    return [schema.Run(*map(int, row)) for row in rows]


def test_a_quiet_day_is_consolidated_while_ingest_goes_on_in_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steady traffic into one day never lets the compactor pause; a backfilled day that no flush
    wrote into for SETTLE_S is consolidated anyway (it used to wait for a pause in all ingest)."""
    monkeypatch.setattr(compaction, "FLUSH_AGE_S", 0.5)  # the trickle below comes ten times as often
    monkeypatch.setattr(compaction, "SETTLE_S", 3600.0)
    store = DuckDBStore(tmp_path, commit_interval_ms=0, compact_rows=1_000_000)  # timed flushes only
    trickled: list[StoredEvent] = []
    stop = threading.Event()

    def trickle() -> None:
        for n in itertools.count(10_000):
            trickled.append(_event(1, T0 + 5 * DAY + n, n))
            store.submit_events(trickled[-1:]).result()
            if stop.wait(0.05):
                return

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        rng = random.Random(11)
        backfill = [_event(1, T0 + rng.randrange(DAY), n) for n in range(1000)]
        in_recent = f"SELECT count(*) FROM {schema.RECENT} WHERE time_ms < ?"
        for i in range(0, 1000, 200):  # five flushes, each over the whole day
            store.submit_events(backfill[i : i + 200]).result()
            assert _until(lambda: store.query(in_recent, [T0 + DAY]) == [(0,)], 30)
        assert len(compaction.overlap_groups(_runs_of_day(store, T0 // DAY))[0]) > 1
        monkeypatch.setattr(compaction, "SETTLE_S", 0.5)
        assert _until(lambda: len(_runs_of_day(store, T0 // DAY)) == 1, 30)
    finally:
        stop.set()
        thread.join()
    assert _ns(store, _full()) == _expected(backfill + trickled)
    store.close()


def test_a_busy_day_merges_its_late_runs_without_rewriting_its_big_one(store: DuckDBStore) -> None:
    """Late events add a small run over the whole day at each flush. While the day is busy, the
    MERGE_FANIN-th merges the small runs only (similar sizes); the day's big run is rewritten once,
    when the day is quiet. Merging it every time rewrote 18 rows per event (docs/performance.md)."""
    rng = random.Random(5)
    con = store._db.cursor()
    try:
        events = [_event(1, T0 + rng.randrange(DAY), n) for n in range(1000)]
        for first in range(1000, 1000 + 5 * (compaction.MERGE_FANIN - 1), 5):
            events += [_event(1, T0 + rng.randrange(DAY), n) for n in range(first, first + 5)]
        store.submit_events(events[:1000]).result()
        store._compactor._flush(con, 1)
        [big] = _runs_of_day(store, T0 // DAY)
        for first in range(1000, len(events), 5):  # one flush per handful of late events
            store.submit_events(events[first : first + 5]).result()
            store._compactor._flush(con, 1)
        assert len(_runs_of_day(store, T0 // DAY)) == compaction.MERGE_FANIN

        assert store._compactor._merge(con, compaction._no_day)  # the day is busy
        runs = _runs_of_day(store, T0 // DAY)
        assert big in runs and sorted(run.rows for run in runs) == [len(events) - 1000, 1000]
        assert not store._compactor._merge(con, compaction._no_day)  # nothing else due while busy
        assert _ns(store, _full()) == _expected(events)

        while store._compactor._merge(con, compaction._every_day):  # the day is quiet
            pass
        assert [run.rows for run in _runs_of_day(store, T0 // DAY)] == [len(events)]
        assert _ns(store, _full()) == _expected(events)
    finally:
        con.close()


def test_one_tiny_run_does_not_keep_a_busy_day_from_merging_the_others() -> None:
    """Runs are taken by size, each next one at most TIER_GROWTH times those before it. A tiny run
    that no other is close to is left, and the next similar ones are merged: if the tiny one
    stopped the choice, a busy day's runs would pile up."""
    sizes = [1, 30, 31, 33, 30_000]
    day = [schema.Run(batch, 1, 0, batch, DAY - 1, rows) for batch, rows in enumerate(sizes, 1)]
    due = compaction._due_in_day(day, quiet=False, max_rows=50_000)
    assert due is not None and sorted(run.rows for run in due[1]) == [30, 31, 33]
    due = compaction._due_in_day(day, quiet=True, max_rows=50_000)  # quiet: every run that fits
    assert due is not None and sorted(run.rows for run in due[1]) == sizes


@pytest.mark.parametrize("line_compression", ["uncompressed", "zstd"])
def test_either_line_compression_exports_the_same_lines(tmp_path: Path, line_compression: str) -> None:
    events = [_event(1, T0 + n * 60_000, n) for n in range(3000)]
    s = DuckDBStore(
        tmp_path, commit_interval_ms=0, line_compression=line_compression, background_compaction=False
    )
    try:
        s.submit_events(events).result()
        s.compact()
        assert _ns(s, _full()) == _expected(events)
    finally:
        s.close()


def test_zstd_lines_take_less_disk_than_uncompressed(tmp_path: Path) -> None:
    sizes = {}
    for choice in ("uncompressed", "zstd"):
        s = DuckDBStore(
            tmp_path / choice, commit_interval_ms=0, line_compression=choice, background_compaction=False
        )
        try:
            s.submit_events([_event(1, T0 + n * 1000, n) for n in range(50_000)]).result()
            s.compact()
        finally:
            s.close()
        sizes[choice] = (tmp_path / choice / "events.duckdb").stat().st_size
    assert sizes["zstd"] < sizes["uncompressed"] / 2


def test_a_day_of_more_than_max_runs_small_runs_merges_adjacent_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events trickling in in time order leave a small run per flush; past MAX_RUNS in a day,
    adjacent ones are merged, so the day keeps MAX_RUNS runs that do not overlap."""
    _small_sorts(monkeypatch, 100)
    store = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
    try:
        events = [_event(1, T0 + n * 1000, n) for n in range(400)]
        for i in range(0, 400, 20):
            store.submit_events(events[i : i + 20]).result()
            store.compact()
        _assert_runs_recorded_exactly(store)
        _assert_no_overlap(store)
        runs = _runs_by_day(store)[1, T0 // DAY]
        assert len(runs) == compaction.MAX_RUNS and sum(rows for *_, rows in runs) == 400
        assert _ns(store, _full()) == _expected(events)
    finally:
        store.close()


def test_the_compactor_folds_a_large_wal_so_that_ingest_commits_do_not(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past CHECKPOINT_WAL_BYTES the compactor checkpoints after its step (the engine's own
    threshold, far above here, would checkpoint inside whichever commit crossed it)."""
    monkeypatch.setattr(compaction, "CHECKPOINT_WAL_BYTES", 256 * 1024)
    wal = store.path.with_name(store.path.name + ".wal")
    events = [_event(1, T0 + n * 1000, n) for n in range(3000)]
    store.submit_events(events).result()
    assert wal.stat().st_size > 256 * 1024  # committed, not yet checkpointed
    store.compact()
    assert not wal.exists() or wal.stat().st_size < 256 * 1024
    assert _ns(store, _full()) == _expected(events)
