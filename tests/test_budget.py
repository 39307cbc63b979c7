"""The per-export memory budget derived from the settings."""

from __future__ import annotations

from rawevents.budget import ExportBudget
from rawevents.settings import Config


def test_budget_splits_evenly_between_running_exports() -> None:
    small = ExportBudget.from_config(Config(export_max_running=8, export_memory_budget_mb=256))
    assert small.window_bytes == 8 * 1024 * 1024
    assert small.buffer_blocks == 8
    many = ExportBudget.from_config(Config(export_max_running=64, export_memory_budget_mb=256))
    assert many.window_bytes == 1024 * 1024
    assert many.buffer_blocks == 2
