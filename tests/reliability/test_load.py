"""Exports under load against the real server: many at once while ingesting, abandoned ones,
stalled readers. What is asserted is correctness and bounded resources (every admitted export
complete, none cut off; memory, threads and file handles back near where they started), never
speed; the speeds seen are reported as figures.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import psutil
import pytest

from bench.live import PeakRss
from rawevents.projects import Project
from rawevents.settings import SETTINGS_BY_NAME
from tests.export.bigdata import build
from tests.import_load import ImportLoad
from tests.live_server import LiveServer
from tests.reliability.harness import (
    SIZES,
    CutOff,
    Sizes,
    Usage,
    export_once,
    export_url,
    export_with_retry,
    percentile,
    report,
    settle,
)

pytestmark = pytest.mark.reliability

DAY = "2024-05-01"
DAY_MS = int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp() * 1000)
IDLE_TIMEOUT = 4
MAX_RUNNING = 8
BUDGET_MB = 256
# What a finished burst may leave behind: allocator caches and the engine's buffer pool, not a
# per-export leak (a leak of one window per export would be ~8 MiB x exports).
RSS_SLACK = 160 * 2**20


@pytest.fixture(scope="module", params=SIZES)
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, Project, Sizes]]:
    sizes: Sizes = request.param
    data_dir = tmp_path_factory.mktemp(f"load-{sizes.name}") / "data"
    project = build(data_dir, sizes.export_rows, DAY_MS, step_ms=86_400_000 // sizes.export_rows)
    env = {
        "RAWEVENTS_EXPORT_IDLE_TIMEOUT_SECONDS": str(IDLE_TIMEOUT),
        "RAWEVENTS_EXPORT_MAX_RUNNING": str(MAX_RUNNING),
        "RAWEVENTS_EXPORT_QUEUE_SECONDS": "120",
        "RAWEVENTS_EXPORT_MEMORY_BUDGET_MB": str(BUDGET_MB),
    }
    live = LiveServer(data_dir, env=env).start()
    # Warm up: the first export starts the compression pool and the engine's buffers.
    body, _ = export_with_retry(export_url(live, DAY, DAY), project)
    assert body.count(b"\n") == sizes.export_rows
    yield live, project, sizes
    live.stop()


def test_concurrent_exports_while_ingesting_all_complete(loaded: tuple[LiveServer, Project, Sizes]) -> None:
    live, project, sizes = loaded
    before = Usage.of(live)
    ingester = ImportLoad(live, project, clients=sizes.ingest_clients, batch=200, timeout=60).start()
    url = export_url(live, DAY, DAY)
    cut_off = 0
    waits = 0
    with PeakRss(live.pid) as peak, ThreadPoolExecutor(sizes.concurrent_exports) as pool:
        futures = [pool.submit(export_with_retry, url, project) for _ in range(sizes.concurrent_exports)]
        for future in futures:
            try:
                body, waited = future.result()
            except CutOff:
                cut_off += 1
                continue
            waits += waited
            lines = body.split(b"\n")[:-1]
            assert len(lines) == sizes.export_rows
            assert orjson.loads(lines[0])["properties"]["seq"] == 0
            assert orjson.loads(lines[-1])["properties"]["seq"] == sizes.export_rows - 1
    ingester.stop()
    assert ingester.errors == []
    assert cut_off == 0
    assert not [status for status in ingester.statuses if status >= 500]
    report(
        "concurrent_exports",
        sizes=sizes.name,
        exports=sizes.concurrent_exports,
        completed=sizes.concurrent_exports - cut_off,
        cut_off=cut_off,
        told_to_wait=waits,
        rows_each=sizes.export_rows,
        rss_before_mib=before.mib(),
        peak_rss_mib=peak.mib(),
        ingested_while=len(ingester.acknowledged),
        ingest_p99_s=round(percentile(ingester.latencies, 0.99), 3),
    )
    assert peak.peak < before.rss + BUDGET_MB * 2**20 + RSS_SLACK


def test_ingestion_stays_responsive_while_exports_run(loaded: tuple[LiveServer, Project, Sizes]) -> None:
    """Ingest rate and p99 alone, then with exports running back to back (figures only; the
    assertions are that every request is answered, none with a 5xx, and that the export threads
    run at a lower CPU priority than the event loop). Each phase ingests into its own time range,
    so the second one's dedup checks do not scan what the first one stored."""
    live, project, sizes = loaded
    seconds = 5 if sizes.name == "ci" else 20
    exporters = sizes.concurrent_exports // 2
    # The server's `export_nice` (RAWEVENTS_EXPORT_NICE=0 measures without the priority).
    nice = int(os.environ.get("RAWEVENTS_EXPORT_NICE", SETTINGS_BY_NAME["export_nice"].default))
    figures = {}
    for index, phase in enumerate(("alone", "with_exports")):
        stop = threading.Event()

        def export_loop(stop: threading.Event) -> None:
            while not stop.is_set():
                export_with_retry(export_url(live, DAY, DAY), project)

        count = exporters if phase != "alone" else 0
        threads = [threading.Thread(target=export_loop, args=(stop,)) for _ in range(count)]
        for thread in threads:
            thread.start()
        ingester = ImportLoad(
            live,
            project,
            clients=sizes.ingest_clients,
            batch=200,
            time_s=1_710_000_000 + index * 10**7,
            timeout=60,
        ).start()
        time.sleep(seconds)
        niced = _niced_threads(live, nice)
        ingester.stop()
        stop.set()
        for thread in threads:
            thread.join(120)
        if count:
            assert (niced > 0) == (nice > 0)
        assert ingester.errors == []
        assert not [status for status in ingester.statuses if status >= 500]
        assert ingester.statuses.get(200, 0) > 0
        figures[phase] = {
            "events_per_s": round(len(ingester.acknowledged) / seconds),
            "p50_s": round(percentile(ingester.latencies, 0.5), 3),
            "p99_s": round(percentile(ingester.latencies, 0.99), 3),
        }
    report("ingest_while_exporting", sizes=sizes.name, exports=exporters, **figures)


