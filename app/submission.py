"""Accepting jobs: check everything that can be checked now, record the job, publish it.

A request that cannot succeed is refused here with a 4xx, not accepted and failed later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from celery import Celery

from app.broker import BrokerUnavailable, publish
from app.errors import Conflict, Unprocessable
from app.schemas import ShardRequest, TrainRequest
from core import layout
from core.config import Settings
from core.jobs import FINISHED_STATES, Job, JobNotFound, JobState, JobStore
from core.names import is_valid_name, is_within, resolve_under


def dataset_manifest(settings: Settings, name: str) -> Path | None:
    """The manifest file of dataset `name`, or None when it has none *inside* the data root.

    A dataset folder (or manifest) that is a symlink resolving outside the data root counts
    as absent: nothing outside the data root is read, or trained on.
    """
    if not is_valid_name(name):
        return None
    path = layout.manifest_path(settings, name)
    inside = is_within(settings.resolved_data_root, path) and is_within(
        layout.datasets_root(settings), path
    )
    return path if inside and path.is_file() else None


def submit_shard(celery: Celery, store: JobStore, settings: Settings, request: ShardRequest) -> Job:
    source = resolve_under(settings.resolved_data_root, request.source)
    try:
        exists = source.exists()
    except OSError:
        exists = False
    if not exists:
        raise Unprocessable(f"source does not exist under the data root: {request.source[:200]!r}")
    if layout.datasets_root(settings) in (source, *source.parents):
        raise Unprocessable("source must be a folder of images, not a shard set")
    target = layout.dataset_dir(settings, request.dataset)
    if (target.is_symlink() or target.exists()) and not (
        is_within(settings.resolved_data_root, target)
        and is_within(layout.datasets_root(settings), target)
    ):
        raise Unprocessable(f"dataset folder {request.dataset!r} leaves the data root")
    if dataset_manifest(settings, request.dataset) is not None and not request.overwrite:
        raise Conflict(
            f"dataset {request.dataset!r} already exists; send overwrite=true to replace it"
        )
    for job in store.list_jobs(kind="shard"):
        if job.params["dataset"] == request.dataset and job.state not in FINISHED_STATES:
            raise Conflict(f"dataset {request.dataset!r} is being written by job {job.id}")
    return _create_and_publish(celery, store, "shard", request.model_dump())


def submit_train(celery: Celery, store: JobStore, settings: Settings, request: TrainRequest) -> Job:
    if dataset_manifest(settings, request.dataset) is None:
        raise Unprocessable(f"dataset {request.dataset!r} does not exist; shard it first")
    params = request.model_dump()
    if request.resume_from is not None:
        params.update(_resume_params(store, settings, request))
    return _create_and_publish(celery, store, "train", params)


def _resume_params(store: JobStore, settings: Settings, request: TrainRequest) -> dict[str, Any]:
    """Width, levels and the start epoch of a resumed run, checked against its origin."""
    assert request.resume_from is not None
    try:
        origin = store.get(request.resume_from)
    except JobNotFound:
        raise Unprocessable(f"resume_from: no job {request.resume_from!r}") from None
    if origin.kind != "train":
        raise Unprocessable(f"resume_from: job {origin.id} is a {origin.kind} job, not train")
    for field in ("width", "levels"):
        if field in request.model_fields_set and getattr(request, field) != origin.params[field]:
            raise Unprocessable(
                f"{field} contradicts job {origin.id}, which was trained with "
                f"{field}={origin.params[field]}. Received: {field}={getattr(request, field)}"
            )
    if _class_count(settings, request.dataset) != _class_count(settings, origin.params["dataset"]):
        raise Unprocessable(
            f"dataset {request.dataset!r} has a different number of classes than "
            f"{origin.params['dataset']!r}, which job {origin.id} was trained on"
        )
    epochs = layout.checkpoint_epochs(settings, origin.id)
    if not epochs:
        raise Unprocessable(f"job {origin.id} has no checkpoint to resume from")
    initial_epoch = epochs[-1] if request.initial_epoch is None else request.initial_epoch
    if initial_epoch not in epochs:
        raise Unprocessable(
            f"job {origin.id} has no checkpoint for epoch {initial_epoch}; it has {epochs}"
        )
    if initial_epoch >= request.epochs:
        raise Unprocessable(
            f"nothing to train: the checkpoint is at epoch {initial_epoch} and epochs="
            f"{request.epochs}"
        )
    return {
        "width": origin.params["width"],
        "levels": origin.params["levels"],
        "initial_epoch": initial_epoch,
    }


def _class_count(settings: Settings, dataset: str) -> int:
    path = dataset_manifest(settings, dataset)
    try:
        if path is None:
            return -1
        return len(json.loads(path.read_text())["classes"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _create_and_publish(celery: Celery, store: JobStore, kind: str, params: dict[str, Any]) -> Job:
    job = store.create(kind, params)  # type: ignore[arg-type]
    try:
        publish(celery, kind, job.id)
    except BrokerUnavailable as exc:
        store.finish(job.id, JobState.FAILED, error=str(exc))
        raise
    return job
