from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "install httpx2": the in-process client works as it is
    from starlette.testclient import TestClient

from rawevents.http.app import create_app
from rawevents.service import Services
from rawevents.settings import Config, load_config
from tests.stores import store_setting


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, store_kind: str) -> Config:
    """One store per module and store kind: each test makes its own projects, so data never mixes.
    No ingest worker processes: these tests write through the store, not through /import."""
    data_dir = tmp_path_factory.mktemp("export") / "data"
    return load_config({}, data_dir=str(data_dir), store=store_setting(store_kind), ingest_processes=0)


@pytest.fixture(scope="module")
def services(config: Config) -> Iterator[Services]:
    opened = Services.open(config)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def client(config: Config, services: Services) -> Iterator[TestClient]:
    """The app in-process over injected services (fast path for big or precise data sets)."""
    with TestClient(create_app(config, services)) as test_client:
        yield test_client
