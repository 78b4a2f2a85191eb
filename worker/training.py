"""Training a ResNet on a sharded dataset: the write-up's recipe as a resumable job.

SGD with momentum, a staircase learning rate (x`lr_decay` every `lr_decay_epoch` epochs),
L2 on the dense layer, sparse cross-entropy on logits, a checkpoint after every epoch.
Everything a client sees (progress, metrics, history) is written to the job store.
This module imports TensorFlow: only the training task imports it, inside the task.

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
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from pydantic import BaseModel

from core import layout
from core.config import Settings
from model.config import INPUT_SHAPE, ArchitectureConfig
from model.resnet import build_resnet
from worker.devices import configure_devices, use_xla
from worker.reader import make_datasets
from worker.runner import JobContext, JobFailed

log = logging.getLogger(__name__)

SANITY_BATCHES = 10


class TrainParams(BaseModel):
    """The validated request (app.schemas.TrainRequest) as stored in the job."""

    dataset: str
    width: int
    levels: list[int]
    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    lr_decay_epoch: int
    lr_decay: float
    l2: float
    resume_from: str | None = None
    initial_epoch: int | None = None
    seed: int = 0


def staircase_learning_rate(params: TrainParams, epoch: int) -> float:
    """The write-up's schedule: lr0 * decay^floor(epoch / lr_decay_epoch), epoch 0-based."""
    return params.learning_rate * params.lr_decay ** (epoch // params.lr_decay_epoch)


@dataclass
class Start:
    """Where a run begins: a model (fresh or restored) and the epochs already done."""

    model: keras.Model
    initial_epoch: int
    history: list[dict[str, Any]]
    fresh: bool


def train(ctx: JobContext) -> dict[str, Any]:
    """Run a train job to the end; return the Job's `result`."""
    params = TrainParams.model_validate(ctx.job.params)
    settings = ctx.settings
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(params.seed)
    strategy = configure_devices(settings)
    data = make_datasets(
        layout.dataset_dir(settings, params.dataset),
        params.batch_size,
        cache_bytes=settings.reader_cache_bytes,
        seed=params.seed,
        deterministic=settings.deterministic,
    )
    classes = data.classes
    job_dir = layout.job_dir(settings, ctx.job_id)
    layout.checkpoints_dir(settings, ctx.job_id).mkdir(parents=True, exist_ok=True)
    layout.classes_path(settings, ctx.job_id).write_text(json.dumps(classes))

    with strategy.scope():
        start = _starting_point(ctx, params, classes)
        if start.fresh:
            _compile(start.model, params, settings)
    model = start.model
    ctx.check_cancelled()
    if start.fresh:
        _sanity_check(ctx, model, data.val, min(SANITY_BATCHES, data.val_steps), len(classes))

    progress = JobProgress(ctx, params, data.steps_per_epoch, start.history)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.LearningRateScheduler(
            lambda epoch, _lr: staircase_learning_rate(params, epoch)
        ),
        progress,
        EpochCheckpoint(ctx, settings.checkpoints_keep, progress),
        keras.callbacks.TensorBoard(
            log_dir=str(job_dir / "tensorboard"), write_graph=False, profile_batch=0
        ),
    ]
    model.fit(
        data.train_epochs(start.initial_epoch, params.epochs),
        epochs=params.epochs,
        initial_epoch=start.initial_epoch,
        steps_per_epoch=data.steps_per_epoch,
        # Repeated, with validation_steps = one pass: any val_steps consecutive batches of
        # the cycle are each image exactly once. A finite val set makes Keras 3 warn that
        # it "ran out of data", and under MirroredStrategy raise StopIteration.
        validation_data=data.val.repeat(),
        validation_steps=data.val_steps,
        callbacks=callbacks,
        shuffle=False,  # the input pipeline shuffles, per epoch and reproducibly
        verbose=0,
    )
    if ctx.cancel_requested.is_set() or ctx.lease_lost.is_set():
        ctx.check_cancelled()  # raises: cancelled (checkpoints kept) or lease lost
    last_epoch = progress.history[-1]["epoch"] if progress.history else start.initial_epoch
    if last_epoch < params.epochs:
        # Its worker is shutting down: hand it back (raises), showing the progress it will
        # continue from (the interrupted epoch is done again). A worker shutting down once
        # every epoch is done still saves the model: that takes seconds.
        if ctx.should_stop():
            ctx.report(
                progress={
                    "fraction": round(last_epoch / params.epochs, 6),
                    "epoch": last_epoch,
                    "step": data.steps_per_epoch,
                    "eta_seconds": None,
                }
            )
        ctx.check_cancelled()
        raise JobFailed(f"training stopped after epoch {last_epoch} of {params.epochs}")
    result = _save_for_serving(ctx, model, classes, params)
    result["replicas"] = strategy.num_replicas_in_sync
    return result


