"""How the CLI gets store work done: only one process may open the event store for writing.

The CLI records a task in the registry. If a server's task runner is alive (fresh heartbeat), the
server runs it; otherwise the CLI opens the store itself and runs it. A store that is locked while
no heartbeat is fresh belongs to a server still starting (or one busy with a long task): wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rawevents.admin import tasks
from rawevents.admin.runner import HEARTBEAT_FRESH_MS
from rawevents.projects import FINAL_STATES, ProjectRegistry, Task

if TYPE_CHECKING:  # the engine (pyarrow, duckdb) loads only when a store is opened
    from rawevents.storage.base import EventStore

WAIT_STEP_SECONDS = 0.1


def run_task(
    registry: ProjectRegistry,
    data_dir: Path,
    task: Task,
    open_store: Callable[[], EventStore | None],
    *,
    on_wait: Callable[[str], None] = lambda _: None,
) -> Task:
    """Wait until `task` ended, running it here when no server will; returns its final row.
    `open_store` answers None while another process holds the store."""
    told = False
    while True:
        current = registry.task(task.task_id)
        if current is None or current.status in FINAL_STATES:
            assert current is not None, "task rows are only deleted with their project"
            return current
        if registry.runner_alive(HEARTBEAT_FRESH_MS):
            if not told:
                on_wait("the running server is carrying out this request")
                told = True
            time.sleep(WAIT_STEP_SECONDS)
            continue
        store = open_store()
        if store is None:  # locked: a server is starting; its runner will take the task
            time.sleep(WAIT_STEP_SECONDS)
            continue
        try:
            # Holding the store means no server runs: a STARTED task is one a dead server left.
            registry.requeue_started_tasks()
            claimed = registry.claim_task(task.task_id)
            if claimed is not None:
                tasks.execute(tasks.TaskContext(registry, store, data_dir), claimed)
        finally:
            store.close()
