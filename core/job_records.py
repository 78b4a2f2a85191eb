"""What a job is, as clients and workers see it: its states, its record, its errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
JobKind = Literal["shard", "train", "evaluate", "export", "predict"]


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


@dataclass(frozen=True)
class Claim:
    """The outcome of a worker asking to run a job."""

    granted: bool
    reason: str
    job: Job | None


@dataclass(frozen=True)
class RunningLease:
    """A running job and when its lease expires (None: no lease held)."""

    job_id: str
    kind: str
    expires: datetime | None


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class JobAlreadyFinished(RuntimeError):
    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} already finished with state {job.state.value!r}")
        self.job = job


class LeaseLost(RuntimeError):
    def __init__(self, job_id: str, owner: str, holder: str | None) -> None:
        super().__init__(f"job {job_id}: lease of {owner} lost to {holder}")


def utcnow() -> datetime:
    # Stored naive in UTC: SQLite keeps no time zone, so every datetime is read back as UTC.
    return datetime.now(UTC).replace(tzinfo=None)