def _starting_point(ctx: JobContext, params: TrainParams, classes: list[dict[str, Any]]) -> Start:
    for leftover in layout.job_dir(ctx.settings, ctx.job_id).rglob(".tmp-*"):
        leftover.unlink()  # a checkpoint a killed attempt was writing: never complete
    own = _load_newest_checkpoint(ctx.settings, ctx.job_id)
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
    if params.resume_from is not None:
        assert params.initial_epoch is not None
        path = layout.checkpoints_dir(ctx.settings, params.resume_from) / layout.checkpoint_name(
            params.initial_epoch
        )
        model = _load_checkpoint(path)
        return Start(model, params.initial_epoch, [], fresh=False)
    arch = ArchitectureConfig(width=params.width, levels=params.levels)
    model = build_resnet(len(classes), arch, l2=params.l2, class_names=classes)
    return Start(model, 0, [], fresh=True)


def _load_checkpoint(path: Path) -> keras.Model:
    try:
        return keras.saving.load_model(path, compile=True)
    except Exception as exc:
        raise JobFailed(f"checkpoint {path.name} cannot be read: {exc}") from exc


def _load_newest_checkpoint(settings: Settings, job_id: str) -> tuple[int, keras.Model] | None:
    """The newest checkpoint that loads; a truncated one (killed mid-write) is skipped."""
    folder = layout.checkpoints_dir(settings, job_id)
    for epoch in reversed(layout.checkpoint_epochs(settings, job_id)):
        try:
            return epoch, _load_checkpoint(folder / layout.checkpoint_name(epoch))
        except JobFailed as exc:
            log.warning("job %s: %s; trying the one before", job_id, exc)
    return None


def _compile(model: keras.Model, params: TrainParams, settings: Settings) -> None:
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=params.learning_rate, momentum=params.momentum
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=use_xla(settings),
    )


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
    ctx: JobContext, model: keras.Model, classes: list[dict[str, Any]], params: TrainParams
) -> dict[str, Any]:
    """The `.keras` file POST /predict loads (class list inside) and a SavedModel export."""
    settings = ctx.settings
    path = layout.model_path(settings, ctx.job_id)
    model.class_names = [dict(c) for c in classes]
    _atomic_keras_save(model, path)
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
        "dataset": params.dataset,
        "classes": len(classes),
        "epochs": params.epochs,
        "model_path": str(path.relative_to(settings.resolved_data_root)),
        "saved_model_path": str(export.relative_to(settings.resolved_data_root)),
        "initial_accuracy": job.metrics.get("initial_accuracy"),
        "final_metrics": {k: v for k, v in last.items() if k != "epoch"},
    }


def _atomic_keras_save(model: keras.Model, path: Path) -> None:
    # Keras wants the .keras suffix; the leading dot keeps the temp file out of listings.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


