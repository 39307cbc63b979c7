"""The stores the API-level suite runs on, and how a test names one.

`duckdb` and `chdb` always run; `clickhouse` runs against a real server when
RAWEVENTS_TEST_CLICKHOUSE_URL is set (`clickhouse://user:password@host:8123/db`), each test
store in a database of its own, and is skipped otherwise (the only skip in the suite).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

STORES = ("duckdb", "chdb", "clickhouse")
CLICKHOUSE_URL_ENV = "RAWEVENTS_TEST_CLICKHOUSE_URL"


def store_setting(kind: str) -> str:
    """The `store` setting for a fresh store of `kind` (a new database on a real server)."""
    if kind != "clickhouse":
        return kind
    url = os.environ.get(CLICKHOUSE_URL_ENV)
    if not url:
        pytest.skip(f"{CLICKHOUSE_URL_ENV} is not set")
    from rawevents.storage.clickhouse.conn import HttpEngine, ServerAddress

    database = f"rawevents_test_{uuid.uuid4().hex[:12]}"
    engine = HttpEngine(ServerAddress.parse(url))
    try:
        engine.connect().command(f"CREATE DATABASE {database}")
    finally:
        engine.close()
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))
