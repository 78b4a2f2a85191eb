"""Jobs: submit, list, inspect, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import (
    READ_UNAUTHORIZED,
    UNAUTHORIZED,
    CeleryDep,
    Mutating,
    Reading,
    SettingsDep,
    StoreDep,
)
from app.schemas import ErrorBody, JobList, ShardRequest
from app.submission import submit_shard, submit_train
from core.jobs import Job, JobKind, JobNotFound, JobState, JobStore
from core.names import is_valid_name
from core.train_config import TrainConfig

router = APIRouter(
    prefix="/jobs", tags=["jobs"], dependencies=[Reading], responses=READ_UNAUTHORIZED
)

_SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body is not JSON text"},
    **UNAUTHORIZED,
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody, "description": "the broker did not take the job"},
}


def get_known_job(store: JobStore, job_id: str) -> Job:
    """The job `job_id`; ids are names, so anything else is unknown without asking the store."""
    if not is_valid_name(job_id):
        raise JobNotFound(job_id[:80])
    return store.get(job_id)


def _cancel(store: JobStore, job_id: str) -> Job:
    get_known_job(store, job_id)
    return store.request_cancel(job_id)


@router.post("/shard", status_code=202, dependencies=[Mutating], responses=_SUBMIT_ERRORS)
async def create_shard_job(
    body: ShardRequest,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    celery: CeleryDep,
) -> Job:
    """Turn a folder (or .zip) of images into a sharded TFRecord dataset."""
    job = await run_in_threadpool(submit_shard, celery, store, settings, body)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.post("/train", status_code=202, dependencies=[Mutating], responses=_SUBMIT_ERRORS)
async def create_train_job(
    body: TrainConfig,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    celery: CeleryDep,
) -> Job:
    """Train (or resume training) a ResNet on a dataset."""
    job = await run_in_threadpool(submit_train, celery, store, settings, body)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.get("")
async def list_jobs(
    store: StoreDep,
    kind: Annotated[JobKind | None, Query()] = None,
    state: Annotated[JobState | None, Query()] = None,
) -> JobList:
    """All jobs, newest first."""
    jobs = await run_in_threadpool(
        store.list_jobs, kind, state.value if state is not None else None
    )
    return JobList(jobs=jobs)


@router.get("/{job_id}", responses={404: {"model": ErrorBody}})
async def get_job(job_id: str, store: StoreDep) -> Job:
    return await run_in_threadpool(get_known_job, store, job_id)


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Mutating],
    responses={**UNAUTHORIZED, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def cancel_job(job_id: str, store: StoreDep) -> Job:
    """Stop a job: a queued one never starts; a running one stops within seconds."""
    return await run_in_threadpool(_cancel, store, job_id)