class JobProgress(keras.callbacks.Callback):
    """Writes progress and metrics every few seconds, one history entry per epoch, and
    stops training when the job is cancelled. A NaN loss fails the job."""

    def __init__(
        self,
        ctx: JobContext,
        params: TrainParams,
        steps_per_epoch: int,
        history: list[dict[str, Any]],
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.train_params = params
        self.steps = steps_per_epoch
        self.history = list(history)
        self.interval = ctx.settings.progress_interval
        self.last_write = 0.0
        self.epoch = 0
        self.epoch_started = time.monotonic()
        self.seconds_per_step: float | None = None
        # Stopped before the end of an epoch (cancel, lease lost, worker shutdown): that
        # epoch is incomplete, so it gets no history entry and no checkpoint.
        self.interrupted = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch
        self.epoch_started = time.monotonic()
        self._write(step=0, logs=None)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.ctx.should_stop():
            self.model.stop_training = True
            self.interrupted = batch + 1 < self.steps
            return
        now = time.monotonic()
        if now - self.last_write >= self.interval:
            self.seconds_per_step = (now - self.epoch_started) / (batch + 1)
            self._write(step=batch + 1, logs=logs)

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.interrupted:  # Keras validates even a stopped epoch: skip that
            self.model.stop_evaluating = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.interrupted:
            return
        metrics = _floats(logs)
        if not math.isfinite(metrics.get("loss", 0.0)):
            raise JobFailed(f"the loss became {metrics.get('loss')} in epoch {epoch + 1}")
        seconds = time.monotonic() - self.epoch_started
        self.seconds_per_step = seconds / max(self.steps, 1)
        entry = {
            "epoch": epoch + 1,
            **metrics,
            "learning_rate": staircase_learning_rate(self.train_params, epoch),
            "seconds": round(seconds, 3),
        }
        entry.pop("lr", None)
        # EpochCheckpoint (next in line) writes history to the job store only once the
        # epoch's checkpoint exists, so the recorded history never runs ahead of it.
        self.history.append(entry)

    def _write(self, step: int, logs: dict[str, Any] | None) -> None:
        self.last_write = time.monotonic()
        epochs = self.train_params.epochs
        done_steps = self.epoch * self.steps + step
        fraction = min(done_steps / max(epochs * self.steps, 1), 1.0)
        eta = None
        if self.seconds_per_step is not None:
            eta = round(self.seconds_per_step * (epochs * self.steps - done_steps), 1)
        fields: dict[str, Any] = {
            "progress": {
                "fraction": round(fraction, 6),
                "epoch": self.epoch + 1,
                "epochs": epochs,
                "step": step,
                "steps": self.steps,
                "eta_seconds": eta,
            }
        }
        if logs:
            job_metrics = self.ctx.store.get(self.ctx.job_id).metrics
            fields["metrics"] = {**job_metrics, **_floats(logs)}
        self.ctx.report(**fields)


class EpochCheckpoint(keras.callbacks.Callback):
    """A whole-model checkpoint after every epoch, written atomically; keeps the newest
    `keep` and the best by val_accuracy. The epoch's history entry is committed with it."""

    def __init__(self, ctx: JobContext, keep: int, progress: JobProgress) -> None:
        super().__init__()
        self.ctx = ctx
        self.keep = keep
        self.progress = progress
        self.folder = layout.checkpoints_dir(ctx.settings, ctx.job_id)
        self.best_file = self.folder / "best.json"

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.progress.interrupted or self.ctx.lease_lost.is_set():
            return  # an incomplete epoch, or the job is another worker's now
        done = epoch + 1
        _atomic_keras_save(self.model, self.folder / layout.checkpoint_name(done))
        metrics = _floats(logs)
        best = self._best()
        if "val_accuracy" in metrics and (
            best is None or metrics["val_accuracy"] > best["val_accuracy"]
        ):
            best = {"epoch": done, "val_accuracy": metrics["val_accuracy"]}
            tmp = self.best_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(best))
            os.replace(tmp, self.best_file)
        self._prune(best["epoch"] if best else None)
        progress = self.progress
        self.ctx.report(
            history=progress.history,
            metrics={**self.ctx.store.get(self.ctx.job_id).metrics, **metrics},
            progress={
                "fraction": round(done / progress.train_params.epochs, 6),
                "epoch": done,
                "step": progress.steps,
            },
        )

    def _best(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.best_file.read_text())
        except (OSError, ValueError):
            return None

    def _prune(self, best_epoch: int | None) -> None:
        epochs = layout.checkpoint_epochs(self.ctx.settings, self.ctx.job_id)
        for epoch in epochs[: -self.keep]:
            if epoch != best_epoch:
                (self.folder / layout.checkpoint_name(epoch)).unlink(missing_ok=True)


def _floats(logs: dict[str, Any] | None) -> dict[str, float]:
    return {key: float(value) for key, value in (logs or {}).items()}
