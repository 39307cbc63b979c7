from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import LiveServer
from tests.stores import STORES, store_setting


@pytest.fixture(scope="session", params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each store the API-level suite runs on (tests/stores.py)."""
    return str(request.param)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, store_kind: str) -> Iterator[LiveServer]:
    """One live server per store for the session; tests create their own projects so data never mixes."""
    live = LiveServer(tmp_path_factory.mktemp("rawevents-data"), store=store_setting(store_kind)).start()
    yield live
    live.stop()


@pytest.fixture
def fresh_server(tmp_path: Path, store_kind: str) -> Iterator[LiveServer]:
    """A server of its own, for tests that kill or restart it."""
    live = LiveServer(tmp_path / "data", store=store_setting(store_kind)).start()
    yield live
    live.stop()
