"""schemathesis against docs/openapi.yaml on a live server: generated requests for every
operation (valid ones, and with negative data) never get a 5xx (a 503 with Retry-After is the
documented "at capacity" answer), and every answer's status is one the description lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, status_code_conformance

from rawevents.projects import Project
from tests.live_server import LiveServer
from tests.reliability.harness import CI

pytestmark = pytest.mark.reliability

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(OPENAPI)


@pytest.fixture(scope="module")
def project(server: LiveServer) -> Project:
    return server.create_project("openapi")


@schema.parametrize()
@settings(
    max_examples=CI.fuzz_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
def test_every_operation(case: Any, server: LiveServer, project: Project) -> None:
    case.call_and_validate(
        base_url=server.base_url,
        headers={"Authorization": "Basic " + _b64(project.api_secret + ":")},
        checks=[not_a_server_error, status_code_conformance],
        timeout=30,
    )


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()
