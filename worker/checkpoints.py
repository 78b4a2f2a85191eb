"""A train job's checkpoint files: written atomically, loaded newest first, pruned.

A checkpoint is a whole `.keras` model with its optimizer (`checkpoints/epoch-NNNN.keras`
under the job's folder), so momentum and the iteration count continue exactly after a
resume. `best.json` records the epoch with the best `val_accuracy`, which pruning keeps.

A resume restores a checkpoint's state (weights, the augmentation layers' seed states and
the optimizer's variables: `model.load_weights`) into a network built and compiled on this
machine (`restore_checkpoint`), not the checkpoint's own compiled model: the checkpoint
may come from a machine with other XLA and precision settings, and `load_model` would
bring back its `jit_compile` and dtype policies.
This module imports Keras: only the training task imports it, inside the task.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import keras

from core import layout
from core.config import Settings
from worker.runner import JobFailed

log = logging.getLogger(__name__)

BEST_FILE = "best.json"


def atomic_keras_save(model: keras.Model, path: Path) -> None:
    """Save `model` to `path` through a temporary file, so `path` is always complete."""
    # Keras wants the .keras suffix; the leading dot keeps the temp file out of listings.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def remove_partial_files(settings: Settings, job_id: str) -> None:
    """Delete what a killed attempt was writing: a `.tmp-*` file is never complete."""
    for leftover in layout.job_dir(settings, job_id).rglob(".tmp-*"):
        leftover.unlink()


def restore_checkpoint(model: keras.Model, path: Path) -> None:
    """Load one checkpoint's state into the compiled `model`; `JobFailed` if unreadable.

    The optimizer is built first: Keras loads optimizer variables only into a built one.
    """
    try:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(path)
    except Exception as exc:
        raise JobFailed(f"checkpoint {path.name} cannot be read: {exc}") from exc


def restore_newest_checkpoint(settings: Settings, job_id: str, model: keras.Model) -> int | None:
    """Restore the newest checkpoint that loads (a truncated one, killed mid-write, is
    skipped) into `model`; return its epoch, or None when none loads."""
    folder = layout.checkpoints_dir(settings, job_id)
    for epoch in reversed(layout.checkpoint_epochs(settings, job_id)):
        try:
            restore_checkpoint(model, folder / layout.checkpoint_name(epoch))
            return epoch
        except JobFailed as exc:
            log.warning("job %s: %s; trying the one before", job_id, exc)
    return None


def save_checkpoint(
    settings: Settings, job_id: str, model: keras.Model, epoch: int, metrics: dict[str, float]
) -> None:
    """Write epoch `epoch`'s checkpoint, update the best one, prune to the newest `keep`."""
    folder = layout.checkpoints_dir(settings, job_id)
    atomic_keras_save(model, folder / layout.checkpoint_name(epoch))
    best_file = folder / BEST_FILE
    best = _read_best(best_file)
    if "val_accuracy" in metrics and (
        best is None or metrics["val_accuracy"] > best["val_accuracy"]
    ):
        best = {"epoch": epoch, "val_accuracy": metrics["val_accuracy"]}
        tmp = best_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(best))
        os.replace(tmp, best_file)
    _prune(settings, job_id, best["epoch"] if best else None)


def _read_best(best_file: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(best_file.read_text()))
    except (OSError, ValueError):
        return None


def _prune(settings: Settings, job_id: str, best_epoch: int | None) -> None:
    folder = layout.checkpoints_dir(settings, job_id)
    epochs = layout.checkpoint_epochs(settings, job_id)
    for epoch in epochs[: -settings.checkpoints_keep]:
        if epoch != best_epoch:
            (folder / layout.checkpoint_name(epoch)).unlink(missing_ok=True)
