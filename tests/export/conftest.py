from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "install httpx2": the in-process client works as it is
    from starlette.testclient import TestClient

from rawevents.http.app import create_app
from rawevents.service import Services
from rawevents.settings import Config, load_config
from tests.stores import store_setting


@pytest.fixture
def config(tmp_path: Path, store_kind: str) -> Config:
    return load_config({}, data_dir=str(tmp_path / "data"), store=store_setting(store_kind))


@pytest.fixture
def services(config: Config) -> Iterator[Services]:
    opened = Services.open(config)
    yield opened
    opened.close()


@pytest.fixture
def client(config: Config, services: Services) -> Iterator[TestClient]:
    """The app in-process over injected services (fast path for big or precise data sets)."""
    with TestClient(create_app(config, services)) as test_client:
        yield test_client
