"""Training a ResNet on a sharded dataset: the write-up's recipe as a resumable job.

SGD with momentum, a staircase learning rate (x`lr_decay` every `lr_decay_epoch` epochs),
L2 on the dense layer, sparse cross-entropy on logits, a checkpoint after every epoch
(`worker.recipes` has the recipes). Everything a client sees (progress, metrics,
history) is written to the job store. This module imports TensorFlow (tf.data feeds the
model under either Keras backend): only the training task imports it, inside the task.

The parameters are a `core.train_config.TrainConfig`; where a run starts is
`worker.train_start`, the callbacks are `worker.train_callbacks`, the devices, backend and
`steps_per_execution` are `worker.devices`.

The training thread never waits on the job store or the device for bookkeeping: progress
is written by a thread (`JobWatch`) from a step counter, and a stop (cancel, lease lost,
worker shutdown) is a flag Keras checks after each step. A cancel takes effect within
seconds in every phase: where the work has no safe point for longer (tracing the first
step, a large checkpoint load), the job's heartbeat records it as cancelled and the work
stops at its next safe point (`worker.runner`).

`progress.phase` says where a job is: setup, sanity_check, training, validation,
checkpoint, saving, evaluation.

The job ends with the `.keras` model file POST /predict loads (class list inside) and its
evaluation on its dataset's val split; exports are jobs of their own.

With an object store (``core/job_files.py``) the dataset is read through this host's
cache (every shard fetched and checked against its manifest, and pinned for the run), each
checkpoint is published before its epoch's history is recorded, TensorBoard's files after
each epoch, and ``classes.json`` then ``model.keras`` before the job can succeed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from core import layout
from core.files import files_for
from core.job_files import pinned_dataset
from core.storage import TruncatedObject
from core.train_config import TrainConfig
from worker.checkpoints import atomic_keras_save
from worker.devices import Placement, backend, configure_devices
from worker.evaluation_job import evaluate_trained_model
from worker.reader import Datasets, make_datasets
from worker.recipes import build_model, compile_model, schedule_callback
from worker.runner import JobContext, JobFailed
from worker.train_callbacks import EpochCheckpoint, EpochTensorBoard, JobProgress, JobWatch
from worker.train_start import Start, starting_point

log = logging.getLogger(__name__)

# What a train job's `result.evaluation` keeps of its model's Evaluation.
HEADLINE = ("model", "dataset", "split", "count", "top1", "top5", "loss", "macro")

SANITY_BATCHES = 10


def train(ctx: JobContext) -> dict[str, Any]:
    """Run a train job to the end; return the Job's `result`."""
    config = TrainConfig.model_validate(ctx.job.params)
    settings = ctx.settings
    if backend() != settings.keras_backend:
        log.warning(
            "job %s: Keras runs on %s in this process, not TINYRES_KERAS_BACKEND=%s (set "
            "before Keras was imported: start it as a worker)",
            ctx.job_id,
            backend(),
            settings.keras_backend,
        )
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    ctx.report(progress={"phase": "setup"})
    keras.utils.set_random_seed(config.seed)
    placement = configure_devices(settings)
    ctx.check_cancelled()
    try:
        with pinned_dataset(settings, config.dataset) as folder:
            return _train_on(ctx, config, placement, folder)
    except TruncatedObject as exc:
        raise JobFailed(f"dataset {config.dataset!r} cannot be read: {exc}") from exc


def _train_on(
    ctx: JobContext, config: TrainConfig, placement: Placement, folder: Path
) -> dict[str, Any]:
    """`train` once the dataset is a local folder."""
    settings = ctx.settings
    data = make_datasets(
        folder,
        config.batch_size,
        cache_bytes=settings.reader_cache_bytes,
        seed=config.seed,
        deterministic=settings.deterministic,
    )
    ctx.check_cancelled()
    # Plain dicts: the network keeps them in its config, so its .keras file carries them.
    classes = [entry.model_dump() for entry in data.classes]
    layout.checkpoints_dir(settings, ctx.job_id).mkdir(parents=True, exist_ok=True)
    layout.classes_path(settings, ctx.job_id).write_text(json.dumps(classes))

    with placement.scope():
        model = build_model(config, classes)
        compile_model(model, config, settings)
        start = starting_point(ctx, config, model)
    if start.history:
        ctx.report(history=start.history)
    progress = JobProgress(ctx, config, data.steps_per_epoch, start.history)
    with JobWatch(ctx, model) as watch:
        ctx.check_cancelled()
        if start.fresh:
            ctx.report(progress={"phase": "sanity_check"})
            _sanity_check(ctx, model, data, len(classes))
        watch.progress = progress
        model.fit(
            data.train_epochs(start.initial_epoch, config.epochs),
            epochs=config.epochs,
            initial_epoch=start.initial_epoch,
            steps_per_epoch=data.steps_per_epoch,
            # Repeated, with validation_steps = one pass: any val_steps consecutive batches
            # of the cycle are each image exactly once. A finite val set makes Keras 3 warn
            # that it "ran out of data", and under MirroredStrategy raise StopIteration.
            validation_data=data.val.repeat(),
            validation_steps=data.val_steps,
            callbacks=callbacks_of(ctx, config, progress),
            shuffle=False,  # the input pipeline shuffles, per epoch and reproducibly
            verbose=0,
        )
    _stop_unless_done(ctx, config, progress, start, data)
    ctx.report(progress={"phase": "saving"})
    path = _save_model(ctx, model, classes)
    result = _result(ctx, config, path, len(classes))
    result["replicas"] = placement.num_replicas_in_sync
    result["keras_backend"] = backend()
    ctx.check_cancelled()
    ctx.report(progress={"phase": "evaluation"})
    # An evaluation that fails fails the job, with its reason. The job keeps its headline
    # figures; the whole Evaluation (per class, confusion matrix: 40,000 counts with 200
    # classes) is GET /models/{id}/evaluation, not in every job listing and event.
    evaluation = evaluate_trained_model(ctx, path, config.dataset)
    result["evaluation"] = {key: evaluation[key] for key in HEADLINE if key in evaluation}
    files_for(settings).discard_local(path)  # in the store since `_save_model`
    return result


