"""One watcher per API process: it polls the job store and fans changes out to every stream.

However many event streams are open, the store sees one query per poll (every
`interval` seconds, and none while nobody listens): the jobs that are queued or running,
were created or finished lately, or that a stream waits on. A job whose record changed
since the last poll is handed to each interested stream's `Mailbox`, which keeps only the
latest record per job, so a slow client costs one record per job, not a growing queue.
Store calls run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.job_tables import to_job
from core.jobs import Job, JobRow, JobState, JobStore, utcnow

log = logging.getLogger(__name__)

# Finished or created jobs are looked at again for this long after the watcher last saw
# the store: clocks of the worker hosts may differ a little from the API's.
CLOCK_MARGIN = timedelta(seconds=30)


def changed_jobs(store: JobStore, since: datetime, watched: set[str]) -> list[Job]:
    """One query: jobs that may have changed since `since`, and every job in `watched`."""
    live = (JobState.QUEUED.value, JobState.RUNNING.value)
    conditions = [
        JobRow.state.in_(live),
        JobRow.created_at >= since,
        JobRow.finished_at >= since,
    ]
    if watched:
        conditions.append(JobRow.id.in_(sorted(watched)))
    query = select(JobRow).where(or_(*conditions))
    with Session(store.engine) as session:
        return [to_job(row) for row in session.scalars(query)]


def _fingerprint(job: Job) -> tuple[Any, ...]:
    return (
        job.state,
        job.progress,
        job.metrics,
        len(job.history),
        job.error,
        job.result,
        job.finished_at,
    )


class Mailbox:
    """The latest record of each job a stream waits for (older ones are superseded)."""

    def __init__(self, job_id: str | None = None) -> None:
        self.job_id = job_id  # None: every job
        self._latest: dict[str, Job] = {}
        self._ready = asyncio.Event()

    def put(self, job: Job) -> None:
        self._latest.pop(job.id, None)
        self._latest[job.id] = job
        self._ready.set()

    async def get(self, timeout: float | None = None) -> list[Job]:
        """The records that arrived since the last call; [] after `timeout` seconds."""
        if not self._latest:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        jobs = list(self._latest.values())
        self._latest.clear()
        self._ready.clear()
        return jobs


class JobWatcher:
    """Polls the store while any stream listens; see the module docstring."""

    def __init__(self, store: JobStore, interval: float = 0.5) -> None:
        self.store = store
        self.interval = interval
        self.polls = 0  # store queries made, for tests and benchmarks
        self._mailboxes: set[Mailbox] = set()
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._since = utcnow() - CLOCK_MARGIN
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="job-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def subscribe(self, job_id: str | None = None) -> Iterator[Mailbox]:
        """A mailbox that receives every changed record (of `job_id`, or of all jobs)."""
        mailbox = Mailbox(job_id)
        self._mailboxes.add(mailbox)
        self._wake.set()
        try:
            yield mailbox
        finally:
            self._mailboxes.discard(mailbox)

    async def _run(self) -> None:
        while True:
            if not self._mailboxes:
                self._wake.clear()
                await self._wake.wait()
            started = time.monotonic()
            try:
                await self.poll()
            except Exception:  # the database may blink; the next poll retries
                log.exception("job watcher: polling the store failed")
            await asyncio.sleep(max(self.interval - (time.monotonic() - started), 0.05))

    async def poll(self) -> None:
        """One query, then each changed record to the mailboxes that wait for it."""
        watched = {box.job_id for box in self._mailboxes if box.job_id is not None}
        polled_at = utcnow()
        jobs = await asyncio.to_thread(changed_jobs, self.store, self._since, watched)
        self.polls += 1
        self._since = polled_at - CLOCK_MARGIN
        seen: dict[str, tuple[Any, ...]] = {}
        for job in jobs:
            fingerprint = _fingerprint(job)
            seen[job.id] = fingerprint
            if self._seen.get(job.id) != fingerprint:
                self._publish(job)
        self._seen = seen

    def _publish(self, job: Job) -> None:
        for mailbox in list(self._mailboxes):
            if mailbox.job_id is None or mailbox.job_id == job.id:
                mailbox.put(job)
