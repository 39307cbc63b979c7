"""Fixtures shared by the DuckDB layout tests."""

from __future__ import annotations

import pytest

from rawevents.storage.duckdb import export as duckdb_export


@pytest.fixture(params=["query-per-run", "one-window"])
def export_reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways an export reads the layout: each run in storage order (a big export), and the
    whole range as one sorted window (a small one)."""
    small_rows = 0 if request.param == "query-per-run" else 10**9
    monkeypatch.setattr(duckdb_export, "SMALL_EXPORT_ROWS", small_rows)
