"""The streaming body on its own: gzip framing, backpressure, closing, errors in order."""

from __future__ import annotations

import asyncio
import gzip
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawevents.errors import BadRequest
from rawevents.export.stream import (
    GZIP_HEADER,
    ExportStream,
    GzipFramer,
    accepts_gzip,
    compress_block,
    compression_pool,
    lower_priority,
)
from tests.export.helpers import gunzip_strict


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with compression_pool() as executor:
        yield executor


@given(st.lists(st.binary(max_size=3000), max_size=12))
def test_independent_blocks_frame_one_gzip_member(blocks: list[bytes]) -> None:
    framer = GzipFramer()
    body = GZIP_HEADER + b"".join(framer.add(compress_block(b)) for b in blocks) + framer.trailer()
    assert gunzip_strict(body) == b"".join(blocks)


class Source:
    """A chunk iterator that records how far it was read and whether it was closed."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.produced = 0
        self.closed = threading.Event()

    def __call__(self) -> Iterator[bytes]:
        try:
            for i, chunk in enumerate(self.chunks):
                if self.fail_after is not None and i == self.fail_after:
                    raise BadRequest("scan failed")
                self.produced += 1
                yield chunk
        finally:
            self.closed.set()


async def drain(stream: ExportStream) -> bytes:
    out = b""
    while (piece := await stream.next_piece()) is not None:
        out += piece
    return out


@pytest.mark.parametrize("use_gzip", [True, False])
def test_round_trip(use_gzip: bool, pool: ThreadPoolExecutor) -> None:
    chunks = [bytes([65 + i % 26]) * (1000 + i * 977) for i in range(200)]
    source = Source(chunks)

    async def run() -> bytes:
        stream = ExportStream(source, gzip=use_gzip, pool=pool, block_bytes=32768, capacity=3).start()
        await stream.ready(5)
        return await drain(stream)

    body = asyncio.run(run())
    assert (gunzip_strict(body) if use_gzip else body) == b"".join(chunks)
    assert source.closed.wait(5)


def test_empty_gzip_stream_is_valid(pool: ThreadPoolExecutor) -> None:
    async def run() -> bytes:
        stream = ExportStream(Source([]), gzip=True, pool=pool).start()
        return await drain(stream)

    assert gzip.decompress(asyncio.run(run())) == b""


def test_backpressure_and_close_stop_the_scan() -> None:
    source = Source([b"x" * 1000] * 10_000)

    async def run() -> None:
        stream = ExportStream(source, gzip=False, block_bytes=1000, capacity=4).start()
        await stream.ready(5)
        piece = await stream.next_piece()
        assert piece
        await asyncio.sleep(0.3)  # an idle client: the reader must stop at the queue bound
        # Consumed + the blocks in flight + the one the reader holds while it waits for a slot.
        assert source.produced <= len(piece) // 1000 + 4 + 1
        stream.close()
        assert await asyncio.to_thread(source.closed.wait, 5)
        assert await stream.next_piece() is None

    asyncio.run(run())
    assert source.produced < 100


def test_error_before_first_byte_surfaces_in_ready(pool: ThreadPoolExecutor) -> None:
    async def run() -> None:
        stream = ExportStream(Source([b"a"], fail_after=0), gzip=True, pool=pool).start()
        with pytest.raises(BadRequest, match="scan failed"):
            await stream.ready(5)

    asyncio.run(run())


def test_error_after_first_byte_is_raised_in_order() -> None:
    source = Source([b"a" * 10, b"b" * 10, b"c"], fail_after=2)

    async def run() -> bytes:
        stream = ExportStream(source, gzip=False, block_bytes=10).start()
        await stream.ready(5)
        out = b""
        with pytest.raises(BadRequest):
            while (piece := await stream.next_piece()) is not None:
                out += piece
        return out

    assert asyncio.run(run()) == b"a" * 10 + b"b" * 10
    assert source.closed.wait(5)


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


linux_only = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are a Linux feature")


@linux_only
def test_reader_and_compression_threads_run_at_lower_priority() -> None:
    """The scan (reader thread) and compression both run niced; the event loop's thread is not."""
    base = _own_nice()
    seen: dict[str, int] = {}

    def chunks() -> Iterator[bytes]:
        seen["reader"] = _own_nice()
        yield b"x" * 100

    with ThreadPoolExecutor(1, initializer=lower_priority, initargs=(5,)) as pool:

        async def run() -> bytes:
            stream = ExportStream(chunks, gzip=True, pool=pool, nice=5).start()
            await stream.ready(5)
            return await drain(stream)

        assert gunzip_strict(asyncio.run(run())) == b"x" * 100
        seen["compressor"] = pool.submit(_own_nice).result()
    assert seen == {"reader": min(19, base + 5), "compressor": min(19, base + 5)}
    assert _own_nice() == base


@linux_only
def test_lower_priority_is_per_thread_and_relative_to_the_process() -> None:
    base = _own_nice()
    result: list[int] = []

    def niced() -> None:
        lower_priority(3)
        lower_priority(3)  # relative to the process, not cumulative
        result.append(_own_nice())

    thread = threading.Thread(target=niced)
    thread.start()
    thread.join()
    assert result == [min(19, base + 3)]
    assert _own_nice() == base


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False), ("", False), ("gzip", True), ("GZIP", True), ("gzip;q=0", False),
        ("gzip; q=0.001", True),
        ("deflate, gzip", True), ("x-gzip", True), ("*", True), ("*;q=0", False), ("identity", False),
        ("*, gzip;q=0", False), ("br", False), ("gzip;q=bad", False),
    ],
)  # fmt: skip
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected
