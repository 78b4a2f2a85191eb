"""Accepting jobs: check everything that can be checked now, record the job, publish it.

A request that cannot succeed is refused here (``SubmissionRefused``, the API's 422, or
``SubmissionConflict``, its 409), not accepted and failed later.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.broker import BrokerUnavailable, publish
from app.dataset_catalog import DatasetNotFound, dataset_manifest, read_manifest
from app.schemas import ShardRequest
from core import layout
from core.config import Settings
from core.jobs import FINISHED_STATES, Job, JobKind, JobNotFound, JobState, JobStore
from core.names import is_within, resolve_under
from core.train_config import TrainConfig


class SubmissionRefused(ValueError):
    """The job cannot succeed as asked (a missing source or dataset, a bad resume)."""


class SubmissionConflict(RuntimeError):
    """The job collides with an existing dataset or a running job."""


def submit_shard(celery: Celery, store: JobStore, settings: Settings, request: ShardRequest) -> Job:
    source = resolve_under(settings.resolved_data_root, request.source)
    try:
        exists = source.exists()
    except OSError:
        exists = False
    if not exists:
        raise SubmissionRefused(
            f"source does not exist under the data root: {request.source[:200]!r}"
        )
    if layout.datasets_root(settings) in (source, *source.parents):
        raise SubmissionRefused("source must be a folder of images, not a shard set")
    target = layout.dataset_dir(settings, request.dataset)
    if (target.is_symlink() or target.exists()) and not (
        is_within(settings.resolved_data_root, target)
        and is_within(layout.datasets_root(settings), target)
    ):
        raise SubmissionRefused(f"dataset folder {request.dataset!r} leaves the data root")
    if dataset_manifest(settings, request.dataset) is not None and not request.overwrite:
        raise SubmissionConflict(
            f"dataset {request.dataset!r} already exists; send overwrite=true to replace it"
        )
    for job in store.list_jobs(kind="shard"):
        if job.params["dataset"] == request.dataset and job.state not in FINISHED_STATES:
            raise SubmissionConflict(
                f"dataset {request.dataset!r} is being written by job {job.id}"
            )
    return create_and_publish(celery, store, "shard", request.model_dump())


def submit_train(celery: Celery, store: JobStore, settings: Settings, request: TrainConfig) -> Job:
    if dataset_manifest(settings, request.dataset) is None:
        raise SubmissionRefused(f"dataset {request.dataset!r} does not exist; shard it first")
    params = request.model_dump()
    if request.resume_from is not None:
        params.update(_resume_params(store, settings, request))
    return create_and_publish(celery, store, "train", params)


def _resume_params(store: JobStore, settings: Settings, request: TrainConfig) -> dict[str, Any]:
    """Width, levels and the start epoch of a resumed run, checked against its origin."""
    assert request.resume_from is not None
    try:
        origin = store.get(request.resume_from)
    except JobNotFound:
        raise SubmissionRefused(f"resume_from: no job {request.resume_from!r}") from None
    if origin.kind != "train":
        raise SubmissionRefused(f"resume_from: job {origin.id} is a {origin.kind} job, not train")
    for field in ("width", "levels"):
        if field in request.model_fields_set and getattr(request, field) != origin.params[field]:
            raise SubmissionRefused(
                f"{field} contradicts job {origin.id}, which was trained with "
                f"{field}={origin.params[field]}. Received: {field}={getattr(request, field)}"
            )
    if _class_count(settings, request.dataset) != _class_count(settings, origin.params["dataset"]):
        raise SubmissionRefused(
            f"dataset {request.dataset!r} has a different number of classes than "
            f"{origin.params['dataset']!r}, which job {origin.id} was trained on"
        )
    epochs = layout.checkpoint_epochs(settings, origin.id)
    if not epochs:
        raise SubmissionRefused(f"job {origin.id} has no checkpoint to resume from")
    initial_epoch = epochs[-1] if request.initial_epoch is None else request.initial_epoch
    if initial_epoch not in epochs:
        raise SubmissionRefused(
            f"job {origin.id} has no checkpoint for epoch {initial_epoch}; it has {epochs}"
        )
    if initial_epoch >= request.epochs:
        raise SubmissionRefused(
            f"nothing to train: the checkpoint is at epoch {initial_epoch} and epochs="
            f"{request.epochs}"
        )
    return {
        "width": origin.params["width"],
        "levels": origin.params["levels"],
        "initial_epoch": initial_epoch,
    }


def _class_count(settings: Settings, dataset: str) -> int:
    try:
        return len(read_manifest(settings, dataset).classes)
    except (DatasetNotFound, OSError, ValueError):
        return -1


def create_and_publish(
    celery: Celery, store: JobStore, kind: JobKind, params: dict[str, Any]
) -> Job:
    """Record a job and send its task; a broker that is down fails the job and raises."""
    job = store.create(kind, params)
    try:
        publish(celery, kind, job.id)
    except BrokerUnavailable as exc:
        store.finish(job.id, JobState.FAILED, error=str(exc))
        raise
    return job
