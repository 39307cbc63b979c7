from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import LiveServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server for the session; tests create their own projects so data never mixes."""
    live = LiveServer(tmp_path_factory.mktemp("rawevents-data")).start()
    yield live
    live.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server of its own, for tests that kill or restart it."""
    live = LiveServer(tmp_path / "data").start()
    yield live
    live.stop()
