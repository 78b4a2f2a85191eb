"""The FastAPI application. Nothing here imports TensorFlow; prediction loads it lazily."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.routes import datasets, health, jobs, metrics, models, predict
from app.batching import Predictor
from app.errors import install_error_handlers
from app.metrics import Metrics
from core.config import Settings, get_settings
from core.jobs import JobStore
from model.serving import ModelCache
from worker.celery_app import create_celery


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.resolved_data_root.mkdir(parents=True, exist_ok=True)
        store = JobStore(settings.effective_database_url)
        store.create_schema()
        app.state.store = store
        app.state.model_cache = ModelCache(settings.model_cache_size)
        app.state.predictor = Predictor.from_settings(
            settings, on_batch=app.state.metrics.batch_sizes.observe
        )
        yield
        await app.state.predictor.close()
        store.engine.dispose()

    app = FastAPI(
        title="tinyres",
        version="0.1.0",
        summary="Shard image datasets, train ResNets on them, classify images.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.celery = create_celery(settings, include_tasks=False)
    # Its own registry per app: request latencies, batch sizes, jobs, queues (app/metrics.py).
    app.state.metrics = Metrics()
    app.state.metrics.install(app, settings)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(models.router)
    app.include_router(datasets.router)
    app.include_router(predict.router)
    app.include_router(metrics.router)
    return app


app = create_app()
