"""Dependencies shared by the routes: settings, the job store, the API key."""

from __future__ import annotations

import hmac
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, HTTPException, Request, status

from core.config import Settings
from core.jobs import JobStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_store(request: Request) -> JobStore:
    return request.app.state.store  # type: ignore[no-any-return]


def get_celery(request: Request) -> Celery:
    return request.app.state.celery  # type: ignore[no-any-return]


CeleryDep = Annotated[Celery, Depends(get_celery)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]


def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[
        str | None, Header(description="Needed when TINYRES_API_KEY is set.")
    ] = None,
) -> None:
    """Guard for mutating routes: with TINYRES_API_KEY set, X-API-Key must match it."""
    if settings.api_key is None:
        return
    # compare_digest: the time taken does not reveal how much of the key matched.
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), settings.api_key.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong X-API-Key header",
            headers={"WWW-Authenticate": "X-API-Key"},
        )


Mutating = Depends(require_api_key)
