"""The job store: durable Job records in SQL (SQLite by default, PostgreSQL in production).

The broker only carries job ids; everything a client sees about a job lives here, so a
restarted API or worker, or a restarted broker, loses nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from core.job_records import (
    FINISHED_STATES,
    Claim,
    Job,
    JobAlreadyFinished,
    JobKind,
    JobNotFound,
    JobState,
    LeaseLost,
    RunningLease,
    utcnow,
)
from core.job_tables import Base, JobRow, make_engine, to_job
from core.shard_ledger import ShardLedger

# The record types live in core.job_records and core.job_tables; importing them from here
# keeps working, as "the job store" is where callers look for them.
__all__ = [
    "FINISHED_STATES",
    "Base",
    "Claim",
    "Job",
    "JobAlreadyFinished",
    "JobKind",
    "JobNotFound",
    "JobRow",
    "JobState",
    "JobStore",
    "LeaseLost",
    "RunningLease",
    "make_engine",
    "utcnow",
]


class JobStore(ShardLedger):
    """All reads and writes of Job records. Every method is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def create(self, kind: JobKind, params: dict[str, Any]) -> Job:
        row = JobRow(
            id=secrets.token_hex(8),
            kind=kind,
            state=JobState.QUEUED.value,
            params=params,
            progress={"fraction": 0.0},
            metrics={},
            history=[],
            created_at=utcnow(),
            cancel_requested=False,
            attempts=0,
        )
        with self._session() as session:
            session.add(row)
        return to_job(row)

    def get(self, job_id: str) -> Job:
        with self._session() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(job_id)
            return to_job(row)

    def list_jobs(
        self,
        kind: str | None = None,
        state: str | None = None,
        limit: int = 500,
    ) -> list[Job]:
        query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(JobRow.kind == kind)
        if state is not None:
            query = query.where(JobRow.state == state)
        with self._session() as session:
            return [to_job(row) for row in session.scalars(query)]

    def count_by_kind_state(self) -> dict[tuple[str, str], int]:
        """How many jobs there are of each (kind, state) present in the store."""
        query = select(JobRow.kind, JobRow.state, func.count()).group_by(JobRow.kind, JobRow.state)
        with self._session() as session:
            return {(kind, state): int(count) for kind, state, count in session.execute(query)}

    def running_leases(self) -> list[RunningLease]:
        """Every running job, with when its lease expires."""
        query = select(JobRow.id, JobRow.kind, JobRow.lease_expires).where(
            JobRow.state == JobState.RUNNING.value
        )
        with self._session() as session:
            return [RunningLease(i, k, e) for i, k, e in session.execute(query)]

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; ask a running one to stop (it stops itself)."""
        with self._session() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobNotFound(job_id)
            if row.state in FINISHED_STATES:
                raise JobAlreadyFinished(to_job(row))
            row.cancel_requested = True
            if row.state == JobState.QUEUED:
                row.state = JobState.CANCELLED.value
                row.finished_at = utcnow()
            return to_job(row)

    def claim(self, job_id: str, owner: str, lease_seconds: int, max_attempts: int) -> Claim:
        """Take the lease on a job so that no other worker runs it at the same time.

        A job whose lease expired (its worker died) can be claimed again; each claim counts
        as an attempt, and a job claimed more than `max_attempts` times fails for good.
        """
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        live_states = (JobState.QUEUED.value, JobState.RUNNING.value)
        with self._session() as session:
            granted = session.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.state.in_(live_states),
                    JobRow.cancel_requested.is_(False),
                    JobRow.attempts < max_attempts,
                    or_(
                        JobRow.lease_owner.is_(None),
                        JobRow.lease_owner == owner,
                        JobRow.lease_expires < now,
                    ),
                )
                .values(
                    state=JobState.RUNNING.value,
                    lease_owner=owner,
                    lease_expires=expires,
                    attempts=JobRow.attempts + 1,
                    started_at=func.coalesce(JobRow.started_at, now),
                )
            ).rowcount  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
            row = session.get(JobRow, job_id, populate_existing=True)
            if row is None:
                raise JobNotFound(job_id)
            if granted:
                return Claim(True, "claimed", to_job(row))
            if row.state in FINISHED_STATES:
                return Claim(False, f"already {row.state}", to_job(row))
            if row.cancel_requested:
                row.state = JobState.CANCELLED.value
                row.finished_at = now
                row.lease_owner = None
                return Claim(False, "cancelled before it started", to_job(row))
            if row.attempts >= max_attempts:
                row.state = JobState.FAILED.value
                row.finished_at = now
                row.lease_owner = None
                row.error = (
                    f"gave up after {row.attempts} attempts: the worker running it died each "
                    "time (out of memory or killed); see the worker log"
                )
                return Claim(False, "too many attempts", to_job(row))
            return Claim(False, f"held by {row.lease_owner}", to_job(row))

    def heartbeat(self, job_id: str, owner: str, lease_seconds: int) -> bool:
        """Renew the lease; return whether a cancel was requested. Raises if the lease is lost."""
        with self._session() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobNotFound(job_id)
            if row.lease_owner != owner:
                raise LeaseLost(job_id, owner, row.lease_owner)
            row.lease_expires = utcnow() + timedelta(seconds=lease_seconds)
            return row.cancel_requested

    def update_job(
        self,
        job_id: str,
        *,
        progress: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Replace the given fields of a job (progress is merged)."""
        with self._session() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobNotFound(job_id)
            if progress is not None:
                row.progress = {**(row.progress or {}), **progress}
            if metrics is not None:
                row.metrics = metrics
            if history is not None:
                row.history = history
            if result is not None:
                row.result = result

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Job:
        with self._session() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobNotFound(job_id)
            row.state = state.value
            row.finished_at = utcnow()
            row.lease_owner = None
            row.lease_expires = None
            if result is not None:
                row.result = result
            if error is not None:
                row.error = error
            if state == JobState.SUCCEEDED:
                row.progress = {**(row.progress or {}), "fraction": 1.0}
            return to_job(row)

    def touch(self, job_id: str, owner: str, lease_seconds: int) -> Job:
        """Renew a shared lease (the parts of a fanned-out job all hold it as one owner)."""
        with self._session() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobNotFound(job_id)
            if row.state == JobState.RUNNING:
                row.lease_owner = owner
                row.lease_expires = utcnow() + timedelta(seconds=lease_seconds)
            return to_job(row)

    def release(self, job_id: str, owner: str) -> None:
        """Give the lease back without finishing (warm shutdown: another worker continues).

        The attempt this owner's claim counted is given back too: a handed-back run did
        not fail. The job stays running with no lease, so `orphaned()` lists it at once.
        """
        with self._session() as session:
            session.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.lease_owner == owner,
                    JobRow.state == JobState.RUNNING.value,
                )
                .values(
                    lease_owner=None,
                    lease_expires=None,
                    attempts=case((JobRow.attempts > 0, JobRow.attempts - 1), else_=0),
                )
            )

    def orphaned(self) -> list[Job]:
        """Running jobs whose lease expired: their worker died and nobody is on them."""
        now = utcnow()
        query = select(JobRow).where(
            JobRow.state == JobState.RUNNING.value,
            or_(JobRow.lease_expires.is_(None), JobRow.lease_expires < now),
        )
        with self._session() as session:
            return [to_job(row) for row in session.scalars(query)]
