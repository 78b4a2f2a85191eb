"""Training a ResNet on a sharded dataset: the write-up's recipe as a resumable job.

SGD with momentum, a staircase learning rate (x`lr_decay` every `lr_decay_epoch` epochs),
L2 on the dense layer, sparse cross-entropy on logits, a checkpoint after every epoch.
Everything a client sees (progress, metrics, history) is written to the job store.
This module imports TensorFlow: only the training task imports it, inside the task.

The parameters are a `core.train_config.TrainConfig`; the callbacks live in
`worker.train_callbacks`, the checkpoint files in `worker.checkpoints`.

Resuming: a job that finds checkpoints of its own (it was redelivered after its worker
died, or handed back by a worker shutting down) continues from its newest readable one,
and fails with the reason when it has checkpoints but none can be read; otherwise
`resume_from` names another job whose checkpoint at `initial_epoch` is the start. A
checkpoint is a whole `.keras` model with its optimizer, so momentum and the iteration
count continue exactly. The learning rate is a function of the epoch alone, so it
continues too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from core import layout
from core.train_config import TrainConfig
from model.config import INPUT_SHAPE
from model.resnet import build_resnet
from worker.checkpoints import (
    atomic_keras_save,
    load_checkpoint,
    load_newest_checkpoint,
    remove_partial_files,
)
from worker.devices import configure_devices
from worker.reader import Datasets, make_datasets
from worker.recipes import compile_model, schedule_callback
from worker.runner import JobContext, JobFailed
from worker.train_callbacks import EpochCheckpoint, JobProgress

log = logging.getLogger(__name__)

SANITY_BATCHES = 10


@dataclass
class Start:
    """Where a run begins: a model (fresh or restored) and the epochs already done."""

    model: keras.Model
    initial_epoch: int
    history: list[dict[str, Any]]
    fresh: bool


def train(ctx: JobContext) -> dict[str, Any]:
    """Run a train job to the end; return the Job's `result`."""
    config = TrainConfig.model_validate(ctx.job.params)
    settings = ctx.settings
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    strategy = configure_devices(settings)
    data = make_datasets(
        layout.dataset_dir(settings, config.dataset),
        config.batch_size,
        cache_bytes=settings.reader_cache_bytes,
        seed=config.seed,
        deterministic=settings.deterministic,
    )
    # Plain dicts: the network keeps them in its config, so its .keras file carries them.
    classes = [entry.model_dump() for entry in data.classes]
    layout.checkpoints_dir(settings, ctx.job_id).mkdir(parents=True, exist_ok=True)
    layout.classes_path(settings, ctx.job_id).write_text(json.dumps(classes))

    with strategy.scope():
        start = _starting_point(ctx, config, classes)
        if start.fresh:
            compile_model(start.model, config, settings)
    model = start.model
    ctx.check_cancelled()
    if start.fresh:
        _sanity_check(ctx, model, data.val, min(SANITY_BATCHES, data.val_steps), len(classes))

    progress = JobProgress(ctx, config, data.steps_per_epoch, start.history)
    model.fit(
        data.train_epochs(start.initial_epoch, config.epochs),
        epochs=config.epochs,
        initial_epoch=start.initial_epoch,
        steps_per_epoch=data.steps_per_epoch,
        # Repeated, with validation_steps = one pass: any val_steps consecutive batches of
        # the cycle are each image exactly once. A finite val set makes Keras 3 warn that
        # it "ran out of data", and under MirroredStrategy raise StopIteration.
        validation_data=data.val.repeat(),
        validation_steps=data.val_steps,
        callbacks=_callbacks(ctx, config, progress),
        shuffle=False,  # the input pipeline shuffles, per epoch and reproducibly
        verbose=0,
    )
    _stop_unless_done(ctx, config, progress, start, data)
    result = _save_for_serving(ctx, model, classes, config)
    result["replicas"] = strategy.num_replicas_in_sync
    return result


