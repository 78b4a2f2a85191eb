"""Domain exceptions mapped to HTTP in one place, as JSON bodies with a readable `detail`.

Services and the model raise exceptions that name the fault (``ModelNotFound``,
``QueueFull``, ...), never HTTP ones; ``install_error_handlers`` gives each its status here.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.batching import PredictorClosed, QueueFull
from app.broker import BrokerUnavailable
from app.dataset_catalog import DatasetInUse, DatasetNotFound
from app.model_registry import ModelInUse, ModelNotFound, NoHistoryYet, NoModelYet, NotATrainJob
from app.multipart import BodyTooLarge, FormFieldInvalid, MalformedBody
from app.submission import SubmissionConflict, SubmissionRefused
from app.uploads.errors import (
    ArchiveRefused,
    SourceInUse,
    SourceNotDeletable,
    SourceNotFound,
    TusVersionUnsupported,
    UploadBusy,
    UploadConflict,
    UploadInvalid,
    UploadNotFound,
    UploadTooLarge,
    WrongContentType,
)
from core.aliases import AliasConflict, AliasNotFound, ModelAliased
from core.job_records import JobAlreadyFinished, JobNotFound
from core.names import UnsafePathError
from core.storage import StoreMisconfigured, StoreUnavailable, TruncatedObject
from model.serving import BadImage, ImageTooLarge, ModelBroken

RETRY_AFTER_SECONDS = 5

# Each domain exception's status; a subclass gets its nearest listed base's.
STATUS_CODES: dict[type[Exception], int] = {
    MalformedBody: 400,
    BadImage: 400,
    JobNotFound: 404,
    NotATrainJob: 404,
    ModelNotFound: 404,
    DatasetNotFound: 404,
    JobAlreadyFinished: 409,
    NoModelYet: 409,
    NoHistoryYet: 409,
    SubmissionConflict: 409,
    BodyTooLarge: 413,
    ImageTooLarge: 413,
    FormFieldInvalid: 422,
    SubmissionRefused: 422,
    UnsafePathError: 422,
    ModelBroken: 500,
    BrokerUnavailable: 503,
    StoreUnavailable: 503,
    StoreMisconfigured: 503,
    # A damaged object in the store: not trusted, and not the client's fault; it passes
    # once the object is rewritten (a re-run job) or removed.
    TruncatedObject: 503,
    QueueFull: 503,
    PredictorClosed: 503,
    # Uploads (tus) and sources: app/uploads/errors.py.
    UploadInvalid: 400,
    SourceNotDeletable: 403,
    UploadNotFound: 404,
    SourceNotFound: 404,
    UploadConflict: 409,
    SourceInUse: 409,
    TusVersionUnsupported: 412,
    UploadTooLarge: 413,
    WrongContentType: 415,
    ArchiveRefused: 422,
    UploadBusy: 423,
    # Aliases and deletions: core/aliases.py, app/model_registry.py, app/dataset_catalog.py.
    AliasNotFound: 404,
    AliasConflict: 409,
    ModelAliased: 409,
    ModelInUse: 409,
    DatasetInUse: 409,
}


def status_code_of(exc: Exception) -> int:
    """The HTTP status that answers `exc` (500 for one not listed)."""
    for kind in type(exc).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return 500


def headers_of(exc: Exception) -> dict[str, str] | None:
    """`Retry-After` for the faults that pass (a full queue, a broker, a shutdown), and the
    headers an exception carries itself (a `headers` dict)."""
    own = getattr(exc, "headers", None)
    if isinstance(own, dict) and own:
        return own
    if isinstance(exc, QueueFull):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, BrokerUnavailable | PredictorClosed):
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return None


def json_safe(value: Any) -> Any:
    """`value` with what JSON cannot carry replaced: NaN and the infinities (which Python's
    json parser accepts in requests) become strings, and lone surrogates (which a JSON
    `\\ud800` escape yields) become backslash escapes."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own answer (422, `detail`: the list of errors), except that the errors
    # echo the input: made JSON-safe, a NaN or a lone surrogate in a request cannot
    # turn its 422 into a 500.
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, 422)


async def _http_error(request: Request, exc: Exception) -> Response:
    # A 405 names in `Allow` every method of the path template that answered: Starlette
    # names only those of its first route (GET /models/{id}, not DELETE /models/{id}). The
    # template is the most specific one that matches: /jobs/evaluate, not /jobs/{job_id}.
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        routes = [r for r in iter_route_contexts(request.app.routes) if r.path is not None]
        path = request.url.path
        templates = [r.path for r in routes if r.path and r.path_regex.match(path)]
        matched = min(templates, key=lambda t: t.count("{"), default=None)
        methods = {m for r in routes if r.path == matched for m in r.methods or ()}
        if methods:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
    return await http_exception_handler(request, exc)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc)}, status_code=status_code_of(exc), headers=headers_of(exc)
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for kind in STATUS_CODES:
        app.add_exception_handler(kind, _domain_error)
