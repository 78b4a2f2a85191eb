"""Where a train job begins: fresh, from its own newest checkpoint, or from another job's.

A job that finds checkpoints of its own (it was redelivered after its worker died, or
handed back by a worker shutting down) continues from its newest readable one, and fails
with the reason when it has checkpoints but none can be read; otherwise `resume_from`
names another job whose checkpoint at `initial_epoch` is the start.

Either way the network is built and compiled on this machine first (`jit_compile`,
`steps_per_execution` and the dtype policy are this machine's), and the checkpoint's state
is then restored into it: weights, augmentation seed states, and the optimizer's
variables, so momentum and the iteration count continue exactly
(`worker.checkpoints.restore_checkpoint`).

A job resumed from another one starts its history with the other job's entries up to
`initial_epoch`, each marked `"from_job": <that job's id>` (an entry that already names
the job it came from keeps it), so a client sees the whole run; its own epochs carry no
mark.

With an object store the checkpoints looked for are the store's (any host's), committed
by their sidecars (``core/job_files.py``): a job resumes on whichever host takes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import keras

from core import layout
from core.files import files_for
from core.job_files import stored_checkpoints
from core.jobs import JobNotFound
from core.train_config import TrainConfig
from worker.checkpoints import (
    checkpoint_epochs,
    remove_partial_files,
    restore_checkpoint,
    restore_newest_checkpoint,
    restore_stored_checkpoint,
)
from worker.runner import JobContext, JobFailed

log = logging.getLogger(__name__)


@dataclass
class Start:
    """Where a run begins: the epochs already done and their history."""

    initial_epoch: int
    history: list[dict[str, Any]]
    fresh: bool


def starting_point(ctx: JobContext, config: TrainConfig, model: keras.Model) -> Start:
    """Restore the run's starting checkpoint into the compiled `model`, if it has one."""
    remove_partial_files(ctx.settings, ctx.job_id)
    epochs = checkpoint_epochs(ctx.settings, ctx.job_id)
    if epochs:
        epoch = restore_newest_checkpoint(ctx.settings, ctx.job_id, model)
        if epoch is None:
            # Starting over would silently throw away epochs a client saw finish: say why.
            raise JobFailed(
                f"none of this job's checkpoints can be read (epochs {epochs}: cut short or "
                "damaged, e.g. by a full or failing disk); resubmit the job to train from "
                "the start"
            )
        history = [h for h in ctx.store.get(ctx.job_id).history if h["epoch"] <= epoch]
        log.info("job %s: continuing from its own checkpoint at epoch %d", ctx.job_id, epoch)
        return Start(epoch, history, fresh=False)
    if config.resume_from is not None:
        assert config.initial_epoch is not None
        parent = config.resume_from
        _restore_parent(ctx, model, parent, config.initial_epoch)
        return Start(config.initial_epoch, parent_history(ctx, parent, config.initial_epoch), False)
    return Start(0, [], fresh=True)


def _restore_parent(ctx: JobContext, model: keras.Model, parent: str, epoch: int) -> None:
    """Restore job `parent`'s checkpoint at `epoch` (from the store when there is one)."""
    files = files_for(ctx.settings)
    if not files.remote:
        folder = layout.checkpoints_dir(ctx.settings, parent)
        restore_checkpoint(model, folder / layout.checkpoint_name(epoch))
        return
    found = [c for c in stored_checkpoints(files, parent) if c.epoch == epoch]
    if not found:
        raise JobFailed(f"job {parent} has no checkpoint for epoch {epoch} in the store")
    restore_stored_checkpoint(model, ctx.settings, found[0])


def parent_history(ctx: JobContext, parent: str, initial_epoch: int) -> list[dict[str, Any]]:
    """The parent's history entries up to `initial_epoch`, marked with where they came from."""
    try:
        entries = ctx.store.get(parent).history
    except JobNotFound:  # the parent's record was deleted; its checkpoint was enough
        return []
    return [
        {**entry, "from_job": entry.get("from_job", parent)}
        for entry in entries
        if entry["epoch"] <= initial_epoch
    ]
