"""Accepting jobs: check everything that can be checked now, record the job, publish it.

A request that cannot succeed is refused here (``SubmissionRefused``, the API's 422, or
``SubmissionConflict``, its 409), not accepted and failed later.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.broker import BrokerUnavailable, publish
from app.dataset_catalog import DatasetNotFound, dataset_exists, read_manifest
from app.schemas import ShardRequest
from core import layout
from core.config import Settings
from core.files import files_for
from core.job_files import stored_checkpoint_epochs
from core.jobs import FINISHED_STATES, Job, JobKind, JobNotFound, JobState, JobStore
from core.names import is_within, resolve_under
from core.train_config import TrainConfig


class SubmissionRefused(ValueError):
    """The job cannot succeed as asked (a missing source or dataset, a bad resume)."""


class SubmissionConflict(RuntimeError):
    """The job collides with an existing dataset or a running job."""


def submit_shard(celery: Celery, store: JobStore, settings: Settings, request: ShardRequest) -> Job:
    source = resolve_under(settings.resolved_data_root, request.source)
    files = files_for(settings)
    try:
        # With an object store: an object (an archive) or a prefix (a folder) there.
        exists = files.exists_any(files.key_of(source)) if files.remote else source.exists()
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
    if dataset_exists(settings, request.dataset) and not request.overwrite:
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
    if not dataset_exists(settings, request.dataset):
        raise SubmissionRefused(f"dataset {request.dataset!r} does not exist; shard it first")
    params = request.model_dump()
    if request.resume_from is not None:
        params.update(_resume_params(store, settings, request))
    return create_and_publish(celery, store, "train", params)


# What a resumed job never takes from its origin: what names the run, and where it starts.
NOT_INHERITED = frozenset({"dataset", "preset", "resume_from", "initial_epoch"})
# Compiled into the origin's checkpoint (the network's config, its optimizer and loss), so
# a resumed job cannot change them: a different value would be silently ignored.
IN_CHECKPOINT = ("width", "levels", "recipe", "momentum", "l2", "label_smoothing", "weight_decay")


def _resume_params(store: JobStore, settings: Settings, request: TrainConfig) -> dict[str, Any]:
    """The params of a resumed run: every hyper-parameter of its origin that the request
    does not set itself (its own fields, and those its preset or recipe fills in), and the
    start epoch, checked against the origin."""
    assert request.resume_from is not None
    try:
        origin = store.get(request.resume_from)
    except JobNotFound:
        raise SubmissionRefused(f"resume_from: no job {request.resume_from!r}") from None
    if origin.kind != "train":
        raise SubmissionRefused(f"resume_from: job {origin.id} is a {origin.kind} job, not train")
    inherited = _origin_values(origin)
    explicit = request.model_fields_set
    for field in IN_CHECKPOINT:
        if field in explicit and getattr(request, field) != inherited[field]:
            raise SubmissionRefused(
                f"{field} contradicts job {origin.id}, which was trained with "
                f"{field}={inherited[field]} (its checkpoint holds it). "
                f"Received: {field}={getattr(request, field)}"
            )
    merged = {
        **request.model_dump(),
        **{key: value for key, value in inherited.items() if key not in explicit},
    }
    if _class_count(settings, request.dataset) != _class_count(settings, origin.params["dataset"]):
        raise SubmissionRefused(
            f"dataset {request.dataset!r} has a different number of classes than "
            f"{origin.params['dataset']!r}, which job {origin.id} was trained on"
        )
    epochs = stored_checkpoint_epochs(settings, origin.id)
    if not epochs:
        raise SubmissionRefused(f"job {origin.id} has no checkpoint to resume from")
    initial_epoch = epochs[-1] if request.initial_epoch is None else request.initial_epoch
    if initial_epoch not in epochs:
        raise SubmissionRefused(
            f"job {origin.id} has no checkpoint for epoch {initial_epoch}; it has {epochs}"
        )
    if initial_epoch >= merged["epochs"]:
        raise SubmissionRefused(
            f"nothing to train: the checkpoint is at epoch {initial_epoch} and epochs="
            f"{merged['epochs']}"
        )
    merged["initial_epoch"] = initial_epoch
    # Validated again: the inherited values together must still be a valid config.
    try:
        return TrainConfig.model_validate(merged).model_dump()
    except ValueError as exc:
        raise SubmissionRefused(f"resuming job {origin.id}: {exc}") from None


def _origin_values(origin: Job) -> dict[str, Any]:
    """The origin's hyper-parameters; a field its record predates has today's default
    (the write-up's, which is what such a job trained with)."""
    values = {}
    for name, field in TrainConfig.model_fields.items():
        if name in NOT_INHERITED:
            continue
        default = field.get_default(call_default_factory=True)
        values[name] = origin.params.get(name, default)
    return values


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
