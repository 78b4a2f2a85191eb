"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import CeleryDep, SettingsDep, StoreDep
from app.broker import broker_answers

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "ok"}


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description='"ok", or why that part does not answer')


@router.get(
    "/readyz",
    response_model=None,
    responses={
        200: {"model": Readiness, "description": "the job store and the broker answer"},
        503: {"model": Readiness, "description": "job store or broker not answering"},
    },
)
async def readyz(store: StoreDep, settings: SettingsDep, celery: CeleryDep) -> JSONResponse:
    """200 only when the job store and the broker both answer."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(run_in_threadpool(store.ping), timeout=5)
        checks["job_store"] = "ok"
    except Exception as exc:
        checks["job_store"] = f"unavailable: {type(exc).__name__}: {exc}"[:300]
    checks["broker"] = await run_in_threadpool(broker_answers, celery, settings)
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
