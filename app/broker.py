"""Publishing jobs to Celery and checking that the broker answers."""

from __future__ import annotations

from celery import Celery
from sqlalchemy import text

from core.config import Settings
from worker.celery_app import SHARD_TASK, TRAIN_TASK

_TASKS = {"shard": SHARD_TASK, "train": TRAIN_TASK}


class BrokerUnavailable(RuntimeError):
    """The broker did not take the message."""


def broker_answers(celery_app: Celery, settings: Settings) -> str:
    """'ok' or the reason the broker does not answer."""
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=3)
            channel = connection.default_channel
            if settings.broker_is_embedded:
                # The SQLAlchemy transport connects lazily: touch its database for real.
                channel.session.execute(text("SELECT 1"))
                channel.session.commit()
        return "ok"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}: {exc}"[:300]


def publish(celery_app: Celery, kind: str, job_id: str) -> None:
    """Send the task that runs job `job_id`; raise BrokerUnavailable if it cannot be sent."""
    try:
        celery_app.send_task(
            _TASKS[kind],
            args=[job_id],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as exc:
        raise BrokerUnavailable(f"the broker did not accept the job: {exc}") from exc
