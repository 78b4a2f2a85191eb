"""Prometheus metrics (text exposition); the metric names are listed in ``app.metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.metrics import METRICS_PATH, Metrics

router = APIRouter(tags=["health"])


@router.get(
    METRICS_PATH,
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus text exposition: request latencies by route template, predict batch
    sizes, jobs by kind and state, running jobs' leases, Celery queue depths, process.

    A job store or broker that does not answer within 2 s shows as `tinyres_job_store_up 0`
    or `tinyres_broker_up 0` (and no samples from it), never as an error."""
    # A plain `def`: FastAPI runs it in the thread pool, as the collectors block on I/O.
    registry: Metrics = request.app.state.metrics
    return Response(registry.scrape(), media_type=CONTENT_TYPE_LATEST)
