"""A worker's shutdown, as its running jobs see it: a flag shared with the pool children.

Warm shutdown hands running jobs back (`worker.runner`). The main process learns of the
shutdown from Celery (`request_shutdown`, through a flag shared with its forked pool
children); a pool child that receives SIGTERM itself during a job hands that job back the
same way (see `mark_pool_child`).
"""

from __future__ import annotations

import mmap
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

# One byte of anonymous shared memory, made when this module is imported: a Celery worker
# imports it in its main process before the pool forks, so the main process and all of its
# pool children see the same byte. The main process sets it when a shutdown begins.
_SHUTDOWN_FLAG = mmap.mmap(-1, 1)
# Set in one pool child only, when that child itself receives SIGTERM.
_local_shutdown = threading.Event()
_running_lock = threading.Lock()
_running = 0  # jobs (or shard parts) running in this process now
_sigterms = 0
_exit_timer: threading.Timer | None = None
_pool_child = False
_previous_sigterm: Any = None
# A child that got SIGTERM exits this long after it (sooner once its job is handed back),
# in case nothing else ends it (Celery's cold shutdown joins its children without a limit).
HANDBACK_GRACE_SECONDS = 30.0
EXIT_AFTER_HANDBACK_SECONDS = 3.0


def request_shutdown() -> None:
    """Tell every job of this worker (this process and its forked children) to hand back."""
    _SHUTDOWN_FLAG[0] = 1


def shutdown_requested() -> bool:
    return _SHUTDOWN_FLAG[0] == 1 or _local_shutdown.is_set()


@contextmanager
def job_running() -> Iterator[None]:
    """Mark a job as running in this process (SIGTERM then hands it back, see below)."""
    global _running
    _install_sigterm_handler()
    with _running_lock:
        _running += 1
    try:
        yield
    finally:
        with _running_lock:
            _running -= 1


def _exit_soon(seconds: float) -> None:
    global _exit_timer
    if _exit_timer is not None:
        _exit_timer.cancel()
    _exit_timer = threading.Timer(seconds, os._exit, args=(0,))
    _exit_timer.daemon = True
    _exit_timer.start()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _sigterms
    _sigterms += 1
    if _running and _sigterms == 1:
        # Hand the job back at its next safe point, then go.
        _local_shutdown.set()
        _exit_soon(HANDBACK_GRACE_SECONDS)
        return
    # Idle, or told twice: what the pool child did before (billiard's handler ends it).
    previous = _previous_sigterm if _previous_sigterm is not None else signal.SIG_DFL
    signal.signal(signal.SIGTERM, previous)
    if callable(previous):
        previous(signum, frame)
    else:
        os.kill(os.getpid(), signal.SIGTERM)


def mark_pool_child() -> None:
    """Called in each prefork pool child (Celery's worker_process_init). Without this, a
    SIGTERM sent to the child ends it at once (billiard's handler) and its job is lost
    until its lease expires; with it, the first SIGTERM during a job hands the job back,
    and an idle child, or a second SIGTERM, ends the process as before. Never in a worker's
    main process, whose SIGTERM is Celery's own (it starts the warm shutdown)."""
    global _pool_child
    _pool_child = True


def _install_sigterm_handler() -> None:
    # Installed when the child's first job starts: billiard sets its own SIGTERM handler
    # after worker_process_init, so installing it there would be undone.
    global _previous_sigterm
    if not _pool_child or threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)


def after_handback() -> None:
    """Called once a job was handed back and sent again."""
    if _sigterms:  # this process was told to go: leave once the task has returned
        _exit_soon(EXIT_AFTER_HANDBACK_SECONDS)
