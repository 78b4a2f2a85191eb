"""Evaluate jobs, and the evaluation every train job makes of its final model.

``run_evaluation`` is the work of a job of kind ``evaluate``: its params were resolved at
submission (``app.evaluations``) to a model id, a dataset and a split. Its result is the
``core.evaluation.Evaluation``. When it evaluates the model on its own dataset's val split,
that is also the model's own evaluation (``GET /models/{id}/evaluation``), written beside
the model.

A model's ``evaluation.json`` and ``confusion.png`` are each written to a temporary file
and renamed into place, the chart first: a reader finds the JSON only once both are
complete, and a failed or cancelled evaluation leaves nothing that looks finished. With an
object store both are then published in that order (the chart first, the JSON last), and
the model and the dataset are read through this host's cache (``core/job_files.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from core import layout
from core.config import Settings
from core.evaluation import Evaluation, SplitName
from core.files import files_for
from core.job_files import local_dataset, local_model, publish_path
from core.manifest import write_text_atomic
from core.storage import ObjectNotFound, TruncatedObject
from model.serving import LoadedModel, ModelBroken, load_model
from worker.confusion_chart import confusion_png
from worker.devices import gpus
from worker.evaluation import EvaluationError, Progress, evaluate
from worker.runner import JobContext, JobFailed

log = logging.getLogger(__name__)


def run_evaluation(ctx: JobContext) -> dict[str, Any]:
    """The work of an evaluate job: the Evaluation, as the job's result."""
    params = ctx.job.params
    model_id, dataset, split = params["model"], params["dataset"], params["split"]
    model = load_job_model(ctx.settings, model_id)
    ctx.check_cancelled()
    evaluation = _evaluate(
        ctx, model, dataset, split, _fraction_reporter(ctx, "fraction", "images")
    )
    own_dataset = ctx.store.get(model_id).params.get("dataset")
    if dataset == own_dataset and split == "val":
        write_model_evaluation(ctx.settings, evaluation)
    return evaluation.model_dump()


def evaluate_trained_model(ctx: JobContext, model_path: Path, dataset: str) -> dict[str, Any]:
    """Evaluate a train job's final model (id ``ctx.job_id``) on its dataset's val split,
    write its ``evaluation.json`` and ``confusion.png``, and return the Evaluation.

    Progress goes to the job's ``progress.evaluation`` (0..1) and
    ``progress.evaluated_images``, leaving training's ``fraction`` as it is.
    """
    model = _load(ctx.job_id, model_path)
    evaluation = _evaluate(
        ctx, model, dataset, "val", _fraction_reporter(ctx, "evaluation", "evaluated_images")
    )
    write_model_evaluation(ctx.settings, evaluation)
    return evaluation.model_dump()


def write_model_evaluation(settings: Settings, evaluation: Evaluation) -> None:
    """A model's own evaluation and confusion chart, beside its model file, atomically."""
    chart = layout.confusion_path(settings, evaluation.model)
    if files_for(settings).remote:  # this host need not hold the model's folder
        chart.parent.mkdir(parents=True, exist_ok=True)
    _write_bytes_atomic(chart, confusion_png(evaluation))
    report = layout.evaluation_path(settings, evaluation.model)
    write_text_atomic(report, evaluation.model_dump_json())
    publish_path(settings, chart)
    publish_path(settings, report)


def load_job_model(settings: Settings, model_id: str) -> LoadedModel:
    """The model a job's params name, loaded for serving; ``JobFailed`` when it is gone."""
    try:
        path = local_model(settings, model_id)
    except FileNotFoundError:
        raise JobFailed(f"model {model_id} has no model file (deleted?)") from None
    except TruncatedObject as exc:
        raise JobFailed(f"model {model_id} cannot be read: {exc}") from exc
    return _load(model_id, path)


def _load(model_id: str, path: Path) -> LoadedModel:
    for device in gpus():  # share the GPU with other jobs instead of taking all its memory
        with contextlib.suppress(RuntimeError):  # already initialised in this process
            import tensorflow as tf

            tf.config.experimental.set_memory_growth(device, True)
    try:
        return load_model(model_id, path)
    except ModelBroken as exc:
        raise JobFailed(str(exc)) from exc


def _evaluate(
    ctx: JobContext, model: LoadedModel, dataset: str, split: SplitName, report: Progress
) -> Evaluation:
    def on_batch(done: int, total: int) -> None:
        ctx.check_cancelled()  # between batches: a cancel stops it within one batch
        report(done, total)

    started = time.monotonic()
    try:
        folder = local_dataset(ctx.settings, dataset)
        evaluation = evaluate(model, folder, split, on_batch=on_batch)
    except EvaluationError as exc:
        raise JobFailed(str(exc)) from exc
    except (FileNotFoundError, ObjectNotFound, TruncatedObject) as exc:  # deleted under it
        raise JobFailed(f"dataset {dataset!r} cannot be read: {exc}") from exc
    seconds = time.monotonic() - started
    log.info(
        "evaluated model %s on %s/%s: %d images in %.2f s (%.0f images/s), top1 %.4f",
        model.id,
        dataset,
        split,
        evaluation.count,
        seconds,
        evaluation.count / max(seconds, 1e-9),
        evaluation.top1,
    )
    return evaluation


def _fraction_reporter(ctx: JobContext, key: str, images_key: str) -> Progress:
    """Reports ``progress[key]`` = images done / images (and ``progress[images_key]`` =
    images done), at most every ``progress_interval`` seconds and at the end."""
    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done < total and now - last < ctx.settings.progress_interval:
            return
        last = now
        ctx.report(progress={key: round(min(done / max(total, 1), 1.0), 6), images_key: done})

    return report


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
