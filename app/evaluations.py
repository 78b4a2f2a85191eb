"""Evaluations: accepting evaluate jobs, and reading a model's own evaluation.

An evaluate job is checked here, before it is queued: an unknown model or alias answers
404 (as ``/predict`` does), a dataset that does not exist or whose classes are not the
model's (by wnid, in order) 422 (``SubmissionRefused``). The model is resolved now, so the
job evaluates the model the alias named when it was submitted; its params keep both. A
model's own evaluation is read from the store (``core/job_files.py``).
"""

from __future__ import annotations

from celery import Celery

from app.dataset_catalog import DatasetNotFound, read_manifest
from app.model_registry import ModelNotFound, find_model_file, model_labels
from app.submission import SubmissionRefused, create_and_publish
from core import layout
from core.config import Settings
from core.evaluation import EvaluateRequest, Evaluation, class_mismatch
from core.job_files import output_bytes, output_exists
from core.jobs import Job, JobStore
from core.manifest import Manifest
from model.serving import ModelCache


class EvaluationNotFound(ModelNotFound):
    """The model has no evaluation yet (answered 404, like an unknown model)."""


def submit_evaluation(
    celery: Celery, store: JobStore, settings: Settings, cache: ModelCache, request: EvaluateRequest
) -> Job:
    model_id, _ = find_model_file(store, settings, request.model)
    dataset = request.dataset or store.get(model_id).params["dataset"]
    manifest = _manifest(settings, dataset)
    wnids = [entry.wnid for entry in model_labels(store, settings, cache, model_id).classes]
    reason = class_mismatch(wnids, [entry.wnid for entry in manifest.classes])
    if reason is not None:
        raise SubmissionRefused(
            f"dataset {dataset!r} has other classes than model {model_id} (by wnid): {reason}"
        )
    _check_split(manifest, request.split)
    params = {
        "model": model_id,
        "requested_model": request.model,
        "dataset": dataset,
        "split": request.split,
    }
    return create_and_publish(celery, store, "evaluate", params)


def _manifest(settings: Settings, dataset: str) -> Manifest:
    try:
        return read_manifest(settings, dataset)
    except DatasetNotFound:
        raise SubmissionRefused(f"dataset {dataset!r} does not exist") from None
    except (OSError, ValueError):
        raise SubmissionRefused(f"dataset {dataset!r} cannot be read (damaged manifest)") from None


def _check_split(manifest: Manifest, split: str) -> None:
    train = manifest.split("train")
    val = manifest.split("val")
    # Without a val split, "val" is the part of the train split training holds out.
    present = val if split == "val" and val is not None and val.count > 0 else train
    if present is None or present.count == 0:
        raise SubmissionRefused(f"dataset {manifest.name!r} has no images in its {split} split")


def read_evaluation(store: JobStore, settings: Settings, model: str) -> Evaluation:
    """The evaluation of model ``model`` (an id or an alias) on its own dataset's val split.

    Raises:
        ModelNotFound: No such model.
        EvaluationNotFound: It has not been evaluated (yet).
    """
    model_id, _ = find_model_file(store, settings, model)
    try:
        text = output_bytes(settings, model_id, layout.evaluation_path(settings, model_id).name)
    except FileNotFoundError:
        raise EvaluationNotFound(
            f"model {model_id} has no evaluation yet; POST /jobs/evaluate makes one"
        ) from None
    return Evaluation.model_validate_json(text)


def confusion_chart(store: JobStore, settings: Settings, model: str) -> bytes:
    """The PNG of the confusion matrix of the model's own evaluation."""
    model_id, _ = find_model_file(store, settings, model)
    # evaluation.json is written after the chart: only with it is the chart complete.
    if not output_exists(settings, model_id, layout.evaluation_path(settings, model_id).name):
        raise EvaluationNotFound(f"model {model_id} has no evaluation yet")
    try:
        return output_bytes(settings, model_id, layout.confusion_path(settings, model_id).name)
    except FileNotFoundError:
        raise EvaluationNotFound(f"model {model_id} has no confusion chart") from None
