"""Batch prediction jobs: classify every image of a source into a CSV."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse
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
from app.batch_predictions import predictions_file, submit_batch_prediction
from app.schemas import ErrorBody
from core.evaluation import BatchPredictRequest
from core.jobs import Job

_SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body is not JSON text"},
    **UNAUTHORIZED,
    404: {"model": ErrorBody, "description": "unknown model or alias"},
    409: {"model": ErrorBody, "description": "no model trained yet"},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody, "description": "the broker did not take the job"},
}

router = APIRouter(
    prefix="/jobs", tags=["jobs"], dependencies=[Reading], responses=READ_UNAUTHORIZED
)


@router.post(
    "/predict",
    status_code=202,
    dependencies=[Mutating],
    responses=_SUBMIT_ERRORS,
)
async def create_predict_job(
    body: BatchPredictRequest,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    celery: CeleryDep,
) -> Job:
    """Classify every image of a folder or archive under the data root (default model: the
    newest). Unreadable files are listed in the job's `result`, never fatal."""
    job = await run_in_threadpool(submit_batch_prediction, celery, store, settings, body)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.get(
    "/{job_id}/predictions.csv",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "file,rank,class_index,wnid,label,probability",
        },
        404: {"model": ErrorBody, "description": "unknown job, not a predict job, or not finished"},
    },
)
async def predictions_csv(job_id: str, store: StoreDep, settings: SettingsDep) -> FileResponse:
    """The CSV of a succeeded predict job: `top_k` rows per image, most probable first."""
    path = await run_in_threadpool(predictions_file, store, settings, job_id)
    return FileResponse(path, media_type="text/csv", filename=f"{job_id}-predictions.csv")
