"""Trained models (one per succeeded train job) and a train job's curves."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ_UNAUTHORIZED, Reading, SettingsDep, StoreDep
from app.errors import Conflict, NotFound
from app.schemas import ErrorBody
from core import layout
from core.charts import history_png
from core.config import Settings
from core.jobs import Job, JobState, JobStore
from core.names import is_valid_name

router = APIRouter(tags=["models"], dependencies=[Reading], responses=READ_UNAUTHORIZED)


class ClassInfo(BaseModel):
    index: int
    wnid: str
    label: str


class Model(BaseModel):
    id: str
    dataset: str
    width: int
    levels: list[int]
    epochs: int
    classes: list[ClassInfo]
    metrics: dict[str, Any]
    created_at: str | None


class ModelList(BaseModel):
    models: list[Model]


def _model(settings: Settings, job: Job) -> Model:
    try:
        classes = json.loads(layout.classes_path(settings, job.id).read_text())
    except (OSError, ValueError):
        classes = []
    return Model(
        id=job.id,
        dataset=job.params["dataset"],
        width=job.params["width"],
        levels=job.params["levels"],
        epochs=job.params["epochs"],
        classes=classes,
        metrics=(job.result or {}).get("final_metrics", job.metrics),
        created_at=job.finished_at.isoformat() if job.finished_at else None,
    )


def list_models(store: JobStore, settings: Settings) -> ModelList:
    jobs = store.list_jobs(kind="train", state=JobState.SUCCEEDED.value)
    return ModelList(models=[_model(settings, job) for job in jobs])


def get_model(store: JobStore, settings: Settings, model_id: str) -> Model:
    job = _train_job(store, model_id)
    if job.state != JobState.SUCCEEDED:
        raise NotFound(f"job {model_id} has not produced a model (state {job.state.value})")
    return _model(settings, job)


def _train_job(store: JobStore, job_id: str) -> Job:
    if not is_valid_name(job_id):  # ids are names: nothing else can be one
        raise NotFound(f"no job with id {job_id[:80]!r}")
    job = store.get(job_id)
    if job.kind != "train":
        raise NotFound(f"job {job_id} is a {job.kind} job, not a train job")
    return job


@router.get("/models")
async def models(store: StoreDep, settings: SettingsDep) -> ModelList:
    """One model per succeeded train job, newest first."""
    return await run_in_threadpool(list_models, store, settings)


@router.get("/models/{model_id}", responses={404: {"model": ErrorBody}})
async def model(model_id: str, store: StoreDep, settings: SettingsDep) -> Model:
    return await run_in_threadpool(get_model, store, settings, model_id)


def _history_chart(store: JobStore, job_id: str) -> bytes:
    job = _train_job(store, job_id)
    if not job.history:
        raise Conflict(f"job {job_id} has no finished epoch yet")
    return history_png(job.history, f"job {job_id} on {job.params['dataset']}")


@router.get(
    "/jobs/{job_id}/history.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
    },
    tags=["jobs"],
)
async def history_chart(job_id: str, store: StoreDep) -> Response:
    """Loss and accuracy curves of a train job (train and validation)."""
    png = await run_in_threadpool(_history_chart, store, job_id)
    return Response(png, media_type="image/png")
