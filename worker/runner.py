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
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from core.config import Settings
from core.files import files_for
from core.jobs import Job, JobState, JobStore, LeaseLost
from worker.joblog import attach_job_log, detach_job_log
from worker.shutdown import (
    after_handback,
    job_running,
    mark_pool_child,
    request_shutdown,
    shutdown_requested,
)

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
        # Set once the job was recorded as cancelled while its work still ran (see
        # `Heartbeat`): the work's later reports are dropped, its outcome is not recorded.
        self.closed = threading.Event()
        self._finish_lock = threading.Lock()

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
        if not self.closed.is_set():
            self.store.update_job(self.job_id, **fields)

    def finish(self, state: JobState, **fields: Any) -> Job:
        """Record how the job ended, once: after `closed`, the recorded outcome stands."""
        with self._finish_lock:
            if self.closed.is_set():
                return self.store.get(self.job_id)
            job = self.store.finish(self.job_id, state, **fields)
            self.closed.set()
            return job


# How often a running job looks for a cancel request (a read), and how long its work then
# has to stop at a safe point before the job is recorded as cancelled anyway. Some phases
# have no safe point for seconds: tracing and compiling the first step (15 s for a
# width-16 network on 2 CPUs), loading a large checkpoint. The work then stops at its
# next safe point without recording anything more.
CANCEL_POLL_SECONDS = 1.0
CANCEL_GRACE_SECONDS = 1.5


class Heartbeat(threading.Thread):
    """Renews the job's lease, picks up cancel requests while the work runs, and records
    a cancel the work does not act on within `CANCEL_GRACE_SECONDS`."""

    def __init__(self, ctx: JobContext, interval: float) -> None:
        super().__init__(name=f"heartbeat-{ctx.job_id}", daemon=True)
        self.ctx = ctx
        self.interval = interval
        self.poll = min(interval, CANCEL_POLL_SECONDS)
        self._stop_event = threading.Event()

    def run(self) -> None:
        last_beat = time.monotonic()
        cancel_seen: float | None = None
        while not self._stop_event.wait(self.poll):
            now = time.monotonic()
            if now - last_beat >= self.interval:
                self.beat()
                last_beat = now
            elif not self.ctx.cancel_requested.is_set():
                self.poll_cancel()
            if self.ctx.cancel_requested.is_set():
                cancel_seen = cancel_seen or now
                if now - cancel_seen >= CANCEL_GRACE_SECONDS:
                    self.force_cancel()
                    return

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

    def poll_cancel(self) -> None:
        try:
            if self.ctx.store.get(self.ctx.job_id).cancel_requested:
                self.ctx.cancel_requested.set()
        except Exception:  # the next poll or beat retries
            log.debug("job %s: cancel poll failed", self.ctx.job_id, exc_info=True)

    def force_cancel(self) -> None:
        if self._stop_event.is_set() or self.ctx.lease_lost.is_set():
            return
        log.warning("job %s: cancelled; its work stops at its next safe point", self.ctx.job_id)
        try:
            self.ctx.finish(JobState.CANCELLED, error=None)
        except Exception:  # the work's own JobCancelled records it instead
            log.exception("job %s: could not record the cancel", self.ctx.job_id)

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
    # The job's own log file (published to the object store, when there is one).
    job_log = attach_job_log(settings.resolved_data_root, job_id, files=files_for(settings))
    ctx = JobContext(store, claim.job, settings, owner)
    heartbeat = Heartbeat(ctx, interval=max(settings.lease_seconds / 4, 0.5))
    heartbeat.beat()
    heartbeat.start()
    try:
        with job_running():
            result = work(ctx)
    except JobCancelled:
        return ctx.finish(JobState.CANCELLED, error=None)
    except LeaseLostError:
        return None
    except HandBack as exc:
        heartbeat.stop()
        heartbeat.join(timeout=10)
        if ctx.closed.is_set():  # cancelled meanwhile: nothing to hand back
            return ctx.store.get(job_id)
        store.release(job_id, owner)
        reason = "worker shutting down" if isinstance(exc, WorkerShuttingDown) else exc
        log.warning("job %s: %s; handed back for another worker", job_id, reason)
        call_requeue(requeue, f"job {job_id}")
        after_handback()
        return None
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return ctx.finish(JobState.FAILED, error=describe_error(exc))
    finally:
        heartbeat.stop()
        detach_job_log(job_log)
    if ctx.closed.is_set():  # recorded as cancelled while it ran
        return ctx.store.get(job_id)
    if not finish:
        return None
    return ctx.finish(JobState.SUCCEEDED, result=result)


__all__ = [
    "SHARD_PARTS_OWNER",
    "HandBack",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "LeaseLostError",
    "WorkerShuttingDown",
    "after_handback",
    "call_requeue",
    "describe_error",
    "job_running",
    "mark_pool_child",
    "request_shutdown",
    "run_job",
    "shutdown_requested",
    "worker_identity",
]
