"""Evaluation: evaluate jobs, and a model's own evaluation and confusion chart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
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
from app.api.routes.predict import ModelCacheDep
from app.evaluations import confusion_chart, read_evaluation, submit_evaluation
from app.schemas import ErrorBody
from core.evaluation import EvaluateRequest, Evaluation
from core.jobs import Job

_SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body is not JSON text"},
    **UNAUTHORIZED,
    404: {"model": ErrorBody, "description": "unknown model or alias"},
    409: {"model": ErrorBody, "description": "no model trained yet"},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody, "description": "the broker did not take the job"},
}

router = APIRouter(dependencies=[Reading], responses=READ_UNAUTHORIZED)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown model, or not evaluated yet"}
}


@router.post(
    "/jobs/evaluate",
    status_code=202,
    dependencies=[Mutating],
    responses=_SUBMIT_ERRORS,
    tags=["jobs"],
)
async def create_evaluate_job(
    body: EvaluateRequest,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    celery: CeleryDep,
    cache: ModelCacheDep,
) -> Job:
    """Evaluate a model (an id or an alias) on a split of a dataset whose classes are its
    own (default: the dataset it was trained on). The job's `result` is an Evaluation."""
    job = await run_in_threadpool(submit_evaluation, celery, store, settings, cache, body)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.get("/models/{model_id}/evaluation", responses=_NOT_FOUND, tags=["models"])
async def model_evaluation(model_id: str, store: StoreDep, settings: SettingsDep) -> Evaluation:
    """The model's final weights on its own dataset's val split: top-1 (= micro precision,
    recall and F1), top-5, loss, per-class and macro scores, the confusion matrix."""
    return await run_in_threadpool(read_evaluation, store, settings, model_id)


@router.get(
    "/models/{model_id}/confusion.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **_NOT_FOUND},
    tags=["models"],
)
async def model_confusion(model_id: str, store: StoreDep, settings: SettingsDep) -> Response:
    """The confusion matrix of the model's evaluation; past 20 classes, the 20 most confused."""
    png = await run_in_threadpool(confusion_chart, store, settings, model_id)
    return Response(png, media_type="image/png")
