"""Resumable uploads of dataset archives: tus 1.0.0 core, `creation` and `termination`.

See app/uploads for the store and the checks; docs/UPLOADS.md for why this is our own
small implementation of the protocol rather than a library's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.api.deps import READ_UNAUTHORIZED, UNAUTHORIZED, Mutating, Reading, SettingsDep
from app.schemas import ErrorBody
from app.uploads import receive
from app.uploads.errors import (
    TusVersionUnsupported,
    UploadInvalid,
    UploadNotFound,
    UploadTooLarge,
    WrongContentType,
)
from app.uploads.metadata import parse_int_header, upload_request
from app.uploads.store import UploadRecord, UploadStore
from core.config import Settings, get_settings

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@asynccontextmanager
async def _sweep_at_start(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = getattr(app.state, "settings", None) or get_settings()
    await run_in_threadpool(UploadStore(settings).sweep)
    yield


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: {"model": ErrorBody} for code in codes}


def require_tus_resumable(
    tus_resumable: Annotated[str | None, Header(description="must be 1.0.0")] = None,
) -> None:
    if tus_resumable != TUS_VERSION:
        raise TusVersionUnsupported(
            f"Tus-Resumable must be {TUS_VERSION}. Received: {(tus_resumable or '')[:40]!r}",
            {"Tus-Version": TUS_VERSION},
        )


Tus = Depends(require_tus_resumable)
router = APIRouter(prefix="/uploads", tags=["uploads"], lifespan=_sweep_at_start)


def _store(settings: Settings) -> UploadStore:
    return UploadStore(settings)


def _record(store: UploadStore, upload_id: str) -> UploadRecord:
    if not _ID_RE.fullmatch(upload_id):
        raise UploadNotFound(f"no upload {upload_id[:64]!r}")
    return store.get(upload_id)


def _expires(record: UploadRecord) -> str:
    return formatdate(record.expires_at, usegmt=True)


def _tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", **extra}


@router.options("", status_code=204, dependencies=[Reading], responses=READ_UNAUTHORIZED)
async def tus_options(settings: SettingsDep) -> Response:
    """What this tus server supports."""
    headers = _tus_headers(
        **{
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(settings.max_upload_bytes_dataset),
        }
    )
    return Response(status_code=204, headers=headers)


@router.options(
    "/{upload_id}", status_code=204, dependencies=[Reading], responses=READ_UNAUTHORIZED
)
async def tus_options_upload(upload_id: str, settings: SettingsDep) -> Response:
    """The same answer as `OPTIONS /uploads` (tus clients may ask the upload's URL)."""
    return await tus_options(settings)


@router.post(
    "",
    status_code=201,
    dependencies=[Mutating, Tus],
    responses={**UNAUTHORIZED, **_errors(400, 409, 412, 413)},
)
async def create_upload(
    settings: SettingsDep,
    upload_length: Annotated[str | None, Header(description="the archive's size in bytes")] = None,
    upload_metadata: Annotated[
        str | None, Header(description="tus metadata: `name` and `filename`, base64")
    ] = None,
) -> Response:
    """Start an upload of a .zip, .tar or .tar.gz that becomes the source
    `uploads/{name}.{ext}` once complete and checked. 409 if the name is taken."""
    request = upload_request(upload_metadata)
    length = parse_int_header("Upload-Length", upload_length)
    if length == 0:
        raise UploadInvalid("Upload-Length must be at least 1: an empty file is not an archive")
    if length > settings.max_upload_bytes_dataset:
        raise UploadTooLarge(
            f"Upload-Length {length} is over the limit of {settings.max_upload_bytes_dataset} "
            "bytes (TINYRES_MAX_UPLOAD_BYTES_DATASET)"
        )
    record = await run_in_threadpool(_store(settings).create, request, length)
    headers = _tus_headers(Location=f"/uploads/{record.id}", **{"Upload-Expires": _expires(record)})
    return Response(status_code=201, headers=headers)


@router.head(
    "/{upload_id}",
    dependencies=[Reading, Tus],
    responses={**READ_UNAUTHORIZED, **_errors(404, 412)},
)
async def upload_offset(upload_id: str, settings: SettingsDep) -> Response:
    """How many bytes of the upload the server has: resume from `Upload-Offset`."""
    store = _store(settings)
    record = await run_in_threadpool(_record, store, upload_id)
    headers = _tus_headers(
        **{
            "Upload-Offset": str(store.offset(record)),
            "Upload-Length": str(record.length),
            "Upload-Expires": _expires(record),
        }
    )
    return Response(status_code=200, headers=headers)


@router.patch(
    "/{upload_id}",
    status_code=204,
    dependencies=[Mutating, Tus],
    responses={**UNAUTHORIZED, **_errors(400, 404, 409, 412, 413, 415, 422, 423)},
)
async def append_upload(
    upload_id: str,
    request: Request,
    settings: SettingsDep,
    upload_offset: Annotated[str | None, Header(description="where this body starts")] = None,
) -> Response:
    """Append the body at `Upload-Offset` (`Content-Type: application/offset+octet-stream`).
    The request that brings the last byte runs the archive checks: `422` with the reason if
    refused (the upload is then removed)."""
    # Transport headers, read as they are rather than documented as parameters.
    content_type = request.headers.get("content-type")
    content_length = request.headers.get("content-length")
    if (content_type or "").split(";")[0].strip().lower() != OFFSET_CONTENT_TYPE:
        raise WrongContentType(f"Content-Type must be {OFFSET_CONTENT_TYPE}")
    offset = parse_int_header("Upload-Offset", upload_offset)
    length = None if content_length is None else parse_int_header("Content-Length", content_length)
    store = _store(settings)
    _record(store, upload_id)  # 404 before reading any body
    try:
        record, new_offset = await receive.append(
            store, upload_id, offset, request.stream(), length
        )
    except ClientDisconnect:
        return Response(status_code=204)  # nobody to answer; what arrived is kept
    headers = _tus_headers(**{"Upload-Offset": str(new_offset), "Upload-Expires": _expires(record)})
    if record.source is not None:
        headers["Tinyres-Source"] = record.source
    return Response(status_code=204, headers=headers)


@router.delete(
    "/{upload_id}",
    status_code=204,
    dependencies=[Mutating, Tus],
    responses={**UNAUTHORIZED, **_errors(404, 409, 412, 423)},
)
async def terminate_upload(upload_id: str, settings: SettingsDep) -> Response:
    """Remove an unfinished upload and its bytes (tus termination). A finished upload is
    removed through its source: `DELETE /sources/uploads/{name}.{ext}`."""
    store = _store(settings)
    _record(store, upload_id)
    await receive.terminate(store, upload_id)
    return Response(status_code=204, headers=_tus_headers())
