"""`ingest.hit_ranges`: the time ranges the dedup check reads stored rows in cover every
time of a batch, in at most HIT_RANGES ranges split at its widest gaps (the dedup itself through
the store: tests/storage/test_layout.py)."""

from __future__ import annotations

import random
from itertools import pairwise

import pyarrow as pa
import pytest

from rawevents.storage.duckdb import ingest

DAY = 86_400_000
T0 = 1_790_812_800_000  # a UTC midnight


@pytest.mark.parametrize("seed", range(20))
def test_hit_ranges_cover_every_time_in_at_most_hit_ranges(seed: int) -> None:
    rng = random.Random(seed)
    times = [T0 + rng.randrange(5_000) for _ in range(rng.randrange(1, 200))]
    times += [T0 - rng.randrange(3 * DAY) for _ in range(rng.randrange(10))]
    ranges = ingest.hit_ranges(pa.chunked_array([times], pa.int64()))
    assert 1 <= len(ranges) <= ingest.HIT_RANGES
    assert all(low <= high for low, high in ranges)
    assert all(a_high < b_low for (_, a_high), (b_low, _) in pairwise(ranges))
    assert all(any(low <= t <= high for low, high in ranges) for t in times)
    assert (ranges[0][0], ranges[-1][1]) == (min(times), max(times))


def test_hit_ranges_split_at_the_widest_gaps_only() -> None:
    minute = ingest.MIN_SPLIT_GAP_MS
    close = [T0, T0 + minute - 1, T0 + 2 * minute - 2]
    assert ingest.hit_ranges(pa.chunked_array([close])) == [(T0, T0 + 2 * minute - 2)]
    # Five clusters, gaps of about 2, 9, 3 and 7 minutes: the HIT_RANGES - 1 = 3 widest split.
    starts = [T0, T0 + 2 * minute, T0 + 11 * minute, T0 + 14 * minute, T0 + 21 * minute]
    times = [start + k for start in starts for k in (0, 5)]
    assert ingest.hit_ranges(pa.chunked_array([times[::-1]])) == [
        (T0, T0 + 2 * minute + 5),
        (T0 + 11 * minute, T0 + 11 * minute + 5),
        (T0 + 14 * minute, T0 + 14 * minute + 5),
        (T0 + 21 * minute, T0 + 21 * minute + 5),
    ]
