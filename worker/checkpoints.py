"""A train job's checkpoint files: written atomically, loaded newest first, pruned.

A checkpoint is a whole `.keras` model with its optimizer (`checkpoints/epoch-NNNN.keras`
under the job's folder), so momentum and the iteration count continue exactly after a
resume. `best.json` records the epoch with the best `val_accuracy`, which pruning keeps.

A resume restores a checkpoint's state (weights, the augmentation layers' seed states and
the optimizer's variables: `model.load_weights`) into a network built and compiled on this
machine (`restore_checkpoint`), not the checkpoint's own compiled model: the checkpoint
may come from a machine with other XLA and precision settings, and `load_model` would
bring back its `jit_compile` and dtype policies.
With an object store (``TINYRES_STORAGE_URL``) each checkpoint is still written locally
and atomically, then published with a sidecar recording its size (``core/job_files.py``);
the newest sidecar carries the best epoch, pruning deletes in the store too, and a resume
on any host downloads the newest committed checkpoint that loads. Its local copy is then
scratch, and removed. With the local backend nothing of that runs: the files above are all.

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
from core.files import files_for
from core.job_files import (
    StoredCheckpoint,
    checkpoint_objects,
    fetch_checkpoint,
    prune_stored,
    publish_checkpoint,
    stored_checkpoints,
)
from core.storage import StoreError
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
    """Delete what a killed attempt was writing: a `.tmp-*` file is never complete, nor is
    a checkpoint object in the store without its sidecar."""
    for leftover in layout.job_dir(settings, job_id).rglob(".tmp-*"):
        leftover.unlink()
    files = files_for(settings)
    if files.remote:
        committed = {stored.key for stored in stored_checkpoints(files, job_id)}
        for key in checkpoint_objects(files, job_id):
            if key not in committed:
                log.info("job %s: %s was never committed; removed", job_id, key)
                files.store.delete(key)


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


def checkpoint_epochs(settings: Settings, job_id: str) -> list[int]:
    """Epochs that have a checkpoint: local files, or with a store its committed checkpoint
    objects (an object without its sidecar is an upload that never finished: its epoch's
    history was never recorded either, so it does not count)."""
    files = files_for(settings)
    if not files.remote:
        return layout.checkpoint_epochs(settings, job_id)
    return [stored.epoch for stored in stored_checkpoints(files, job_id)]


def restore_stored_checkpoint(
    model: keras.Model, settings: Settings, stored: StoredCheckpoint
) -> None:
    """Download one committed checkpoint (checked against its sidecar) and restore it;
    `JobFailed` when it is truncated, gone or unreadable."""
    try:
        path = fetch_checkpoint(files_for(settings), stored)
    except (StoreError, FileNotFoundError) as exc:
        raise JobFailed(f"checkpoint {stored.key} cannot be fetched: {exc}") from exc
    restore_checkpoint(model, path)


def restore_newest_checkpoint(settings: Settings, job_id: str, model: keras.Model) -> int | None:
    """Restore the newest checkpoint that loads (a truncated one, killed mid-write, is
    skipped) into `model`; return its epoch, or None when none loads."""
    files = files_for(settings)
    if files.remote:
        for stored in reversed(stored_checkpoints(files, job_id)):
            try:
                restore_stored_checkpoint(model, settings, stored)
                return stored.epoch
            except JobFailed as exc:
                log.warning("job %s: %s; trying the one before", job_id, exc)
        return None
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
    """Write epoch `epoch`'s checkpoint, update the best one, prune to the newest `keep`.
    With a store it is published (and its sidecar) before this returns."""
    folder = layout.checkpoints_dir(settings, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_keras_save(model, folder / layout.checkpoint_name(epoch))
    files = files_for(settings)
    if files.remote:
        _publish(settings, job_id, folder / layout.checkpoint_name(epoch), epoch, metrics)
        return
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


def _publish(
    settings: Settings, job_id: str, path: Path, epoch: int, metrics: dict[str, float]
) -> None:
    """The store's side of `save_checkpoint`: upload, sidecar (with the best epoch so far)
    last, prune the store's checkpoints."""
    files = files_for(settings)
    committed = stored_checkpoints(files, job_id)
    best = next((c.best for c in reversed(committed) if c.best), None)
    if "val_accuracy" in metrics and (
        best is None or metrics["val_accuracy"] > best["val_accuracy"]
    ):
        best = {"epoch": epoch, "val_accuracy": metrics["val_accuracy"]}
    publish_checkpoint(files, job_id, path, epoch, best)
    prune_stored(files, job_id, settings.checkpoints_keep, best["epoch"] if best else None)
