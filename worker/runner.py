"""Running one job inside a task: the lease, the heartbeat, cancellation and the outcome.

Work functions receive a `JobContext`; they report progress through it and call
`ctx.check_cancelled()` at safe points, which raises `JobCancelled` once a cancel was
requested (cancellation is cooperative, never a signal).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from typing import Any

from core.config import Settings
from core.jobs import Job, JobState, JobStore, LeaseLost

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside work when the job was asked to stop."""


class JobFailed(Exception):
    """A failure whose message is meant for the user (bad data, NaN loss, ...)."""


class LeaseLostError(Exception):
    """Another worker took the job over: stop without touching it."""


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
        if self.lease_lost.is_set():
            raise LeaseLostError(self.job_id)
        if self.cancel_requested.is_set():
            raise JobCancelled(self.job_id)

    def should_stop(self) -> bool:
        return self.cancel_requested.is_set() or self.lease_lost.is_set()

    def report(self, **fields: Any) -> None:
        self.store.update(self.job_id, **fields)


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
) -> Job | None:
    """Claim `job_id`, run `work` under a heartbeat, and record how it ended.

    Returns the finished job, or None when this worker did not get the job (already
    finished, cancelled, or held by a live worker). With `finish=False` a successful
    `work` leaves the job running (a fan-out whose parts finish it).
    """
    owner = worker_identity()
    claim = store.claim(job_id, owner, settings.lease_seconds, settings.job_max_attempts)
    if not claim.granted:
        log.info("job %s not run here: %s", job_id, claim.reason)
        return None
    assert claim.job is not None
    ctx = JobContext(store, claim.job, settings, owner)
    heartbeat = Heartbeat(ctx, interval=max(settings.lease_seconds / 4, 0.5))
    heartbeat.beat()
    heartbeat.start()
    try:
        result = work(ctx)
    except JobCancelled:
        return store.finish(job_id, JobState.CANCELLED, error=None)
    except LeaseLostError:
        return None
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return store.finish(job_id, JobState.FAILED, error=describe_error(exc))
    finally:
        heartbeat.stop()
    if not finish:
        return None
    return store.finish(job_id, JobState.SUCCEEDED, result=result)
