"""The DuckDB store's writer when the engine's memory is taken: a commit that runs out of it is
rolled back and tried again (a compaction step holds that memory only briefly), and one that
keeps failing answers a StorageError with nothing of it stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from rawevents.errors import StorageError
from rawevents.eventline import assemble_line
from rawevents.storage.base import ExportPlan, StoredEvent
from rawevents.storage.duckdb import ingest
from rawevents.storage.duckdb import store as duckdb_store
from rawevents.storage.duckdb.store import DuckDBStore
from rawevents.timeutil import TimeSegment

T0 = 1_790_812_800_000  # a UTC midnight


def _event(n: int) -> StoredEvent:
    props = {"distinct_id": "u", "$insert_id": f"i{n}", "n": n}
    pos, line = assemble_line("e", props, T0 // 1000 + n)
    return StoredEvent(1, T0 + n * 1000, "e", "u", f"i{n}", pos, line)


def _exported(store: DuckDBStore) -> list[int]:
    plan = ExportPlan(1, [TimeSegment(T0, T0 + 86_400_000, 0)])
    body = b"".join(bytes(chunk) for chunk in store.export_chunks(plan))
    return [orjson.loads(line)["properties"]["n"] for line in body.splitlines()]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DuckDBStore]:
    monkeypatch.setattr(duckdb_store, "OUT_OF_MEMORY_WAITS_S", (0.0, 0.0))
    s = DuckDBStore(tmp_path, commit_interval_ms=0, background_compaction=False)
    yield s
    s.close()


class _OutOfMemoryAtFirstStatement:
    """A connection whose first `execute` (the dedup lookup) runs out of engine memory the way
    DuckDB does: the statement fails and the transaction is aborted."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def execute(self, *args: Any) -> duckdb.DuckDBPyConnection:
        with pytest.raises(duckdb.CatalogException):
            self._con.execute("SELECT * FROM no_such_table")
        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to pin block of size 256.0 KiB")


def _out_of_memory_first(times: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The engine runs out of memory in the first `times` inserts; the inserts tried, counted."""
    real: Callable[..., int] = ingest.insert_deduped
    calls: list[int] = []

    def insert(con: duckdb.DuckDBPyConnection, *args: Any) -> int:
        calls.append(1)
        return real(_OutOfMemoryAtFirstStatement(con) if len(calls) <= times else con, *args)

    monkeypatch.setattr(ingest, "insert_deduped", insert)
    return calls


def test_a_commit_out_of_engine_memory_is_retried_and_stored_once(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _out_of_memory_first(2, monkeypatch)
    before = store.ingest_position()
    store.submit_events([_event(n) for n in range(100)]).result(timeout=30)
    assert len(calls) == 3
    assert _exported(store) == list(range(100))
    assert store.ingest_position() == before + 100  # the failed tries took no sequence numbers


def test_a_commit_that_stays_out_of_memory_fails_and_stores_nothing(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.submit_events([_event(0)]).result(timeout=30)
    calls = _out_of_memory_first(10**6, monkeypatch)
    with pytest.raises(StorageError, match="could not write this batch; retry"):
        store.submit_events([_event(n) for n in range(1, 100)]).result(timeout=30)
    assert len(calls) == len(duckdb_store.OUT_OF_MEMORY_WAITS_S) + 1
    assert _exported(store) == [0]
