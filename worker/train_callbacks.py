"""The Keras callbacks of a train job: progress in the job store, and a checkpoint per epoch.

`JobProgress` writes progress and metrics every few seconds and one history entry per
epoch, and stops training when the job must stop; `EpochCheckpoint` (after it) saves the
epoch's checkpoint and only then commits the epoch's history, so the recorded history never
runs ahead of the checkpoints. This module imports Keras: only the training task imports it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras

from core.train_config import TrainConfig
from worker.checkpoints import save_checkpoint
from worker.runner import JobContext, JobFailed

# Train steps left out of the step-time mean: the first steps of a run trace and compile.
WARMUP_STEPS = 3


class JobProgress(keras.callbacks.Callback):
    """Writes progress and metrics every few seconds, one history entry per epoch, and
    stops training when the job is cancelled. A NaN loss fails the job."""

    def __init__(
        self,
        ctx: JobContext,
        config: TrainConfig,
        steps_per_epoch: int,
        history: list[dict[str, Any]],
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.config = config
        self.steps = steps_per_epoch
        self.history = list(history)
        self.interval = ctx.settings.progress_interval
        self.last_write = 0.0
        self.epoch = 0
        self.epoch_started = time.monotonic()
        self.seconds_per_step: float | None = None
        # Honest ETA: the mean of measured train steps after warm-up (the first steps of a
        # run trace and compile), plus the measured validation time of each epoch left.
        self.steps_seen = 0
        self.timed_seconds = 0.0
        self.timed_steps = 0
        self.last_batch_end: float | None = None
        self.val_seconds = 0.0
        # Stopped before the end of an epoch (cancel, lease lost, worker shutdown): that
        # epoch is incomplete, so it gets no history entry and no checkpoint.
        self.interrupted = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch
        self.epoch_started = time.monotonic()
        self.last_batch_end = None  # the gap since the last epoch is no train step
        self._write(step=0, logs=None)

    def _time_step(self, now: float) -> None:
        self.steps_seen += 1
        if self.last_batch_end is not None and self.steps_seen > WARMUP_STEPS:
            self.timed_seconds += now - self.last_batch_end
            self.timed_steps += 1
            self.seconds_per_step = self.timed_seconds / self.timed_steps
        self.last_batch_end = now

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.ctx.should_stop():
            self.model.stop_training = True
            self.interrupted = batch + 1 < self.steps
            return
        now = time.monotonic()
        self._time_step(now)
        if now - self.last_write >= self.interval:
            self._write(step=batch + 1, logs=logs)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        # Validation after the first epoch (whose validation traces too) is what is left.
        if self.epoch > 0 and self.last_batch_end is not None:
            self.val_seconds = time.monotonic() - self.last_batch_end

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.interrupted:  # Keras validates even a stopped epoch: skip that
            self.model.stop_evaluating = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.interrupted:
            return
        metrics = floats(logs)
        if not math.isfinite(metrics.get("loss", 0.0)):
            raise JobFailed(f"the loss became {metrics.get('loss')} in epoch {epoch + 1}")
        seconds = time.monotonic() - self.epoch_started
        entry = {
            "epoch": epoch + 1,
            **metrics,
            "learning_rate": self.config.learning_rate_at(epoch),
            "seconds": round(seconds, 3),
        }
        entry.pop("lr", None)
        # EpochCheckpoint (next in line) writes history to the job store only once the
        # epoch's checkpoint exists, so the recorded history never runs ahead of it.
        self.history.append(entry)

    def _write(self, step: int, logs: dict[str, Any] | None) -> None:
        self.last_write = time.monotonic()
        epochs = self.config.epochs
        done_steps = self.epoch * self.steps + step
        fraction = min(done_steps / max(epochs * self.steps, 1), 1.0)
        eta = images_per_second = None
        if self.seconds_per_step is not None:  # unknown until steps were measured
            epochs_left = epochs - self.epoch
            eta = round(
                self.seconds_per_step * (epochs * self.steps - done_steps)
                + self.val_seconds * epochs_left,
                1,
            )
            images_per_second = round(self.config.batch_size / self.seconds_per_step, 1)
        fields: dict[str, Any] = {
            "progress": {
                "fraction": round(fraction, 6),
                "epoch": self.epoch + 1,
                "epochs": epochs,
                "step": step,
                "steps": self.steps,
                "eta_seconds": eta,
                "images_per_second": images_per_second,
            }
        }
        if logs:
            job_metrics = self.ctx.store.get(self.ctx.job_id).metrics
            fields["metrics"] = {**job_metrics, **floats(logs)}
        self.ctx.report(**fields)


class EpochCheckpoint(keras.callbacks.Callback):
    """A whole-model checkpoint after every epoch (`worker.checkpoints`); the epoch's
    history entry is committed to the job store with it."""

    def __init__(self, ctx: JobContext, progress: JobProgress) -> None:
        super().__init__()
        self.ctx = ctx
        self.progress = progress

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.progress.interrupted or self.ctx.lease_lost.is_set():
            return  # an incomplete epoch, or the job is another worker's now
        done = epoch + 1
        metrics = floats(logs)
        save_checkpoint(self.ctx.settings, self.ctx.job_id, self.model, done, metrics)
        progress = self.progress
        self.ctx.report(
            history=progress.history,
            metrics={**self.ctx.store.get(self.ctx.job_id).metrics, **metrics},
            progress={
                "fraction": round(done / progress.config.epochs, 6),
                "epoch": done,
                "step": progress.steps,
            },
        )


def floats(logs: dict[str, Any] | None) -> dict[str, float]:
    """Keras logs (tensors, NumPy scalars) as plain floats for the job store."""
    return {key: float(value) for key, value in (logs or {}).items()}
