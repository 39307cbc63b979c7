"""Progress reporting: a small observer interface the API calls, and the terminal display.

The API reports to a `Progress` (silent by default); the CLI passes `TerminalProgress`, a rich
display shown only when stderr is a terminal, so piped or scheduled runs stay quiet. The summary
is the CLI's job, printed whatever the terminal.
"""

from __future__ import annotations

import time
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgress,
)
from rich.text import Text


class Progress(Protocol):
    def begin(self, unit: str, total: int) -> None:
        """Work starts: `total` units to go: days or files (export), or bytes (import: of the
        files, which `advance` reports as they are read)."""

    def advance(self, amount: int) -> None:
        """Progress within the total when its unit is bytes."""

    def transferred(self, nbytes: int) -> None:
        """Bytes moved over the network (compressed as on the wire)."""

    def unit_done(self, label: str, events: int, *, skipped: bool = False) -> None:
        """One unit finished (`skipped`: it was complete already)."""

    def events(self, count: int) -> None:
        """Events handled inside a unit (import reports per batch)."""

    def retrying(self, problem: str, delay: float) -> None: ...

    def end(self) -> None: ...


class SilentProgress:
    def begin(self, unit: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def transferred(self, nbytes: int) -> None:
        pass

    def unit_done(self, label: str, events: int, *, skipped: bool = False) -> None:
        pass

    def events(self, count: int) -> None:
        pass

    def retrying(self, problem: str, delay: float) -> None:
        pass

    def end(self) -> None:
        pass


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


class _Done(ProgressColumn):
    """`3/30 days`, or `12.3 MB/45.6 MB` when the unit is bytes."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        if unit == "bytes":
            return Text(f"{human_bytes(task.completed)}/{human_bytes(task.total or 0)}")
        return Text(f"{int(task.completed):,}/{int(task.total or 0):,} {unit}")


class TerminalProgress:
    """One line: a bar of units (days, files, or the bytes of the files imported) done of the
    total, elapsed time and ETA, then events so far, bytes transferred and the transfer rate.
    Retries show as a message."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            _Done(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            disable=not self.enabled,
            transient=False,
        )
        self._task: TaskID | None = None
        self._unit = ""
        self._events = 0
        self._bytes = 0
        self._started = time.monotonic()

    def begin(self, unit: str, total: int) -> None:
        self._started = time.monotonic()
        self._unit = unit
        self._bar.start()
        self._task = self._bar.add_task("rawevents", total=total, unit=unit, detail="")

    def _refresh(self, advance: int = 0) -> None:
        if self._task is None:
            return
        elapsed = max(time.monotonic() - self._started, 1e-6)
        detail = (
            f"· {self._events:,} events · {human_bytes(self._bytes)} · {human_bytes(self._bytes / elapsed)}/s"
        )
        self._bar.update(self._task, advance=advance, detail=detail)

    def transferred(self, nbytes: int) -> None:
        self._bytes += nbytes
        self._refresh()

    def events(self, count: int) -> None:
        self._events += count
        self._refresh()

    def advance(self, amount: int) -> None:
        self._refresh(advance=amount)

    def unit_done(self, label: str, events: int, *, skipped: bool = False) -> None:
        self._events += events
        self._refresh(advance=0 if self._unit == "bytes" else 1)

    def retrying(self, problem: str, delay: float) -> None:
        if self.enabled:
            # The problem quotes the server: printed as plain text, never as markup.
            self._bar.console.print(
                f"{problem}; retrying in {delay:.1f} s", style="yellow", markup=False, highlight=False
            )

    def end(self) -> None:
        self._bar.stop()