def test_abandoned_exports_leave_nothing_behind(loaded: tuple[LiveServer, Project, Sizes]) -> None:
    live, project, sizes = loaded
    url = export_url(live, DAY, DAY)
    before = Usage.of(live)

    def abandon(_: int) -> None:
        response = export_once(url, project)
        if response.status_code == 200:
            response.raw.read(4096, decode_content=False)
        response.close()

    with PeakRss(live.pid) as peak, ThreadPoolExecutor(10) as pool:
        list(pool.map(abandon, range(sizes.abandoned_exports)))
    after = _settled(live, before)
    report(
        "abandoned_exports",
        sizes=sizes.name,
        exports=sizes.abandoned_exports,
        before=before.__dict__,
        after=after.__dict__,
        peak_rss_mib=peak.mib(),
    )
    _assert_back(before, after)
    body, _ = export_with_retry(url + "&limit=5", project)
    assert body.count(b"\n") == 5


def test_stalled_readers_are_bounded_and_dropped(loaded: tuple[LiveServer, Project, Sizes]) -> None:
    """Clients that send an export request and then read nothing: what they can make the server
    hold is bounded by the admission budget, and each is dropped after the idle timeout."""
    live, project, sizes = loaded
    before = Usage.of(live)
    request = (
        f"GET /api/2.0/export?from_date={DAY}&to_date={DAY} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Basic {_b64(project.api_secret + ':')}\r\nAccept-Encoding: gzip\r\n\r\n"
    ).encode()
    sockets = []
    with PeakRss(live.pid) as peak:
        for _ in range(sizes.stalled_readers):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", live.port))
            sock.sendall(request)
            sockets.append(sock)
        # Each admitted export either fits in the socket buffers and finishes, or is dropped after
        # IDLE_TIMEOUT; the queue then admits the next. Polled, no timing asserted.
        rounds = -(-sizes.stalled_readers // MAX_RUNNING)
        deadline = time.monotonic() + rounds * (IDLE_TIMEOUT + 10) + 30
        while live.export_scans() and time.monotonic() < deadline:
            time.sleep(0.5)
        still_running = live.export_scans()
        dropped = sum(_closed_by_server(sock) for sock in sockets)
        # The slots are free while the stalled clients are still connected.
        body, _ = export_with_retry(export_url(live, DAY, DAY) + "&limit=5", project)
        assert body.count(b"\n") == 5
    for sock in sockets:
        sock.close()
    after = _settled(live, before)
    report(
        "stalled_readers",
        sizes=sizes.name,
        readers=sizes.stalled_readers,
        dropped_by_idle_timeout=dropped,
        still_running=still_running,
        before=before.__dict__,
        after=after.__dict__,
        peak_rss_mib=peak.mib(),
    )
    assert still_running == 0
    assert peak.peak < before.rss + BUDGET_MB * 2**20 + RSS_SLACK
    _assert_back(before, after)


def _niced_threads(live: LiveServer, nice: int) -> int:
    """Server threads running `nice` below the event loop's thread (none when `nice` is 0)."""
    assert live.process is not None
    pid = live.process.pid
    base = os.getpriority(os.PRIO_PROCESS, pid)
    count = 0
    for thread in psutil.Process(pid).threads():
        try:
            count += nice > 0 and os.getpriority(os.PRIO_PROCESS, thread.id) == min(19, base + nice)
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return count


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed the connection (the client side is in CLOSE_WAIT); checked
    without reading, so the reader stays stalled."""
    port = sock.getsockname()[1]
    for conn in psutil.Process().net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port:
            return bool(conn.status == psutil.CONN_CLOSE_WAIT)
    return True


def _settled(live: LiveServer, before: Usage) -> Usage:
    last = Usage.of(live)
    for usage in settle(live):
        last = usage
        if usage.threads <= before.threads and usage.fds <= before.fds + 2:
            break
    return last


def _assert_back(before: Usage, after: Usage) -> None:
    assert after.threads <= before.threads + 2
    assert after.fds <= before.fds + 4
    assert after.rss < before.rss + RSS_SLACK
