"""Exports of a model: SavedModel, ONNX and LiteRT artifacts, each checked before offered."""

from __future__ import annotations

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
from app.exports import ExportRequest, export_file, model_exports, submit_export
from app.schemas import ErrorBody
from core.jobs import Job
from worker.exports.formats import ExportFormat, ExportList

router = APIRouter(tags=["models"], dependencies=[Reading], responses=READ_UNAUTHORIZED)


@router.post(
    "/models/{model_id}/exports",
    status_code=202,
    dependencies=[Mutating],
    responses={
        400: {"model": ErrorBody, "description": "the body is not JSON text"},
        **UNAUTHORIZED,
        404: {"model": ErrorBody, "description": "no such model or alias"},
        422: {"model": ErrorBody, "description": "an unknown format, or the dataset is gone"},
        503: {"model": ErrorBody, "description": "the broker did not take the job"},
    },
)
async def create_export(
    model_id: str,
    body: ExportRequest,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    celery: CeleryDep,
) -> Job:
    """Export a model (an id or an alias) as a job: the artifact takes uint8 images
    `[N, 64, 64, 3]`, returns probabilities, and is offered only once its own runtime
    agrees with the served model on at least 99% of the val split."""
    job = await run_in_threadpool(submit_export, celery, store, settings, model_id, body)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.get("/models/{model_id}/exports", responses={404: {"model": ErrorBody}})
async def exports(model_id: str, store: StoreDep, settings: SettingsDep) -> ExportList:
    """The model's checked exports, with their size and agreement."""
    return await run_in_threadpool(model_exports, store, settings, model_id)


@router.get(
    "/models/{model_id}/exports/{export_format}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}, "application/octet-stream": {}}},
        404: {"model": ErrorBody, "description": "no such model, or not exported"},
    },
)
async def download_export(
    model_id: str, export_format: ExportFormat, store: StoreDep, settings: SettingsDep
) -> FileResponse:
    """The artifact: `saved_model` a `.zip`, `onnx` a `.onnx`, `litert` a `.tflite`."""
    found = await run_in_threadpool(export_file, store, settings, model_id, export_format)
    return FileResponse(found.path, media_type=found.media_type, filename=found.filename)
