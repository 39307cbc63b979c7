"""Arrow string columns as raw UTF-8 bytes: what exports hand to the compressor without a copy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def plain_strings(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous string or large_string array (string views are cast)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_string_view(column.type):
        column = column.cast(pa.large_string())
    return column


def _offsets(column: pa.Array) -> memoryview:
    raw = memoryview(column.buffers()[1])
    return raw.cast("q") if pa.types.is_large_string(column.type) else raw.cast("i")


def string_column_bytes(column: pa.Array | pa.ChunkedArray) -> memoryview:
    """The UTF-8 bytes of every value of a string column, back to back: zero-copy from Arrow."""
    column = plain_strings(column)
    offsets = _offsets(column)
    begin, end = offsets[column.offset], offsets[column.offset + len(column)]
    return memoryview(column.buffers()[2])[begin:end]


def string_offsets(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Where each value starts inside `string_column_bytes(column)`, as int64."""
    column = plain_strings(column)
    offsets = np.frombuffer(_offsets(column), _offsets(column).format)[
        column.offset : column.offset + len(column)
    ]
    return offsets.astype(np.int64) - (offsets[0] if len(offsets) else 0)
