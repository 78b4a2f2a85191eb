"""The Keras callbacks of a train job: progress in the job store, a checkpoint per epoch,
TensorBoard once per epoch, and the thread that stops training when the job must stop.

Nothing here reads a batch's results on the training thread. Keras dispatches the
per-batch `on_*_batch_end` hooks to a thread pool as long as no callback overrides them
(`CallbackList._async_train`): with an override, every step would wait for the device to
hand its loss back before the next one starts. So:

* `JobProgress` records only the number and start time of each step
  (`on_train_batch_begin`: no device read), and `JobWatch`, a thread, writes progress from
  them every `progress_interval` seconds;
* `JobWatch` also stops `fit` and `evaluate` within a step once the job must stop
  (cancel, lease lost, worker shutdown), by setting `stop_training` / `stop_evaluating`,
  which Keras checks after every step;
* `EpochTensorBoard` is Keras's TensorBoard without its per-batch hooks; with an object
  store it publishes its event files at every epoch end (after flushing them) and at the
  end of training, so curves follow the run from any host.

`EpochCheckpoint` (after `JobProgress`) saves the epoch's checkpoint and only then commits
the epoch's history, so the recorded history never runs ahead of the checkpoints. This
module imports Keras: only the training task imports it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import keras

from core.config import Settings
from core.files import files_for
from core.train_config import TrainConfig
from worker.checkpoints import save_checkpoint
from worker.runner import JobContext, JobFailed

log = logging.getLogger(__name__)

# Train steps of a run left out of the step-time mean: the first steps trace and compile.
WARMUP_STEPS = 3
# How often `JobWatch` looks at the job's stop flags (they are in memory: no I/O).
WATCH_SECONDS = 0.25


class JobProgress(keras.callbacks.Callback):
    """Progress of the run (written by `JobWatch`), one history entry per epoch. An epoch
    the job stopped in is incomplete: no history entry, no checkpoint. A NaN loss fails
    the job."""

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
        self.lock = threading.Lock()  # one writer of progress at a time
        self.last_write = 0.0
        self.epoch = 0
        self.step = 0  # steps of this epoch begun
        self.epoch_started = time.monotonic()
        self.interrupted = False
        self.phase = "training"  # or "validation", "checkpoint": progress.phase
        # Honest ETA: the mean of measured train steps after warm-up, plus the measured
        # validation time of each epoch left. The steps of an epoch are timed from its
        # first step after warm-up (`anchor`) to the start of its latest.
        self.begun = 0  # train steps begun in this run
        self.step_started = 0.0
        self.anchor: tuple[float, int] | None = None
        self.timed_seconds = 0.0
        self.timed_steps = 0
        self.val_started: float | None = None
        self.val_seconds = 0.0
        self.validations = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.epoch = epoch
            self.step = 0
            self.phase = "training"
            self.anchor = None
            self.epoch_started = time.monotonic()
        self.write()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # The one per-step hook, and no device read: a step count and a clock.
        now = time.monotonic()
        self.step = batch
        self.step_started = now
        self.begun += 1
        if self.anchor is None and self.begun > WARMUP_STEPS:
            self.anchor = (now, batch)

    def seconds_per_step(self) -> float | None:
        seconds, steps = self.timed_seconds, self.timed_steps
        if self.anchor is not None and self.step > self.anchor[1]:
            seconds += self.step_started - self.anchor[0]
            steps += self.step - self.anchor[1]
        return seconds / steps if steps else None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        with self.lock:
            if self.anchor is not None:  # this epoch's train steps are done: bank them
                self.timed_seconds += self.step_started - self.anchor[0]
                self.timed_steps += self.step - self.anchor[1]
                self.anchor = None
            self.step = self.steps
            self.phase = "validation"
        self.val_started = time.monotonic()
        self.write()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self.validations += 1
        # Validation after the run's first (whose validation may trace) is what is left.
        if self.validations > 1 and self.val_started is not None:
            self.val_seconds = time.monotonic() - self.val_started

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.interrupted = self.ctx.should_stop()
        if self.interrupted:
            return
        metrics = floats(logs)
        if not math.isfinite(metrics.get("loss", 0.0)):
            raise JobFailed(f"the loss became {metrics.get('loss')} in epoch {epoch + 1}")
        entry = {
            "epoch": epoch + 1,
            **metrics,
            "learning_rate": self.config.learning_rate_at(epoch),
            "seconds": round(time.monotonic() - self.epoch_started, 3),
        }
        entry.pop("lr", None)
        # EpochCheckpoint (next in line) writes history to the job store only once the
        # epoch's checkpoint exists, so the recorded history never runs ahead of it.
        self.history.append(entry)

    def tick(self) -> None:
        """Called by `JobWatch`: write progress when `progress_interval` has passed."""
        if time.monotonic() - self.last_write >= self.interval:
            self.write()

    def write(self) -> None:
        with self.lock:
            self.last_write = time.monotonic()
            epochs, step = self.config.epochs, min(self.step, self.steps)
            done_steps = self.epoch * self.steps + step
            fraction = min(done_steps / max(epochs * self.steps, 1), 1.0)
            eta = images_per_second = None
            per_step = self.seconds_per_step()
            if per_step:  # unknown until steps were measured
                eta = round(
                    per_step * (epochs * self.steps - done_steps)
                    + self.val_seconds * (epochs - self.epoch),
                    1,
                )
                images_per_second = round(self.config.batch_size / per_step, 1)
            self.ctx.report(
                progress={
                    "fraction": round(fraction, 6),
                    "epoch": self.epoch + 1,
                    "epochs": epochs,
                    "step": step,
                    "steps": self.steps,
                    "eta_seconds": eta,
                    "images_per_second": images_per_second,
                    "phase": self.phase,
                }
            )


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
        self.progress.phase = "checkpoint"
        self.progress.write()
        save_checkpoint(self.ctx.settings, self.ctx.job_id, self.model, done, metrics)
        progress = self.progress
        with progress.lock:
            progress.step = progress.steps
            self.ctx.report(
                history=progress.history,
                metrics={**self.ctx.store.get(self.ctx.job_id).metrics, **metrics},
                progress={
                    "fraction": round(done / progress.config.epochs, 6),
                    "epoch": done,
                    "step": progress.steps,
                },
            )


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard writing once per epoch: its per-batch hooks (which read every
    batch's logs, and so switch off Keras's asynchronous dispatch) are the do-nothing
    defaults again. Epoch summaries and the validation scalars are Keras's own."""

    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end
    on_test_batch_end = keras.callbacks.Callback.on_test_batch_end

    def __init__(self, log_dir: str, settings: Settings | None = None) -> None:
        super().__init__(log_dir=log_dir, write_graph=False, profile_batch=0, update_freq="epoch")
        self.files = files_for(settings) if settings is not None else None
        self.published: dict[Path, int] = {}  # event file -> size last uploaded

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():
            writer.flush()
        self.publish()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_end(logs)  # closes (and flushes) the writers
        self.publish()
        if self.files is not None:  # the store has them all now: this host keeps none
            for path, size in self.published.items():
                if path.is_file() and path.stat().st_size == size:  # uploaded as it is
                    self.files.discard_local(path)

    def publish(self) -> None:
        """Upload every event file that grew since its last upload. An event file is
        appended to, so its object is replaced by a longer copy; TensorBoard reads a
        shorter one as the run so far, never as damaged. A failed upload is retried at
        the next epoch: curves are not worth failing a job over."""
        if self.files is None or not self.files.remote:
            return
        for path in sorted(Path(self.log_dir).rglob("*")):
            try:
                size = path.stat().st_size if path.is_file() else None
                if size is not None and self.published.get(path) != size:
                    self.files.publish(path)
                    self.published[path] = size
            except Exception:
                log.warning("TensorBoard file %s not published", path, exc_info=True)


