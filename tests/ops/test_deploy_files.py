"""The deployment files only set settings the server reads, and keep their promises (port on
loopback, data in a volume, ClickHouse wired through RAWEVENTS_STORE)."""

from __future__ import annotations

import re
from pathlib import Path

from rawevents.settings import SETTINGS

REPO = Path(__file__).resolve().parents[2]
# Selected by the ClickHouse store's branch; the compose file wires it already.
PENDING = {"RAWEVENTS_STORE"}


def test_deployment_files_name_only_real_settings() -> None:
    known = {setting.env for setting in SETTINGS} | PENDING
    for name in ("Dockerfile", "compose.yaml", "compose.clickhouse.yaml"):
        used = set(re.findall(r"RAWEVENTS_[A-Z_]+", (REPO / name).read_text()))
        assert used and used <= known, (name, used - known)


def test_compose_publishes_on_loopback_and_keeps_data_in_volumes() -> None:
    alone = (REPO / "compose.yaml").read_text()
    assert '"127.0.0.1:8000:8000"' in alone and "rawevents-data:/data" in alone
    clickhouse = (REPO / "compose.clickhouse.yaml").read_text()
    assert "image: clickhouse/clickhouse-server:" in clickhouse
    assert "RAWEVENTS_STORE: clickhouse://rawevents:${CLICKHOUSE_PASSWORD" in clickhouse
    assert "@clickhouse:8123/default" in clickhouse and "condition: service_healthy" in clickhouse
    assert "ports:" not in clickhouse  # ClickHouse stays on the compose network
