"""Giving freed memory back to the system after a burst of exports.

glibc keeps freed blocks in its arenas for reuse; after many concurrent exports the server's RSS
stays near its peak although nothing holds that memory. `malloc_trim(0)` returns what is free.
It is called when the last running export ends (off the event loop: it can take milliseconds).
A no-op where libc has no malloc_trim.
"""

from __future__ import annotations

import contextlib
import ctypes


def trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
