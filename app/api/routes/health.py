"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import CeleryDep, SettingsDep, StoreDep
from app.broker import broker_answers
from core.config import Settings
from core.storage import RetryPolicy, StoreError, StoreMisconfigured, open_store

router = APIRouter(tags=["health"])

# One request, no retries: a probe wants the state now, and the prober retries itself.
_OBJECT_STORE_TIMEOUT = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "ok"}


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description='"ok", or why that part does not answer')


def object_store_answers(settings: Settings) -> str:
    """ "ok" when the object store lists its prefix; else why not (wrong bucket, bad
    credentials, not reachable)."""
    try:
        store = open_store(
            settings, retry=RetryPolicy(total_seconds=0), timeout=_OBJECT_STORE_TIMEOUT
        )
        store.check()
    except StoreMisconfigured as exc:
        return f"misconfigured: {exc}"[:400]
    except StoreError as exc:
        return f"unavailable: {exc}"[:400]
    return "ok"


@router.get(
    "/readyz",
    response_model=None,
    responses={
        200: {"model": Readiness, "description": "the job store and the broker answer"},
        503: {
            "model": Readiness,
            "description": "job store, broker or object store (when configured) not answering",
        },
    },
)
async def readyz(store: StoreDep, settings: SettingsDep, celery: CeleryDep) -> JSONResponse:
    """200 only when the job store and the broker both answer, and the object store too
    when ``TINYRES_STORAGE_URL`` is set."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(run_in_threadpool(store.ping), timeout=5)
        checks["job_store"] = "ok"
    except Exception as exc:
        checks["job_store"] = f"unavailable: {type(exc).__name__}: {exc}"[:300]
    checks["broker"] = await run_in_threadpool(broker_answers, celery, settings)
    if settings.storage_url is not None:
        try:
            checks["object_store"] = await asyncio.wait_for(
                run_in_threadpool(object_store_answers, settings), timeout=10
            )
        except TimeoutError:
            checks["object_store"] = "unavailable: no answer within 10 s"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
