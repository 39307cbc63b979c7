from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import live_server
from tests.live_server import LiveServer
from tests.stores import STORES, store_setting

# Hypothesis example counts, in one place: `ci` (CI=true, and the full `bash scripts/check`) tries
# 200 examples a property, `dev` (plain pytest, `scripts/check --quick`) 25. Pick one with
# HYPOTHESIS_PROFILE=ci|dev or `--hypothesis-profile ci|dev`. A test that truly needs more or
# fewer than its neighbours scales the profile's count (`settings.default.max_examples * 2`),
# never a fixed number.
settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)

# Fixtures that start a server process (a `rawevents serve` subprocess): every test that uses one,
# directly or through another fixture, is marked `server`. `scripts/check --quick` deselects
# those; a test that starts a server itself carries @pytest.mark.server (tests/live_server.py
# refuses to start one for an unmarked test).
SERVER_FIXTURES = frozenset({"server", "fresh_server", "live", "big", "limited", "loaded", "tls"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    live_server.SERVERS_ALLOWED = item.get_closest_marker("server") is not None
    try:
        return (yield)
    finally:
        live_server.SERVERS_ALLOWED = True


@pytest.fixture(autouse=True)
def _umask_kept() -> Iterator[None]:
    """`rawevents.cli.main` sets a private umask for its whole process: a test calling it in
    process must not leave that to the tests after it (the image test installs files that
    another user must run, and failed in a full run after the identity migrate tests)."""
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)


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
