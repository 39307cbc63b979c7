"""The ingest worker process's main loop: `python -m rawevents.ingest.worker_process FD PARENT_PID`.

A worker owns no state worth saving: it reads one job at a time from its socket, answers with
`("ok", TableBatch)` or `("error", exception)`, and exits as soon as the server is gone:
- idle, it is blocked in `recv`, which ends with EOF when the server closes or dies;
- busy, on Linux the kernel sends it SIGKILL when the server thread that started it ends
  (PR_SET_PDEATHSIG); elsewhere the job ends and its answer fails with a broken pipe.
SIGINT and SIGTERM are ignored: a terminal's Ctrl-C or a service manager's SIGTERM to the whole
process group reaches the workers too, and the server must be the one that decides when they
stop (after its in-flight imports are answered).

The cyclic garbage collector is off in a worker (docs/performance.md, ingest): parsing 2000
events creates ~10k dicts and lists, so it ran dozens of times per batch, each time walking every
tracked object, and parsing took 1.5-2x longer with it on. A job's parsed events hold no
reference cycles (reference counting frees them as soon as the job ends); one collection after
each job frees the few that exist (an error answer's traceback, a library's), and `gc.freeze`
keeps the modules loaded at start out of it, so that collection takes microseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection

from rawevents.ingest.workers import import_batch

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent goes; exit now if it already went."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(0)


def serve(conn: Connection) -> None:
    gc.disable()
    gc.freeze()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the server closed the socket or died
        try:
            answer: tuple[str, object] = ("ok", import_batch(job))
        except Exception as exc:  # sent back and raised in the server, as in process
            answer = ("error", exc)
        try:
            conn.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError):
            conn.send(("error", RuntimeError(repr(answer[1]))))
        except OSError:
            return
        del job, answer
        gc.collect()


def main(argv: list[str]) -> None:
    fd, parent_pid = int(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(parent_pid)
    serve(Connection(fd))


if __name__ == "__main__":
    main(sys.argv)