class JobWatch(threading.Thread):
    """Stops the model within a step once the job must stop, and ticks progress.

    Keras resets `stop_evaluating` when an evaluation starts, so the flags are set again
    on every look, not once. Used as a context manager around everything that runs the
    model (the sanity check, `fit`); `progress` is attached once `fit` is about to start.
    """

    def __init__(self, ctx: JobContext, model: keras.Model) -> None:
        super().__init__(name=f"watch-{ctx.job_id}", daemon=True)
        self.ctx = ctx
        self.model = model
        self.progress: JobProgress | None = None
        self._done = threading.Event()
        self.seconds = min(WATCH_SECONDS, ctx.settings.progress_interval)

    def __enter__(self) -> JobWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join(timeout=10)

    def run(self) -> None:
        while not self._done.wait(self.seconds):
            if self.ctx.should_stop():
                self.model.stop_training = True
                self.model.stop_evaluating = True
            elif self.progress is not None:
                try:
                    self.progress.tick()
                except Exception:  # the database may blink; the next tick retries
                    log.warning("job %s: progress not written", self.ctx.job_id, exc_info=True)


def floats(logs: dict[str, Any] | None) -> dict[str, float]:
    """Keras logs (tensors, NumPy scalars) as plain floats for the job store."""
    return {key: float(value) for key, value in (logs or {}).items()}