def callbacks_of(
    ctx: JobContext, config: TrainConfig, progress: JobProgress
) -> list[keras.callbacks.Callback]:
    """The callbacks of `fit`, in order (public: a test checks none syncs per batch)."""
    job_dir = layout.job_dir(ctx.settings, ctx.job_id)
    return [
        schedule_callback(config),
        progress,
        EpochCheckpoint(ctx, progress),
        EpochTensorBoard(log_dir=str(job_dir / "tensorboard"), settings=ctx.settings),
    ]


def _stop_unless_done(
    ctx: JobContext, config: TrainConfig, progress: JobProgress, start: Start, data: Datasets
) -> None:
    """Raise unless every epoch was trained: cancelled, lease lost, handed back or failed."""
    if ctx.cancel_requested.is_set() or ctx.lease_lost.is_set():
        ctx.check_cancelled()  # raises: cancelled (checkpoints kept) or lease lost
    last_epoch = progress.history[-1]["epoch"] if progress.history else start.initial_epoch
    if last_epoch >= config.epochs:
        return
    # Its worker is shutting down: hand it back (raises), showing the progress it will
    # continue from (the interrupted epoch is done again). A worker shutting down once
    # every epoch is done still saves the model: that takes seconds.
    if ctx.should_stop():
        ctx.report(
            progress={
                "fraction": round(last_epoch / config.epochs, 6),
                "epoch": last_epoch,
                "step": data.steps_per_epoch,
                "eta_seconds": None,
            }
        )
    ctx.check_cancelled()
    raise JobFailed(f"training stopped after epoch {last_epoch} of {config.epochs}")


def _sanity_check(ctx: JobContext, model: keras.Model, data: Datasets, classes: int) -> None:
    """The write-up's check: an untrained model scores about 1/classes.

    Keras's compiled evaluation over the first batches of the val split, in whatever dtype
    the reader ships them, under either backend; `JobWatch` stops it within a batch. It
    also traces the evaluation step validation uses later. `initial_loss` is the compiled
    loss, with the L2 term (negligible on untrained weights).
    """
    steps = min(SANITY_BATCHES, data.val_steps)
    logs = model.evaluate(data.val.repeat(), steps=steps, verbose=0, return_dict=True)
    ctx.check_cancelled()  # a stopped evaluation describes only part of the batches
    ctx.report(
        metrics={
            "initial_accuracy": float(logs["accuracy"]),
            "initial_loss": float(logs["loss"]),
            "chance_accuracy": 1.0 / classes,
        }
    )


def _save_model(ctx: JobContext, model: keras.Model, classes: list[dict[str, Any]]) -> Path:
    """The `.keras` file POST /predict loads, with its class list inside. With a store,
    ``classes.json`` and then the model are published (the local model file stays until
    the evaluation has read it)."""
    path = layout.model_path(ctx.settings, ctx.job_id)
    model.class_names = [dict(c) for c in classes]
    atomic_keras_save(model, path)
    files = files_for(ctx.settings)
    if files.remote:
        classes_file = layout.classes_path(ctx.settings, ctx.job_id)
        files.publish(classes_file)
        files.discard_local(classes_file)
        files.publish(path)
    return path


def _result(ctx: JobContext, config: TrainConfig, path: Path, classes: int) -> dict[str, Any]:
    job = ctx.store.get(ctx.job_id)
    last = job.history[-1] if job.history else {}
    return {
        "model": ctx.job_id,
        "dataset": config.dataset,
        "classes": classes,
        "epochs": config.epochs,
        "model_path": str(path.relative_to(ctx.settings.resolved_data_root)),
        "initial_accuracy": job.metrics.get("initial_accuracy"),
        "final_metrics": {k: v for k, v in last.items() if k not in ("epoch", "from_job")},
    }
