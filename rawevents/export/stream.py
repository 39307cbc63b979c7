"""The export body as a stream: a reader thread drives the storage scan, workers compress, the
event loop only forwards finished bytes.

    store.export_chunks(plan) ──reader thread──▶ blocks ──compression pool──▶ bounded queue ──▶ client

- Memory stays flat: at most `capacity` blocks are in flight; when the client reads slowly the
  reader thread blocks, which pauses the DuckDB scan (backpressure).
- gzip is ONE gzip member made of independently compressed raw-deflate blocks (pigz style): each
  block is compressed on its own in a worker thread (ISA-L releases the GIL, so blocks compress in
  parallel), ends with a sync flush (byte-aligned, not final), and the CRC-32s are combined in
  order. One member, not concatenated members, because some HTTP clients (httpx, older curl)
  stop decoding at the end of the first member.
- Ingestion comes first: the reader thread (the engine's scan runs on it) and the compression
  threads run at a lower CPU priority (`nice`, per thread on Linux). On two cores, 20 exports
  running back to back cut the ingest rate by a third to a half: the event loop, which parses
  every ingest request, was one runnable thread among a dozen export threads and got a fraction
  of a core (measured per thread), while each group commit waited for the GIL and the CPU behind
  them. With the
  export threads niced the scheduler runs the loop and the writer first and gives exports what
  is left, which on an idle machine is every core (docs/reliability.md has the figures).
- Closing the stream (client gone) stops the reader at its next step and closes the storage
  iterator, which closes the DuckDB cursor.
- An error is delivered to the consumer in order: before the first byte the HTTP layer turns it
  into a JSON error; after it, the consumer raises and the connection is dropped (a truncated
  chunked/gzip body that every client detects), never an in-band "terminated early" line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Literal, NamedTuple

from isal import isal_zlib

from rawevents.budget import BLOCK_BYTES

log = logging.getLogger(__name__)

CAPACITY = 8  # blocks in flight between the reader thread and the client
MAX_PIECE_BYTES = 1024 * 1024  # ready output is merged into sends of up to this size
COALESCE_SECONDS = 0.05  # small chunks are merged, but never held back longer than this
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, OS unknown
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # a final fixed-Huffman block holding only end-of-block

Chunk = bytes | memoryview


class CompressedBlock(NamedTuple):
    deflate: bytes
    crc: int
    size: int


def compress_block(data: Chunk) -> CompressedBlock:
    """Raw deflate of one block at ISA-L level 1, ending byte-aligned and not final."""
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush(isal_zlib.Z_SYNC_FLUSH)
    return CompressedBlock(body, isal_zlib.crc32(data), len(memoryview(data)))


class GzipFramer:
    """Frames in-order compressed blocks as one gzip member."""

    def __init__(self) -> None:
        self.crc = 0
        self.size = 0

    def add(self, block: CompressedBlock) -> bytes:
        self.crc = isal_zlib.crc32_combine(self.crc, block.crc, block.size)
        self.size += block.size
        return block.deflate

    def trailer(self) -> bytes:
        return _FINAL_EMPTY_BLOCK + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF)


def lower_priority(nice: int) -> None:
    """Run the calling thread at the process's nice value + `nice`. Relative to the main thread
    (the event loop), not to the caller's own value: threads inherit their creator's, and the
    compression threads are started by niced reader threads. Linux keeps a nice value per
    thread; elsewhere PRIO_PROCESS with a thread id would name a process, so this does nothing.
    Raising it needs no privilege; a thread never gets it back, so only export threads call it."""
    if nice <= 0 or sys.platform != "linux":
        return
    thread = threading.get_native_id()
    target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + nice)
    try:
        if os.getpriority(os.PRIO_PROCESS, thread) < target:
            os.setpriority(os.PRIO_PROCESS, thread, target)
    except OSError as exc:  # a sandbox without setpriority: exports still work, unprioritised
        log.warning("could not lower the export thread's priority: %s", exc)


def compression_pool(nice: int = 0) -> ThreadPoolExecutor:
    """The compression threads the server's exports share, one per core: compression is
    CPU-bound and GIL-free. They run at `nice` (rawevents.service owns the pool)."""
    return ThreadPoolExecutor(
        max_workers=os.cpu_count() or 2,
        thread_name_prefix="rawevents-gzip",
        initializer=lower_priority,
        initargs=(nice,),
    )


_Kind = Literal["data", "block", "end", "error", "closed"]


class _Item(NamedTuple):
    kind: _Kind
    payload: object


class _Stopped(Exception):
    pass


class ExportStream:
    """The encoded body of one export, produced off the event loop.

    `open_chunks` is called in the reader thread (so even opening the scan never blocks the loop)
    and must return an iterator whose `close()` releases its resources. A gzip stream compresses
    on `pool` (`compression_pool`). `nice` lowers the CPU priority of the reader thread (see the
    module docstring).
    """

    def __init__(
        self,
        open_chunks: Callable[[], Iterator[Chunk]],
        *,
        gzip: bool,
        loop: asyncio.AbstractEventLoop | None = None,
        pool: Executor | None = None,
        block_bytes: int = BLOCK_BYTES,
        capacity: int = CAPACITY,
        nice: int = 0,
    ) -> None:
        self.gzip = gzip
        self._open = open_chunks
        self._nice = nice
        self._loop = loop or asyncio.get_running_loop()
        if gzip and pool is None:
            raise ValueError("a gzip stream needs a compression pool")
        self._pool = pool
        self._block_bytes = block_bytes
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._slots = threading.Semaphore(capacity)
        self._stop = threading.Event()
        self._framer = GzipFramer()
        self._peeked: _Item | None = None
        self._started = False
        self._finished = False
        self.bytes_in = 0  # uncompressed bytes read from the store
        self.bytes_out = 0  # bytes handed to the client
        self._thread = threading.Thread(target=self._run, name="rawevents-export", daemon=True)

    # -- consumer side (event loop) ---------------------------------------------------------

    def start(self) -> ExportStream:
        self._thread.start()
        return self

    async def ready(self, timeout: float) -> None:
        """Wait until the scan has produced something, finished, or `timeout` passed. Raises the
        scan's error if that comes first, so the caller can still answer with a JSON error."""
        if self._peeked is not None:
            return
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return
        if item.kind == "error":
            self._finished = True
            assert isinstance(item.payload, BaseException)
            raise item.payload
        self._peeked = item

    async def next_piece(self) -> bytes | None:
        """The next bytes of the body, None at its end. Raises if the scan failed."""
        if self._finished:
            return None
        # Parts are joined once at the end: `+=` would copy the growing piece for every block.
        parts: list[bytes] = []
        size = 0
        if not self._started:
            self._started = True
            if self.gzip:
                parts.append(GZIP_HEADER)
                size += len(GZIP_HEADER)
        while True:
            if self._peeked is not None:
                item, self._peeked = self._peeked, None
            else:
                item = await self._queue.get()
            if size and item.kind in ("error", "closed"):
                self._peeked = item  # deliver what came before it first
                return self._piece(parts)
            if item.kind == "data":
                self._slots.release()
                assert isinstance(item.payload, bytes)
                parts.append(item.payload)
            elif item.kind == "block":
                self._slots.release()
                assert isinstance(item.payload, Future)
                block: CompressedBlock = await asyncio.wrap_future(item.payload)
                parts.append(self._framer.add(block))
            elif item.kind == "closed":
                return None
            elif item.kind == "end":
                self._finished = True
                if self.gzip:
                    parts.append(self._framer.trailer())
                return self._piece(parts) or None
            else:
                self._finished = True
                assert isinstance(item.payload, BaseException)
                raise item.payload
            size += len(parts[-1])
            if size and (self._queue.empty() or size >= MAX_PIECE_BYTES):
                return self._piece(parts)

    def _piece(self, parts: list[bytes]) -> bytes:
        piece = b"".join(parts)
        self.bytes_out += len(piece)
        return piece

    def close(self) -> None:
        """Stop the scan (idempotent; call it on the event loop). The reader thread closes the
        storage iterator; a consumer waiting in `next_piece` gets None."""
        if not self._stop.is_set():
            self._stop.set()
            self._queue.put_nowait(_Item("closed", None))
        self._finished = True

    # -- producer side (reader thread) -----------------------------------------------------

    def _run(self) -> None:
        chunks: Iterator[Chunk] | None = None
        lower_priority(self._nice)
        try:
            chunks = self._open()
            self._pump(chunks)
            self._deliver(_Item("end", None))
        except _Stopped:
            pass
        except BaseException as exc:
            if not self._stop.is_set():
                log.warning("export scan failed: %r", exc)
                self._deliver(_Item("error", exc))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing the export scan failed")

    def _pump(self, chunks: Iterator[Chunk]) -> None:
        pending: list[memoryview] = []
        pending_bytes = 0
        first = True
        oldest = 0.0
        for chunk in chunks:
            if self._stop.is_set():
                raise _Stopped
            view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
            if view.nbytes == 0:
                continue
            self.bytes_in += view.nbytes
            if not pending:
                oldest = time.monotonic()
            pending.append(view)
            pending_bytes += view.nbytes
            # The first rows leave at once (time to first byte); later small chunks are merged
            # into blocks of useful size, but never held back for long.
            if first or pending_bytes >= self._block_bytes or time.monotonic() - oldest > COALESCE_SECONDS:
                self._flush(pending)
                pending, pending_bytes, first = [], 0, False
        if pending:
            self._flush(pending)

    def _flush(self, views: list[memoryview]) -> None:
        if len(views) == 1:
            whole: Chunk = views[0]
        else:
            whole = b"".join(views)
        size = len(memoryview(whole))
        for start in range(0, size, self._block_bytes):
            block = memoryview(whole)[start : start + self._block_bytes]
            if self.gzip:
                assert self._pool is not None
                self._acquire_slot()
                self._deliver(_Item("block", self._pool.submit(compress_block, block)))
            else:
                self._acquire_slot()
                self._deliver(_Item("data", bytes(block)))

    def _acquire_slot(self) -> None:
        while not self._slots.acquire(timeout=0.2):
            if self._stop.is_set():
                raise _Stopped
        if self._stop.is_set():
            raise _Stopped

    def _deliver(self, item: _Item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError as exc:  # the event loop is gone: nobody is listening any more
            raise _Stopped from exc


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether `Accept-Encoding` allows gzip (`gzip`, `x-gzip` or `*`, with a non-zero q)."""
    if not accept_encoding:
        return False
    allowed: dict[str, bool] = {}
    for part in accept_encoding.lower().split(","):
        name, _, rest = part.strip().partition(";")
        quality = 1.0
        for param in rest.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        allowed[name.strip()] = quality > 0
    for name in ("gzip", "x-gzip"):
        if name in allowed:
            return allowed[name]
    return allowed.get("*", False)
