"""Models by id: a model is what a succeeded train job saved, and its id is that job's id.

The service side of serving: the job store says which jobs are models, ``core.layout``
where their files are; ``model.serving`` only loads a file it is handed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from core import layout
from core.charts import history_png
from core.config import Settings
from core.jobs import Job, JobNotFound, JobState, JobStore
from core.manifest import ClassEntry
from core.names import is_valid_name
from model.serving import LoadedModel, ModelCache

_CLASSES = TypeAdapter(list[ClassEntry])


class ModelNotFound(LookupError):
    """The id names no succeeded train job, or its model file is missing."""


class NoModelYet(LookupError):
    """No train job has succeeded yet, so there is no default model."""


class NotATrainJob(LookupError):
    """The id names no job, or a job that is not a train job."""


class NoHistoryYet(RuntimeError):
    """The train job has not finished an epoch yet."""


class Model(BaseModel):
    id: str
    dataset: str
    width: int
    levels: list[int]
    epochs: int
    classes: list[ClassEntry]
    metrics: dict[str, Any]
    created_at: str | None


class ModelList(BaseModel):
    models: list[Model]


def find_model_file(store: JobStore, settings: Settings, model_id: str | None) -> tuple[str, Path]:
    """The id and file of model ``model_id``, or of the newest model when it is None.

    Raises:
        ModelNotFound: ``model_id`` is not a succeeded train job, or its file is missing.
        NoModelYet: ``model_id`` is None and no train job has produced a model yet.
    """
    if model_id is not None:
        if not is_valid_name(model_id):  # ids are names; anything else cannot be one
            raise ModelNotFound(f"no model with id {model_id[:80]!r}")
        try:
            job = store.get(model_id)
        except JobNotFound:
            raise ModelNotFound(f"no model with id {model_id!r}") from None
        if job.kind != "train" or job.state != JobState.SUCCEEDED:
            raise ModelNotFound(
                f"job {model_id} is not a model: a {job.kind} job in state {job.state.value}"
            )
        path = layout.model_path(settings, job.id)
        if not path.is_file():
            raise ModelNotFound(f"model {model_id} has no model file (deleted?)")
        return job.id, path
    succeeded = JobState.SUCCEEDED.value
    newest = store.list_jobs(kind="train", state=succeeded, limit=1)
    # Almost always the newest has its file; only when it was deleted look further back.
    for job in _chain(newest, lambda: store.list_jobs(kind="train", state=succeeded)[1:]):
        path = layout.model_path(settings, job.id)
        if path.is_file():
            return job.id, path
    raise NoModelYet("no model trained yet: no train job has succeeded")


def _chain(first: Sequence[Job], rest: Callable[[], Sequence[Job]]) -> Iterator[Job]:
    yield from first
    if first:
        yield from rest()


def load_served_model(
    cache: ModelCache, store: JobStore, settings: Settings, model_id: str | None
) -> LoadedModel:
    """The loaded model ``model_id`` (default: the newest), from the cache or loaded now.

    The default is looked up in the job store on every call, so a newly trained model is
    served as soon as its job succeeds.
    """
    found_id, path = find_model_file(store, settings, model_id)
    return cache.get(found_id, path)


def _model(settings: Settings, job: Job) -> Model:
    try:
        classes = _CLASSES.validate_json(layout.classes_path(settings, job.id).read_bytes())
    except (OSError, ValueError):
        classes = []
    return Model(
        id=job.id,
        dataset=job.params["dataset"],
        width=job.params["width"],
        levels=job.params["levels"],
        epochs=job.params["epochs"],
        classes=classes,
        metrics=(job.result or {}).get("final_metrics", job.metrics),
        created_at=job.finished_at.isoformat() if job.finished_at else None,
    )


def list_models(store: JobStore, settings: Settings) -> ModelList:
    """One model per succeeded train job, newest first."""
    jobs = store.list_jobs(kind="train", state=JobState.SUCCEEDED.value)
    return ModelList(models=[_model(settings, job) for job in jobs])


def describe_model(store: JobStore, settings: Settings, model_id: str) -> Model:
    job = _train_job(store, model_id)
    if job.state != JobState.SUCCEEDED:
        raise ModelNotFound(f"job {model_id} has not produced a model (state {job.state.value})")
    return _model(settings, job)


def _train_job(store: JobStore, job_id: str) -> Job:
    if not is_valid_name(job_id):  # ids are names: nothing else can be one
        raise NotATrainJob(f"no job with id {job_id[:80]!r}")
    job = store.get(job_id)
    if job.kind != "train":
        raise NotATrainJob(f"job {job_id} is a {job.kind} job, not a train job")
    return job


def history_chart_png(store: JobStore, job_id: str) -> bytes:
    """Loss and accuracy curves of train job ``job_id``."""
    job = _train_job(store, job_id)
    if not job.history:
        raise NoHistoryYet(f"job {job_id} has no finished epoch yet")
    return history_png(job.history, f"job {job_id} on {job.params['dataset']}")
