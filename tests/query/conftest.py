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


@pytest.fixture(scope="module", params=["duckdb", "chdb"])
def config(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Config:
    """One store of each embedded kind per module (the same answers are expected from both)."""
    data_dir = tmp_path_factory.mktemp("query") / "data"
    return load_config({}, data_dir=str(data_dir), store=request.param, ingest_processes=0)  # no /import


@pytest.fixture(scope="module")
def services(config: Config) -> Iterator[Services]:
    opened = Services.open(config)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def client(config: Config, services: Services) -> Iterator[TestClient]:
    """The app in-process over injected services; one data set per module."""
    with TestClient(create_app(config, services)) as test_client:
        yield test_client
