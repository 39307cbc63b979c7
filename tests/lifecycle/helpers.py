"""Shared pieces of the lifecycle tests: the server's worker processes, and the $insert_ids an
export returns (the /import load is tests/import_load.py)."""

from __future__ import annotations

from collections import Counter

import orjson
import psutil
import requests

from rawevents.ingest import workers
from rawevents.projects import Project
from tests.live_server import LiveServer

DAY = "2023-11-14"  # the day of import_load.BASE_TIME and of the hour of events after it
WORKER_MARK = workers.WORKER_MODULE


def server_children(server: LiveServer) -> list[psutil.Process]:
    assert server.process is not None
    return psutil.Process(server.process.pid).children(recursive=True)


def worker_processes(server: LiveServer) -> list[psutil.Process]:
    """The server's ingest worker processes that are running (zombies excluded)."""
    found = []
    for child in server_children(server):
        try:
            if WORKER_MARK in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def zombies(server: LiveServer) -> list[psutil.Process]:
    result = []
    for child in server_children(server):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                result.append(child)
        except psutil.NoSuchProcess:
            continue
    return result


def survivors(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `processes` still running after `timeout` s (a zombie awaiting its reaper is not
    running: it holds no memory and executes nothing)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    running = []
    for process in alive:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            continue
    return running


def exported_ids(server: LiveServer, project: Project) -> Counter[str]:
    response = requests.get(
        f"{server.base_url}/api/2.0/export",
        params={"from_date": DAY, "to_date": DAY},
        auth=(project.api_secret, ""),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return Counter(
        orjson.loads(line)["properties"]["$insert_id"] for line in response.content.split(b"\n") if line
    )
