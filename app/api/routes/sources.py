"""Sources: what POST /jobs/shard can read, on the server's disk or uploaded."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ_UNAUTHORIZED, UNAUTHORIZED, Mutating, Reading, SettingsDep, StoreDep
from app.schemas import ErrorBody
from app.uploads.catalog import delete_source, list_sources

router = APIRouter(prefix="/sources", tags=["sources"])


class Source(BaseModel):
    path: str = Field(description="relative to TINYRES_DATA_ROOT: the `source` of a shard job")
    kind: Literal["folder", "zip", "tar"]
    bytes: int
    origin: Literal["upload", "disk"] = Field(
        description='"upload": an accepted upload under uploads/; "disk": under sources/'
    )


class SourceList(BaseModel):
    sources: list[Source]


@router.get("", dependencies=[Reading], responses=READ_UNAUTHORIZED)
async def get_sources(settings: SettingsDep) -> SourceList:
    """Every source under `sources/` and `uploads/` of the data root that a shard job takes."""
    entries = await run_in_threadpool(list_sources, settings)
    return SourceList(sources=[Source(**vars(entry)) for entry in entries])


@router.delete(
    "/{path:path}",
    status_code=204,
    dependencies=[Mutating],
    responses={
        **UNAUTHORIZED,
        403: {"model": ErrorBody, "description": "a source on the server's disk, not uploaded"},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "a queued or running shard job reads it"},
    },
)
async def remove_source(path: str, settings: SettingsDep, store: StoreDep) -> Response:
    """Remove an uploaded source, e.g. `DELETE /sources/uploads/digits.zip`."""
    await run_in_threadpool(delete_source, settings, store, path)
    return Response(status_code=204)
