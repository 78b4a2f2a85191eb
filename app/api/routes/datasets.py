"""Datasets: the finished shard sets under the data root."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ_UNAUTHORIZED, Reading, SettingsDep
from app.errors import NotFound
from app.schemas import ErrorBody
from app.submission import dataset_manifest
from core import layout
from core.config import Settings

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/datasets", tags=["datasets"], dependencies=[Reading], responses=READ_UNAUTHORIZED
)


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
    path = dataset_manifest(settings, name)
    if path is None:
        raise NotFound(f"no dataset named {name[:80]!r}")
    return _dataset(json.loads(path.read_text()))


def list_datasets(settings: Settings) -> DatasetList:
    """Every readable dataset; a folder that is not one (a bad name, a symlink out of the
    data root, a broken manifest) is left out, so it cannot break the listing."""
    root = layout.datasets_root(settings)
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    datasets = []
    for name in names:
        try:
            datasets.append(read_dataset(settings, name))
        except NotFound:
            continue
        except (OSError, ValueError) as exc:  # ValueError: bad JSON, or not a manifest
            log.warning("dataset %r left out of the listing: %s", name, exc)
    return DatasetList(datasets=datasets)


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
