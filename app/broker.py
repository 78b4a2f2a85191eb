"""The API's side of the Celery broker: publishing jobs, checking that the broker answers,
and how many messages wait in each queue."""

from __future__ import annotations

from celery import Celery
from sqlalchemy import and_, func, select, text, true

from core.config import Settings
from core.job_records import JobKind
from core.tasks import JOB_TASKS

# Seconds a Redis broker gets to connect and to answer a queue-depth question.
REDIS_SOCKET_TIMEOUT = 1.0


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


def publish(celery_app: Celery, kind: JobKind, job_id: str) -> None:
    """Send the task that runs job `job_id`; raise BrokerUnavailable if it cannot be sent."""
    try:
        celery_app.send_task(
            JOB_TASKS[kind],
            args=[job_id],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as exc:
        raise BrokerUnavailable(f"the broker did not accept the job: {exc}") from exc


def queue_names(celery_app: Celery) -> list[str]:
    return sorted(queue.name for queue in celery_app.conf.task_queues or ())


def queue_depths(celery_app: Celery, embedded: bool) -> dict[str, int]:
    """Messages waiting per configured queue, not yet delivered to a worker (blocking;
    raises if the broker fails). Redis: ``LLEN`` of the queue's lists; the embedded
    SQLAlchemy broker: visible rows of ``kombu_message`` in that ``kombu_queue``."""
    names = queue_names(celery_app)
    if embedded:
        return _sqlalchemy_depths(celery_app, names)
    options = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
    }
    with celery_app.connection_for_read(transport_options=options) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=1)
        channel = connection.default_channel
        # LLEN of the queue's list (and of its priority lists, when messages use them).
        return {name: int(channel._size(name)) for name in names}


def _sqlalchemy_depths(celery_app: Celery, names: list[str]) -> dict[str, int]:
    with celery_app.connection_for_read() as connection:
        channel = connection.default_channel
        queue, message = channel.queue_cls, channel.message_cls
        query = (
            select(queue.name, func.count(message.id))
            .select_from(queue)
            .outerjoin(message, and_(message.queue_id == queue.id, message.visible == true()))
            .where(queue.name.in_(names))
            .group_by(queue.name)
        )
        session = channel.session
        try:
            found = {name: int(count) for name, count in session.execute(query)}
        finally:
            session.close()
    return {name: found.get(name, 0) for name in names}
