"""Domain exceptions mapped to HTTP once, as JSON bodies with a readable `detail`."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.broker import BrokerUnavailable
from core.jobs import JobAlreadyFinished, JobNotFound
from core.names import UnsafePathError


class ApiError(Exception):
    """An error whose status and message are decided where the fault is known."""

    status_code = 400

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Unprocessable(ApiError):
    status_code = 422


class TooLarge(ApiError):
    status_code = 413


class Unavailable(ApiError):
    status_code = 503


def _json(status_code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer (422, `detail`: the list of errors), except that the errors
        # echo the input: made JSON-safe, a NaN or a lone surrogate in a request cannot
        # turn its 422 into a 500.
        return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, 422)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(JobNotFound)
    async def _job_not_found(_: Request, exc: JobNotFound) -> JSONResponse:
        return _json(404, str(exc))

    @app.exception_handler(JobAlreadyFinished)
    async def _job_finished(_: Request, exc: JobAlreadyFinished) -> JSONResponse:
        return _json(409, str(exc))

    @app.exception_handler(UnsafePathError)
    async def _unsafe_path(_: Request, exc: UnsafePathError) -> JSONResponse:
        return _json(422, str(exc))

    @app.exception_handler(BrokerUnavailable)
    async def _broker(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        return _json(503, str(exc), {"Retry-After": "5"})
