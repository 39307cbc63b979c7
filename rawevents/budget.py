"""What one running export may hold, derived from the settings: read by the HTTP layer (its
output buffer) and by the store (its engine windows), so it sits below both."""

from __future__ import annotations

from dataclasses import dataclass

from rawevents.settings import Config

MIB = 1024 * 1024
BLOCK_BYTES = 512 * 1024  # uncompressed bytes per compression job (rawevents.export.stream)
MIN_BUFFER_BLOCKS = 2


@dataclass(frozen=True, slots=True)
class ExportBudget:
    """What one running export may hold: its engine window result and its buffered output.

    A running export holds at most one window being sent, the next one being read, and
    `buffer_blocks` blocks between the scan and the client; the share of the budget is split so
    that these fit: a quarter per window, an eighth for the buffer, the rest for the compressed
    queue and the transport's write buffer."""

    window_bytes: int
    buffer_blocks: int

    @classmethod
    def from_config(cls, config: Config) -> ExportBudget:
        share = config.export_memory_budget_mb * MIB // max(1, config.export_max_running)
        return cls(
            window_bytes=max(MIB, share // 4),
            buffer_blocks=max(MIN_BUFFER_BLOCKS, share // 8 // BLOCK_BYTES),
        )
