"""Datasets: the finished shard sets under the data root."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ_UNAUTHORIZED, UNAUTHORIZED, Mutating, Reading, SettingsDep, StoreDep
from app.dataset_catalog import (
    Dataset,
    DatasetList,
    all_datasets,
    dataset_preview_png,
    delete_dataset,
    read_dataset,
)
from app.schemas import ErrorBody

router = APIRouter(
    prefix="/datasets", tags=["datasets"], dependencies=[Reading], responses=READ_UNAUTHORIZED
)


@router.get("")
async def datasets(settings: SettingsDep) -> DatasetList:
    """Every finished dataset; `bytes` is its disk use (the sum of its shard files)."""
    return await run_in_threadpool(all_datasets, settings)


@router.get("/{name}", responses={404: {"model": ErrorBody}})
async def dataset(name: str, settings: SettingsDep) -> Dataset:
    return await run_in_threadpool(read_dataset, settings, name)


@router.get(
    "/{name}/preview.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorBody}},
)
async def dataset_preview(name: str, settings: SettingsDep) -> Response:
    """A grid of preprocessed training images labelled with their class names."""
    png = await run_in_threadpool(dataset_preview_png, settings, name)
    return Response(png, media_type="image/png")


@router.delete(
    "/{name}",
    status_code=204,
    dependencies=[Mutating],
    responses={
        **UNAUTHORIZED,
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "a queued or running job uses it"},
    },
)
async def remove_dataset(name: str, settings: SettingsDep, store: StoreDep) -> Response:
    """Delete a dataset: its manifest first (it stops being listed), then its shards."""
    await run_in_threadpool(delete_dataset, settings, store, name)
    return Response(status_code=204)
