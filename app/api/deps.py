"""Dependencies shared by the routes: settings, the job store, the API key."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from app.schemas import ErrorBody
from core.config import Settings
from core.jobs import JobStore

API_KEY_HEADER = "X-API-Key"


def app_settings(request: Request) -> Settings:
    return request.app.state.settings


def app_job_store(request: Request) -> JobStore:
    return request.app.state.store


def app_celery(request: Request) -> Celery:
    return request.app.state.celery


CeleryDep = Annotated[Celery, Depends(app_celery)]
SettingsDep = Annotated[Settings, Depends(app_settings)]
StoreDep = Annotated[JobStore, Depends(app_job_store)]

# Declared as an OpenAPI security scheme on the mutating routes, so /docs has an
# "Authorize" button and clients know which header to send.
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description="The value of TINYRES_API_KEY. Needed by every mutating request when that "
    "is set (and by reads and /predict too with TINYRES_API_KEY_READS=true).",
    auto_error=False,
)


def check_api_key(settings: Settings, supplied: str | None) -> None:
    """401 unless `supplied` is the configured key (nothing is needed when none is set)."""
    if settings.api_key is None:
        return
    # compare_digest: the time taken does not reveal how much of the key matched.
    if supplied is None or not hmac.compare_digest(supplied.encode(), settings.api_key.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or wrong {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )


def require_api_key(
    settings: SettingsDep, x_api_key: Annotated[str | None, Security(api_key_scheme)]
) -> None:
    """Guard for mutating routes: with TINYRES_API_KEY set, X-API-Key must match it."""
    check_api_key(settings, x_api_key)


def require_read_key(request: Request, settings: SettingsDep) -> None:
    """Guard for reads and /predict: only with TINYRES_API_KEY_READS=true (and a key set).

    The header is read directly (not declared in the OpenAPI schema): by default reads are
    open, and the schema describes the default.
    """
    if settings.api_key_reads:
        check_api_key(settings, request.headers.get(API_KEY_HEADER))


Mutating = Depends(require_api_key)
Reading = Depends(require_read_key)

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": f"missing or wrong {API_KEY_HEADER} header"}
}
READ_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": f"missing or wrong {API_KEY_HEADER} header (only with "
        "TINYRES_API_KEY_READS=true)",
    }
}
