"""Running one job inside a task: the lease, the heartbeat, cancellation and the outcome.

Work functions receive a `JobContext`; they report progress through it and call
`ctx.check_cancelled()` at safe points, which raises `JobCancelled` once a cancel was
requested (cancellation is cooperative, never a signal).

Warm shutdown hands running jobs back. When a worker is asked to stop (SIGTERM to its main
process, as `docker stop` and Kubernetes do, or to its whole process group, as systemd
does), its running jobs stop at their next safe point (the next training batch), keep their
checkpoints, give their lease back without counting an attempt, and are sent again, so
another worker continues them at once instead of after the job would have ended. The main
process learns of the shutdown from Celery (`request_shutdown`, through a flag shared with
its forked pool children); a pool child that receives SIGTERM itself during a job hands
that job back the same way (see `mark_pool_child`).
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from core.config import Settings
from core.jobs import Job, JobState, JobStore, LeaseLost
from worker.joblog import attach_job_log, detach_job_log

log = logging.getLogger(__name__)


# The owner of a fanned-out shard job's lease while its parts run (they renew it together).
SHARD_PARTS_OWNER = "shard-parts"


class JobCancelled(Exception):
    """Raised inside work when the job was asked to stop."""


class JobFailed(Exception):
    """A failure whose message is meant for the user (bad data, NaN loss, ...)."""


class LeaseLostError(Exception):
    """Another worker took the job over: stop without touching it."""


class HandBack(Exception):
    """Stop without failing the job: release its lease (no attempt counted) and send it
    again; it continues on this or another worker from where it got to."""


class WorkerShuttingDown(HandBack):
    """Raised inside work when its worker is shutting down: the job is handed back."""


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


def call_requeue(requeue: Callable[[], None] | None, what: str) -> None:
    """Send a handed-back job again; if the broker does not take it, the orphan sweeper of
    any live worker will (a released lease counts as expired)."""
    if requeue is None:
        return
    try:
        requeue()
    except Exception as exc:
        log.warning("%s: could not send it again (%s); the sweeper will", what, describe_error(exc))


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobContext:
    """What a work function sees of its job."""

    def __init__(self, store: JobStore, job: Job, settings: Settings, owner: str) -> None:
        self.store = store
        self.job = job
        self.settings = settings
        self.owner = owner
        self.cancel_requested = threading.Event()
        self.lease_lost = threading.Event()

    @property
    def job_id(self) -> str:
        return self.job.id

    def check_cancelled(self) -> None:
        """Raise if the job must stop: lease lost, cancel requested, or worker shutdown."""
        if self.lease_lost.is_set():
            raise LeaseLostError(self.job_id)
        if self.cancel_requested.is_set():
            raise JobCancelled(self.job_id)
        if shutdown_requested():
            raise WorkerShuttingDown(self.job_id)

    def should_stop(self) -> bool:
        return self.cancel_requested.is_set() or self.lease_lost.is_set() or shutdown_requested()

    def report(self, **fields: Any) -> None:
        self.store.update_job(self.job_id, **fields)


class Heartbeat(threading.Thread):
    """Renews the job's lease and picks up cancel requests while the work runs."""

    def __init__(self, ctx: JobContext, interval: float) -> None:
        super().__init__(name=f"heartbeat-{ctx.job_id}", daemon=True)
        self.ctx = ctx
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            if self.ctx.store.heartbeat(
                self.ctx.job_id, self.ctx.owner, self.ctx.settings.lease_seconds
            ):
                self.ctx.cancel_requested.set()
        except LeaseLost:
            log.warning("job %s: lease lost, stopping", self.ctx.job_id)
            self.ctx.lease_lost.set()
        except Exception:  # the database may blink; the next beat retries
            log.exception("job %s: heartbeat failed", self.ctx.job_id)

    def stop(self) -> None:
        self._stop_event.set()


def describe_error(exc: BaseException) -> str:
    """A one-line reason a user can act on."""
    if isinstance(exc, JobFailed):
        return str(exc)
    name = type(exc).__name__
    if "ResourceExhausted" in name or isinstance(exc, MemoryError):
        return f"out of memory: {exc}".strip()[:2000]
    message = str(exc).strip().splitlines()
    return f"{name}: {message[0] if message else 'no message'}"[:2000]


def run_job(
    store: JobStore,
    settings: Settings,
    job_id: str,
    work: Callable[[JobContext], dict[str, Any] | None],
    *,
    finish: bool = True,
    requeue: Callable[[], None] | None = None,
) -> Job | None:
    """Claim `job_id`, run `work` under a heartbeat, and record how it ended.

    Returns the finished job, or None when this worker did not get the job (already
    finished, cancelled, or held by a live worker) or handed it back because it is shutting
    down: then the lease is released without counting an attempt, and `requeue()` sends the
    job again. With `finish=False` a successful `work` leaves the job running (a fan-out
    whose parts finish it).
    """
    if shutdown_requested():  # delivered while this worker stops: leave it to the next
        log.info("job %s not started: this worker is shutting down", job_id)
        call_requeue(requeue, f"job {job_id}")
        return None
    owner = worker_identity()
    claim = store.claim(job_id, owner, settings.lease_seconds, settings.job_max_attempts)
    if not claim.granted:
        log.info("job %s not run here: %s", job_id, claim.reason)
        return None
    assert claim.job is not None
    job_log = attach_job_log(settings.resolved_data_root, job_id)  # the job's own log file
    ctx = JobContext(store, claim.job, settings, owner)
    heartbeat = Heartbeat(ctx, interval=max(settings.lease_seconds / 4, 0.5))
    heartbeat.beat()
    heartbeat.start()
    try:
        with job_running():
            result = work(ctx)
    except JobCancelled:
        return store.finish(job_id, JobState.CANCELLED, error=None)
    except LeaseLostError:
        return None
    except HandBack as exc:
        heartbeat.stop()
        heartbeat.join(timeout=10)
        store.release(job_id, owner)
        reason = "worker shutting down" if isinstance(exc, WorkerShuttingDown) else exc
        log.warning("job %s: %s; handed back for another worker", job_id, reason)
        call_requeue(requeue, f"job {job_id}")
        after_handback()
        return None
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return store.finish(job_id, JobState.FAILED, error=describe_error(exc))
    finally:
        heartbeat.stop()
        detach_job_log(job_log)
    if not finish:
        return None
    return store.finish(job_id, JobState.SUCCEEDED, result=result)
