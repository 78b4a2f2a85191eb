"""The one Celery app. Tasks carry job ids only; the job store holds everything else.

A worker runs Keras on `TINYRES_KERAS_BACKEND` (`Settings.keras_backend`): it sets
`KERAS_BACKEND` when it starts (`celeryd_init`, in the main process before the pool
forks), so every task's first `import keras` picks it. Not when this module is imported:
the API imports it too, and serves on its own backend.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery, signals
from kombu import Queue

from core.config import Settings, settings
from core.tasks import (
    DATASETS_QUEUE,
    TASK_QUEUES,
    TRAINING_QUEUE,
)


def configure(app: Celery, config: Settings) -> None:
    """Point `app` at the broker named by `config` (or the embedded SQLite one)."""
    if config.broker_is_embedded:
        # kombu's SQLAlchemy transport hands these options to create_engine().
        transport_options: dict[str, object] = {"connect_args": {"timeout": 30}}
    else:
        # Redis redelivers an unacknowledged message after this long; it must outlast the
        # longest job, or a second worker would start a training run that is still going.
        transport_options = {"visibility_timeout": config.visibility_timeout}
    app.conf.update(
        broker_url=config.effective_broker_url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        # Job state lives in the job store: no result backend to keep in sync.
        task_ignore_result=True,
        result_backend=None,
        # A task is acknowledged only once it finishes, and requeued if its process dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A broker blip must not kill a training run (Celery 6 will default this to True);
        # a job whose worker really died is sent again by the orphan sweeper instead.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_queues=[Queue(DATASETS_QUEUE), Queue(TRAINING_QUEUE)],
        task_default_queue=DATASETS_QUEUE,
        task_routes={task: {"queue": queue} for task, queue in TASK_QUEUES.items()},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )


def create_celery(config: Settings, *, include_tasks: bool = True) -> Celery:
    """A Celery app for `config`. The API makes its own (it only publishes, by task name)."""
    app = Celery("tinyres", include=["worker.tasks"] if include_tasks else [])
    configure(app, config)
    return app


@signals.celeryd_init.connect
def _make_data_root(**_: Any) -> None:
    """A worker makes the data root when it starts (the embedded broker's file lives there);
    importing this module creates nothing."""
    settings.resolved_data_root.mkdir(parents=True, exist_ok=True)


@signals.celeryd_init.connect
def _choose_keras_backend(**_: Any) -> None:
    select_keras_backend(settings)


def select_keras_backend(config: Settings) -> None:
    """Make `config.keras_backend` the backend of this process's (future) Keras."""
    os.environ["KERAS_BACKEND"] = config.keras_backend
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != config.keras_backend:
        raise RuntimeError(
            f"Keras was imported on {keras.backend.backend()} before the worker could set "
            f"TINYRES_KERAS_BACKEND={config.keras_backend}; nothing may import it earlier"
        )


celery_app = create_celery(settings)
app = celery_app
