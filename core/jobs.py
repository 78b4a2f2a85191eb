"""The job store: durable Job records in SQL (SQLite by default, PostgreSQL in production).

The broker only carries job ids; everything a client sees about a job lives here, so a
restarted API or worker, or a restarted broker, loses nothing.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    case,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
JobKind = Literal["shard", "train"]


class Job(BaseModel):
    """A job as clients see it (the shape of the contract)."""

    id: str
    kind: JobKind
    state: JobState
    params: dict[str, Any]
    progress: dict[str, Any] = Field(description="At least `fraction` in [0, 1].")
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int = Field(description="How many times a worker has started this job.")
    cancel_requested: bool


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class JobUnitRow(Base):
    """Progress of one part of a fanned-out job (one shard of a shard job)."""

    __tablename__ = "job_units"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    unit: Mapped[int] = mapped_column(Integer, primary_key=True)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    finished: Mapped[bool] = mapped_column(Boolean, default=False)


class JobUnitClaimRow(Base):
    """Who is writing one part of a fanned-out job now: at most one writer per part, even
    when the broker delivers the part twice (a table of its own, so that `create_schema`
    adds it to a database made before it existed)."""

    __tablename__ = "job_unit_claims"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    unit: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires: Mapped[datetime] = mapped_column(DateTime)


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class JobAlreadyFinished(RuntimeError):
    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} already finished with state {job.state.value!r}")
        self.job = job


@dataclass(frozen=True)
class Claim:
    """The outcome of a worker asking to run a job."""

    granted: bool
    reason: str
    job: Job | None


def utcnow() -> datetime:
    # Stored naive in UTC: SQLite keeps no time zone, so every datetime is read back as UTC.
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


def _to_job(row: JobRow) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,  # type: ignore[arg-type]
        state=JobState(row.state),
        params=row.params,
        progress=row.progress or {"fraction": 0.0},
        metrics=row.metrics or {},
        history=row.history or [],
        result=row.result,
        error=row.error,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at),
        attempts=row.attempts,
        cancel_requested=row.cancel_requested,
    )


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get WAL and a busy timeout for several processes."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, future=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30}, future=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


class JobStore:
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
        return _to_job(row)

    def get(self, job_id: str) -> Job:
        with self._session() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(job_id)
            return _to_job(row)

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
            return [_to_job(row) for row in session.scalars(query)]

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; ask a running one to stop (it stops itself)."""
        with self._session() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobNotFound(job_id)
            if row.state in FINISHED_STATES:
                raise JobAlreadyFinished(_to_job(row))
            row.cancel_requested = True
            if row.state == JobState.QUEUED:
                row.state = JobState.CANCELLED.value
                row.finished_at = utcnow()
            return _to_job(row)

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
                return Claim(True, "claimed", _to_job(row))
            if row.state in FINISHED_STATES:
                return Claim(False, f"already {row.state}", _to_job(row))
            if row.cancel_requested:
                row.state = JobState.CANCELLED.value
                row.finished_at = now
                row.lease_owner = None
                return Claim(False, "cancelled before it started", _to_job(row))
            if row.attempts >= max_attempts:
                row.state = JobState.FAILED.value
                row.finished_at = now
                row.lease_owner = None
                row.error = (
                    f"gave up after {row.attempts} attempts: the worker running it died each "
                    "time (out of memory or killed); see the worker log"
                )
                return Claim(False, "too many attempts", _to_job(row))
            return Claim(False, f"held by {row.lease_owner}", _to_job(row))

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
        history: builtins.list[dict[str, Any]] | None = None,
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
            return _to_job(row)

    def touch(self, job_id: str, owner: str, lease_seconds: int) -> Job:
        """Renew a shared lease (the parts of a fanned-out job all hold it as one owner)."""
        with self._session() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobNotFound(job_id)
            if row.state == JobState.RUNNING:
                row.lease_owner = owner
                row.lease_expires = utcnow() + timedelta(seconds=lease_seconds)
            return _to_job(row)

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

    def orphaned(self) -> builtins.list[Job]:
        """Running jobs whose lease expired: their worker died and nobody is on them."""
        now = utcnow()
        query = select(JobRow).where(
            JobRow.state == JobState.RUNNING.value,
            or_(JobRow.lease_expires.is_(None), JobRow.lease_expires < now),
        )
        with self._session() as session:
            return [_to_job(row) for row in session.scalars(query)]

    def set_shard_progress(self, job_id: str, unit: int, done: int, total: int, finished: bool) -> None:
        with self._session() as session:
            row = session.get(JobUnitRow, (job_id, unit), with_for_update=True)
            if row is None:
                session.add(
                    JobUnitRow(job_id=job_id, unit=unit, done=done, total=total, finished=finished)
                )
            else:
                row.done, row.total, row.finished = done, total, finished

    def shard_progress(self, job_id: str) -> builtins.list[tuple[int, int, int, bool]]:
        query = select(JobUnitRow).where(JobUnitRow.job_id == job_id).order_by(JobUnitRow.unit)
        with self._session() as session:
            return [(u.unit, u.done, u.total, u.finished) for u in session.scalars(query)]

    def claim_shard(self, job_id: str, unit: int, owner: str, lease_seconds: int) -> str | None:
        """Take the lease on one part; None when granted, else who holds it (alive)."""
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        try:
            with self._session() as session:
                taken = session.execute(
                    update(JobUnitClaimRow)
                    .where(
                        JobUnitClaimRow.job_id == job_id,
                        JobUnitClaimRow.unit == unit,
                        or_(JobUnitClaimRow.owner == owner, JobUnitClaimRow.expires < now),
                    )
                    .values(owner=owner, expires=expires)
                ).rowcount  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
                if taken:
                    return None
                row = session.get(JobUnitClaimRow, (job_id, unit))
                if row is not None:
                    return row.owner
                session.add(JobUnitClaimRow(job_id=job_id, unit=unit, owner=owner, expires=expires))
        except IntegrityError:  # another writer inserted it first
            return "another writer"
        return None

    def renew_shard(self, job_id: str, unit: int, owner: str, lease_seconds: int) -> bool:
        """Extend this owner's lease on a part; False if it is no longer this owner's."""
        with self._session() as session:
            return bool(
                session.execute(
                    update(JobUnitClaimRow)
                    .where(
                        JobUnitClaimRow.job_id == job_id,
                        JobUnitClaimRow.unit == unit,
                        JobUnitClaimRow.owner == owner,
                    )
                    .values(expires=utcnow() + timedelta(seconds=lease_seconds))
                ).rowcount  # type: ignore[attr-defined]
            )

    def release_shard(self, job_id: str, unit: int, owner: str) -> None:
        with self._session() as session:
            session.execute(
                delete(JobUnitClaimRow).where(
                    JobUnitClaimRow.job_id == job_id,
                    JobUnitClaimRow.unit == unit,
                    JobUnitClaimRow.owner == owner,
                )
            )

    def claimed_shards(self, job_id: str) -> set[int]:
        """The parts of a job that a live writer holds now."""
        query = select(JobUnitClaimRow.unit).where(
            JobUnitClaimRow.job_id == job_id, JobUnitClaimRow.expires >= utcnow()
        )
        with self._session() as session:
            return set(session.scalars(query))


class LeaseLost(RuntimeError):
    def __init__(self, job_id: str, owner: str, holder: str | None) -> None:
        super().__init__(f"job {job_id}: lease of {owner} lost to {holder}")
