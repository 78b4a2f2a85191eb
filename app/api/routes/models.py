"""Trained models (one per succeeded train job) and a train job's curves."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ_UNAUTHORIZED, UNAUTHORIZED, Mutating, Reading, SettingsDep, StoreDep
from app.api.routes.predict import ModelCacheDep
from app.model_registry import (
    Model,
    ModelLabels,
    ModelList,
    delete_model,
    describe_model,
    history_chart_png,
    list_models,
    model_labels,
)
from app.schemas import ErrorBody

router = APIRouter(tags=["models"], dependencies=[Reading], responses=READ_UNAUTHORIZED)


@router.get("/models")
async def models(store: StoreDep, settings: SettingsDep) -> ModelList:
    """One model per succeeded train job, newest first."""
    return await run_in_threadpool(list_models, store, settings)


@router.get("/models/{model_id}", responses={404: {"model": ErrorBody}})
async def model(model_id: str, store: StoreDep, settings: SettingsDep) -> Model:
    return await run_in_threadpool(describe_model, store, settings, model_id)


@router.delete(
    "/models/{model_id}",
    status_code=204,
    dependencies=[Mutating],
    responses={
        **UNAUTHORIZED,
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "an alias points at it, or a job uses it"},
    },
)
async def remove_model(
    model_id: str, store: StoreDep, settings: SettingsDep, cache: ModelCacheDep
) -> Response:
    """Delete a model: its checkpoints, model files and exports. Its job record stays (its
    history and curves too); the model is no longer listed, described or served."""
    await run_in_threadpool(delete_model, store, settings, cache, model_id)
    return Response(status_code=204)


@router.get("/models/{model_id}/labels", responses={404: {"model": ErrorBody}})
async def labels(
    model_id: str, store: StoreDep, settings: SettingsDep, cache: ModelCacheDep
) -> ModelLabels:
    """The model's classes in output order (an alias is accepted for the id)."""
    return await run_in_threadpool(model_labels, store, settings, cache, model_id)


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
    png = await run_in_threadpool(history_chart_png, store, job_id)
    return Response(png, media_type="image/png")
