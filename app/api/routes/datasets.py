"""Datasets: the finished shard sets under the data root."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import SettingsDep
from app.errors import NotFound
from app.schemas import ErrorBody
from core import layout
from core.config import Settings
from core.names import is_valid_name

router = APIRouter(prefix="/datasets", tags=["datasets"])


class ClassEntry(BaseModel):
    index: int
    wnid: str
    label: str


class Shard(BaseModel):
    file: str
    records: int
    bytes: int


class Split(BaseModel):
    count: int
    shards: list[Shard]
    bytes: int
    per_class: dict[str, int] = Field(description="images per wnid")
    skipped: list[dict[str, str]] = Field(description="files left out, with the reason")


class Dataset(BaseModel):
    name: str
    source: str
    compression: str
    seed: int
    created_at: str
    classes: list[ClassEntry]
    splits: dict[str, Split]
    count: int
    bytes: int
    skipped: int


class DatasetList(BaseModel):
    datasets: list[Dataset]


def _dataset(manifest: dict[str, Any]) -> Dataset:
    return Dataset.model_validate({**manifest, "skipped": manifest.get("skipped_total", 0)})


def read_dataset(settings: Settings, name: str) -> Dataset:
    path = layout.manifest_path(settings, name)
    if not is_valid_name(name) or not path.is_file():
        raise NotFound(f"no dataset named {name!r}")
    return _dataset(json.loads(path.read_text()))


def list_datasets(settings: Settings) -> DatasetList:
    root = layout.datasets_root(settings)
    names = sorted(p.parent.name for p in root.glob("*/manifest.json")) if root.is_dir() else []
    return DatasetList(datasets=[read_dataset(settings, name) for name in names])


def preview(settings: Settings, name: str) -> bytes:
    read_dataset(settings, name)  # 404 before loading TensorFlow
    from worker.preview import render_preview

    return render_preview(layout.dataset_dir(settings, name))


@router.get("")
async def datasets(settings: SettingsDep) -> DatasetList:
    return await run_in_threadpool(list_datasets, settings)


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
    png = await run_in_threadpool(preview, settings, name)
    return Response(png, media_type="image/png")
