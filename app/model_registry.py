"""Models by id: a model is what a succeeded train job saved, and its id is that job's id.

The service side of serving: the job store says which jobs are models, ``core.layout``
where their files are; ``model.serving`` only loads a file it is handed. With an object
store a model file is an object, fetched into this host's cache on first use
(``core/job_files.py``); models are still listed from the job store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from app.history_chart import history_png
from core import layout
from core.aliases import DELETED_AT, Alias, Aliases, AliasNotFound
from core.config import Settings
from core.job_files import delete_job_files, local_model, output_bytes
from core.jobs import Job, JobNotFound, JobState, JobStore
from core.manifest import ClassEntry
from core.names import is_valid_name
from core.storage import ObjectNotFound, TruncatedObject
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


class ModelInUse(RuntimeError):
    """The model cannot be deleted: a queued or running job uses it."""


class Model(BaseModel):
    id: str
    dataset: str
    width: int
    levels: list[int]
    epochs: int
    classes: list[ClassEntry]
    metrics: dict[str, Any]
    created_at: str | None
    aliases: list[str] = []


class ModelList(BaseModel):
    models: list[Model]


class ModelLabels(BaseModel):
    classes: list[ClassEntry]


def find_model_file(store: JobStore, settings: Settings, model_id: str | None) -> tuple[str, Path]:
    """The id and file of model ``model_id``, or of the newest model when it is None.

    Raises:
        ModelNotFound: ``model_id`` is not a succeeded train job, or its file is missing.
        NoModelYet: ``model_id`` is None and no train job has produced a model yet.
    """
    if model_id is not None:
        job = _model_job(store, model_id)
        path = _model_file(settings, job.id)
        if path is None:
            raise ModelNotFound(f"model {model_id} has no model file (deleted?)")
        return job.id, path
    succeeded = JobState.SUCCEEDED.value
    newest = store.list_jobs(kind="train", state=succeeded, limit=1)
    # Almost always the newest has its file; only when it was deleted look further back.
    for job in _chain(newest, lambda: store.list_jobs(kind="train", state=succeeded)[1:]):
        path = _model_file(settings, job.id)
        if path is not None:
            return job.id, path
    raise NoModelYet("no model trained yet: no train job has succeeded")


def _model_file(settings: Settings, job_id: str) -> Path | None:
    """The local file of the job's model (from the store through this host's cache), or
    None when it has none. A truncated model object is refused, with the reason."""
    try:
        return local_model(settings, job_id)
    except FileNotFoundError:
        return None
    except TruncatedObject as exc:
        raise ModelNotFound(f"model {job_id} cannot be read: {exc}") from exc


def _model_job(store: JobStore, name: str) -> Job:
    """The train job of model `name`: a model id, or an alias (resolved now, so a moved
    alias is seen by the next request)."""
    if not is_valid_name(name):  # ids and aliases are names; anything else cannot be one
        raise ModelNotFound(f"no model with id {name[:80]!r}")
    try:
        job = store.get(name)
    except JobNotFound:
        target = Aliases(store.engine).resolve(name)
        if target is None:
            raise ModelNotFound(f"no model or alias named {name!r}") from None
        job = store.get(target)
    if job.kind != "train" or job.state != JobState.SUCCEEDED:
        raise ModelNotFound(
            f"job {name} is not a model: a {job.kind} job in state {job.state.value}"
        )
    if _deleted(job):
        raise ModelNotFound(f"model {job.id} was deleted")
    return job


def point_alias(store: JobStore, alias: str, model: str) -> Alias:
    """Point `alias` at model `model` (an id, or an alias: resolved to its model id)."""
    return Aliases(store.engine).set(alias, _model_job(store, model).id)


def remove_alias(store: JobStore, alias: str) -> None:
    if not is_valid_name(alias):
        raise AliasNotFound(f"no alias named {alias[:80]!r}")
    Aliases(store.engine).delete(alias)


def _deleted(job: Job) -> bool:
    return DELETED_AT in (job.result or {})


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


def _saved_classes(settings: Settings, model_id: str) -> list[ClassEntry]:
    """The classes.json the train job wrote beside its model; [] when it has none."""
    name = layout.classes_path(settings, model_id).name
    try:
        return _CLASSES.validate_json(output_bytes(settings, model_id, name))
    except (OSError, ValueError, ObjectNotFound):
        return []


def _model(settings: Settings, job: Job, aliases: list[str]) -> Model:
    classes = _saved_classes(settings, job.id)
    return Model(
        id=job.id,
        dataset=job.params["dataset"],
        width=job.params["width"],
        levels=job.params["levels"],
        epochs=job.params["epochs"],
        classes=classes,
        metrics=(job.result or {}).get("final_metrics", job.metrics),
        created_at=job.finished_at.isoformat() if job.finished_at else None,
        aliases=aliases,
    )


def list_models(store: JobStore, settings: Settings) -> ModelList:
    """One model per succeeded train job whose model was not deleted, newest first."""
    jobs = store.list_jobs(kind="train", state=JobState.SUCCEEDED.value)
    aliases = Aliases(store.engine).of_models()
    return ModelList(
        models=[_model(settings, job, aliases.get(job.id, [])) for job in jobs if not _deleted(job)]
    )


def describe_model(store: JobStore, settings: Settings, model_id: str) -> Model:
    job = _existing_model(store, model_id)
    return _model(settings, job, Aliases(store.engine).of_models().get(job.id, []))


def _existing_model(store: JobStore, model_id: str) -> Job:
    """The train job `model_id` (an id, not an alias) if it has a model that was not deleted."""
    job = _train_job(store, model_id)
    if job.state != JobState.SUCCEEDED:
        raise ModelNotFound(f"job {model_id} has not produced a model (state {job.state.value})")
    if _deleted(job):
        raise ModelNotFound(f"model {model_id} was deleted")
    return job


def model_labels(store: JobStore, settings: Settings, cache: ModelCache, model: str) -> ModelLabels:
    """The classes of model `model` (an id or an alias), in output order."""
    model_id, path = find_model_file(store, settings, model)
    classes = _saved_classes(settings, model_id)
    if not classes:  # no classes.json beside it: the classes saved in the model itself
        classes = cache.get(model_id, path).class_names
    return ModelLabels(classes=classes)


def delete_model(store: JobStore, settings: Settings, cache: ModelCache, model_id: str) -> None:
    """Delete model `model_id`: its checkpoints, model files and exports (its whole job
    folder, in the store too). The job record stays, marked in its result (`deleted_at`),
    so its history remains; the model is no longer listed or served.

    Raises:
        ModelNotFound, NotATrainJob: No such model (or deleted already).
        ModelAliased: An alias points at it.
        ModelInUse: A queued or running job uses it (resumes from it, or names it).
    """
    job = _existing_model(store, model_id)
    users = [
        other.id
        for state in (JobState.QUEUED, JobState.RUNNING)
        for other in store.list_jobs(state=state.value)
        if job.id in (other.params.get("resume_from"), other.params.get("model"))
    ]
    if users:
        raise ModelInUse(f"model {job.id} is used by {', '.join(users)}; wait or cancel them")
    Aliases(store.engine).retire_model(job.id)  # from now on it is neither listed nor served
    _drop_cached(cache, job.id)
    delete_job_files(settings, job.id)  # the store's jobs/<id>/ too


def _drop_cached(cache: ModelCache, model_id: str) -> None:
    # ModelCache has no public eviction yet (model/serving.py); a deleted model is never
    # served from it anyway (find_model_file refuses it first), this frees its memory.
    with cache._lock:
        cache._models.pop(model_id, None)


def _train_job(store: JobStore, job_id: str) -> Job:
    if not is_valid_name(job_id):  # ids are names: nothing else can be one
        raise NotATrainJob(f"no job with id {job_id[:80]!r}")
    job = store.get(job_id)
    if job.kind != "train":
        raise NotATrainJob(f"job {job_id} is a {job.kind} job, not a train job")
    return job


def history_chart_png(store: JobStore, job_id: str) -> bytes:
    """Loss and accuracy curves of train job ``job_id``; a resumed job's show the whole run,
    the epochs it inherited marked with the job that trained them."""
    job = _train_job(store, job_id)
    if not job.history:
        raise NoHistoryYet(f"job {job_id} has no finished epoch yet")
    title = f"job {job_id} on {job.params['dataset']}"
    if job.params.get("resume_from"):
        title += f" (resumed from job {job.params['resume_from']})"
    return history_png(job.history, title)
