"""The FastAPI application. Nothing here imports TensorFlow; prediction loads it lazily."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.routes import aliases, datasets, health, jobs, metrics, models, predict
from app.api.routes import batch_predict as batch_predict_routes
from app.api.routes import evaluation as evaluation_routes
from app.api.routes import events as event_routes
from app.api.routes import exports as export_routes
from app.api.routes import logs as log_routes
from app.api.routes import sources as source_routes
from app.api.routes import uploads as upload_routes
from app.batching import Predictor
from app.dashboard import docs as docs_routes
from app.dashboard import router as dashboard_router
from app.errors import install_error_handlers
from app.events import JobWatcher
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
        app.state.watcher = JobWatcher(store)  # one per process: feeds every event stream
        app.state.watcher.start()
        yield
        await app.state.watcher.stop()
        await app.state.predictor.close()
        store.engine.dispose()

    app = FastAPI(
        title="tinyres",
        version="0.1.0",
        summary="Shard image datasets, train ResNets on them, classify images.",
        lifespan=lifespan,
        # /docs and /redoc are served from the package (app/dashboard/docs.py), not a CDN.
        docs_url=None,
        redoc_url=None,
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
    app.include_router(aliases.router)
    app.include_router(evaluation_routes.router)
    app.include_router(export_routes.router)
    app.include_router(batch_predict_routes.router)
    app.include_router(datasets.router)
    app.include_router(predict.router)
    app.include_router(metrics.router)
    app.include_router(event_routes.router)
    app.include_router(log_routes.router)
    app.include_router(upload_routes.router)
    app.include_router(source_routes.router)
    app.include_router(docs_routes.router)
    app.include_router(dashboard_router)
    return app


app = create_app()
