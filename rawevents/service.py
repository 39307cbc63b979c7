"""The running service's parts, built from a Config: what HTTP handlers and the CLI share."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rawevents.export.stream import compression_pool
from rawevents.ingest.workers import IngestWorkers
from rawevents.metrics import Metrics
from rawevents.projects import Project, ProjectRegistry
from rawevents.settings import Config
from rawevents.storage import EventStore, open_registry, open_store

DEMO_PROJECT_NAME = "demo"


@dataclass
class Services:
    config: Config
    registry: ProjectRegistry
    store: EventStore
    ingest_workers: IngestWorkers | None = field(default=None)
    metrics: Metrics = field(default_factory=Metrics)
    compression: ThreadPoolExecutor = field(default_factory=compression_pool)  # exports' gzip threads

    @classmethod
    def open(cls, config: Config) -> Services:
        registry = open_registry(config)
        metrics = Metrics(config.data_dir)
        store = open_store(config, observer=metrics)
        workers = (
            IngestWorkers(config.ingest_processes, job_timeout=config.ingest_job_timeout_s)
            if config.ingest_processes > 0
            else None
        )
        return cls(config, registry, store, workers, metrics, compression_pool(config.export_nice))

    def close(self) -> None:
        self.compression.shutdown(cancel_futures=True)
        if self.ingest_workers is not None:
            self.ingest_workers.close()
        self.store.close()
        self.registry.close()


def ensure_demo_project(registry: ProjectRegistry) -> tuple[Project, bool]:
    """The demo project, created on first start (UTC, so exported times are true epochs), and
    whether it was created now: only then is its secret known (it is stored hashed)."""
    for project in registry.list_projects():
        if project.name == DEMO_PROJECT_NAME:
            return project, False
    return registry.create_project(DEMO_PROJECT_NAME, "UTC"), True