def _callbacks(
    ctx: JobContext, config: TrainConfig, progress: JobProgress
) -> list[keras.callbacks.Callback]:
    job_dir = layout.job_dir(ctx.settings, ctx.job_id)
    return [
        schedule_callback(config),
        progress,
        EpochCheckpoint(ctx, progress),
        keras.callbacks.TensorBoard(
            log_dir=str(job_dir / "tensorboard"), write_graph=False, profile_batch=0
        ),
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


def _starting_point(ctx: JobContext, config: TrainConfig, classes: list[dict[str, Any]]) -> Start:
    remove_partial_files(ctx.settings, ctx.job_id)
    own = load_newest_checkpoint(ctx.settings, ctx.job_id)
    epochs = layout.checkpoint_epochs(ctx.settings, ctx.job_id)
    if own is None and epochs:
        # Starting over would silently throw away epochs a client saw finish: say why not.
        raise JobFailed(
            f"none of this job's checkpoints can be read (epochs {epochs}: cut short or "
            "damaged, e.g. by a full or failing disk); resubmit the job to train from the start"
        )
    if own is not None:
        epoch, model = own
        history = [h for h in ctx.store.get(ctx.job_id).history if h["epoch"] <= epoch]
        log.info("job %s: continuing from its own checkpoint at epoch %d", ctx.job_id, epoch)
        return Start(model, epoch, history, fresh=False)
    if config.resume_from is not None:
        assert config.initial_epoch is not None
        path = layout.checkpoints_dir(ctx.settings, config.resume_from) / layout.checkpoint_name(
            config.initial_epoch
        )
        model = load_checkpoint(path)
        return Start(model, config.initial_epoch, [], fresh=False)
    model = build_resnet(len(classes), config.architecture, l2=config.l2, class_names=classes)
    return Start(model, 0, [], fresh=True)


def _sanity_check(
    ctx: JobContext, model: keras.Model, val: tf.data.Dataset, steps: int, classes: int
) -> None:
    """The write-up's check: an untrained model scores about 1/classes."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    losses, hits, seen = [], 0, 0
    for images, labels in val.take(steps):
        logits = tf.cast(model(images, training=False), tf.float32)
        losses.append(float(loss(labels, logits)) * int(labels.shape[0]))
        hits += int(tf.reduce_sum(tf.cast(tf.argmax(logits, -1, tf.int32) == labels, tf.int32)))
        seen += int(labels.shape[0])
    ctx.report(
        metrics={
            "initial_accuracy": hits / max(seen, 1),
            "initial_loss": sum(losses) / max(seen, 1),
            "chance_accuracy": 1.0 / classes,
        }
    )


def _save_for_serving(
    ctx: JobContext, model: keras.Model, classes: list[dict[str, Any]], config: TrainConfig
) -> dict[str, Any]:
    """The `.keras` file POST /predict loads (class list inside) and a SavedModel export."""
    settings = ctx.settings
    path = layout.model_path(settings, ctx.job_id)
    model.class_names = [dict(c) for c in classes]
    atomic_keras_save(model, path)
    export = layout.export_dir(settings, ctx.job_id)
    tmp = export.with_name(export.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.export(
        str(tmp),
        format="tf_saved_model",
        input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32, name="images")],
        verbose=False,
    )
    shutil.rmtree(export, ignore_errors=True)
    os.replace(tmp, export)
    job = ctx.store.get(ctx.job_id)
    last = job.history[-1] if job.history else {}
    return {
        "model": ctx.job_id,
        "dataset": config.dataset,
        "classes": len(classes),
        "epochs": config.epochs,
        "model_path": str(path.relative_to(settings.resolved_data_root)),
        "saved_model_path": str(export.relative_to(settings.resolved_data_root)),
        "initial_accuracy": job.metrics.get("initial_accuracy"),
        "final_metrics": {k: v for k, v in last.items() if k != "epoch"},
    }
