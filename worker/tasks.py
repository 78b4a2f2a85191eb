"""Thin Celery tasks: they take a job id, run the real work (plain functions elsewhere)
under the job runner, and leave every outcome in the job store.

TensorFlow is imported inside the tasks only, never when this module loads.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import group
from celery.signals import worker_process_init, worker_ready, worker_shutting_down

from core.config import settings
from core.jobs import FINISHED_STATES, JobStore
from core.tasks import (
    EVALUATE_TASK,
    EXPORT_TASK,
    PREDICT_TASK,
    SHARD_PART_TASK,
    SHARD_TASK,
    TRAIN_TASK,
)
from worker.celery_app import celery_app
from worker.runner import (
    SHARD_PARTS_OWNER,
    HandBack,
    JobContext,
    describe_error,
    mark_pool_child,
    request_shutdown,
    run_job,
    shutdown_requested,
)

log = logging.getLogger(__name__)

_store: JobStore | None = None


def get_store() -> JobStore:
    global _store
    if _store is None:
        _store = JobStore(settings.effective_database_url)
        _store.create_schema()
    return _store


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # A forked child must not reuse the parent's database connections.
    if _store is not None:
        _store.engine.dispose(close=False)
    # SIGTERM sent to the child itself (systemd and others signal the whole process group)
    # hands its job back instead of killing it mid-batch.
    mark_pool_child()


@worker_shutting_down.connect
def _hand_back_running_jobs(**_: Any) -> None:
    # Sent in the worker's main process when a (warm or cold) shutdown begins. Celery's warm
    # shutdown waits for running tasks to end; this makes them end now: every running job
    # (in this process or its pool children, which share the flag) stops at its next safe
    # point, releases its lease without counting an attempt, and is sent again.
    request_shutdown()


@celery_app.task(name=TRAIN_TASK)
def train_task(job_id: str) -> None:
    run_job(
        get_store(),
        settings,
        job_id,
        _train,
        requeue=lambda: train_task.apply_async(args=[job_id]),
    )


def _train(ctx: JobContext) -> dict[str, Any]:
    # Imported once the job is claimed and its heartbeat runs: a fresh pool child takes
    # seconds to import TensorFlow, and meanwhile the job must not look abandoned.
    from worker.training import train

    return train(ctx)


@celery_app.task(name=EVALUATE_TASK)
def evaluate_task(job_id: str) -> None:
    run_job(
        get_store(),
        settings,
        job_id,
        _evaluate,
        requeue=lambda: evaluate_task.apply_async(args=[job_id]),
    )


def _evaluate(ctx: JobContext) -> dict[str, Any]:
    from worker.evaluation_job import run_evaluation

    return run_evaluation(ctx)


@celery_app.task(name=EXPORT_TASK)
def export_task(job_id: str) -> None:
    run_job(
        get_store(),
        settings,
        job_id,
        _export,
        requeue=lambda: export_task.apply_async(args=[job_id]),
    )


def _export(ctx: JobContext) -> dict[str, Any]:
    from worker.export_job import run_export

    return run_export(ctx)


@celery_app.task(name=PREDICT_TASK)
def predict_task(job_id: str) -> None:
    run_job(
        get_store(),
        settings,
        job_id,
        _predict,
        requeue=lambda: predict_task.apply_async(args=[job_id]),
    )


def _predict(ctx: JobContext) -> dict[str, Any]:
    from worker.batch_predict import run_batch_prediction

    return run_batch_prediction(ctx)


@celery_app.task(name=SHARD_TASK)
def shard_task(job_id: str) -> None:
    """Plan the shards, then fan out one task per shard; the last one to finish finalizes."""
    run_job(
        get_store(),
        settings,
        job_id,
        _plan_and_fan_out,
        finish=False,
        requeue=lambda: shard_task.apply_async(args=[job_id]),
    )


@celery_app.task(name=SHARD_PART_TASK)
def write_shard_task(job_id: str, split: str, index: int) -> None:
    # Renew the job's shared lease at once: a fresh pool child takes seconds to import
    # TensorFlow, and meanwhile the job must not look abandoned to the orphan sweeper.
    get_store().touch(job_id, SHARD_PARTS_OWNER, settings.lease_seconds)
    from worker.shard_job import write_job_shard

    write_job_shard(
        get_store(),
        settings,
        job_id,
        split,
        index,
        requeue=lambda: write_shard_task.apply_async(args=[job_id, split, index]),
    )


def _plan_and_fan_out(ctx: JobContext) -> None:
    from worker.shard_job import plan_job

    shards = plan_job(ctx)
    if shards:
        try:
            group(
                write_shard_task.si(ctx.job_id, split, index) for split, index in shards
            ).apply_async()
        except Exception as exc:  # the broker went away: not the job's fault
            raise HandBack(f"could not send its shard tasks ({describe_error(exc)})") from exc
        # From here on the shard tasks hold the job's lease together, renewing it as they work.
        ctx.store.touch(ctx.job_id, SHARD_PARTS_OWNER, ctx.settings.lease_seconds)
    else:  # every shard was already written by an earlier attempt
        from worker.shard_job import finalize_job

        finalize_job(ctx.store, ctx.settings, ctx.job_id)


_RESUBMIT = {
    "shard": shard_task,
    "train": train_task,
    "evaluate": evaluate_task,
    "export": export_task,
    "predict": predict_task,
}


def recover_orphans(store: JobStore) -> list[str]:
    """Send again every running job whose worker died (its lease expired).

    The broker may have lost the message with the worker (the embedded broker does, and
    Redis holds it until its visibility timeout); the lease in the job store makes a
    duplicate delivery harmless: only one worker at a time can claim a job.
    """
    sent = []
    for job in store.orphaned():
        if job.state in FINISHED_STATES:
            continue
        log.warning("job %s lost its worker; sending it again", job.id)
        _RESUBMIT[job.kind].apply_async(args=[job.id])
        sent.append(job.id)
    return sent


@worker_ready.connect
def _start_orphan_sweeper(**_: Any) -> None:
    def sweep() -> None:
        while True:
            time.sleep(settings.lease_seconds)
            if shutdown_requested():
                return  # the next worker sweeps; this one would only send duplicates
            try:
                recover_orphans(get_store())
            except Exception as exc:
                log.warning("orphan sweep failed: %s", describe_error(exc))

    threading.Thread(target=sweep, name="orphan-sweeper", daemon=True).start()


__all__ = [
    "evaluate_task",
    "export_task",
    "predict_task",
    "recover_orphans",
    "shard_task",
    "train_task",
    "write_shard_task",
]
