"""A shard job on Celery: plan once, one task per shard, the last one writes the manifest.

The shard work itself is `worker.sharding` (plain functions, which `shard_dataset` also
runs in one process); this module ties it to the job store: progress (images written
over images total, summed over the shards), the shared lease the shard tasks renew,
cancellation, and the job's outcome. Each shard's progress is kept per shard (its number
is its position in `Plan.all_shards`), so a shard that is redelivered and starts over
never counts twice. Its files go through the store (`worker.shard_store`): with
``TINYRES_STORAGE_URL`` set, each piece may run on another host. This module imports
TensorFlow (through worker.sharding): tasks import it lazily.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import layout
from core.config import Settings
from core.files import Files, files_for
from core.jobs import FINISHED_STATES, JobState, JobStore
from core.manifest import Manifest, dataset_finished, load_manifest, manifest_file
from core.names import resolve_under
from core.storage import StoreError
from worker import shard_store, sharding
from worker.runner import (
    SHARD_PARTS_OWNER,
    JobContext,
    JobFailed,
    after_handback,
    call_requeue,
    describe_error,
    job_running,
    shutdown_requested,
    worker_identity,
)
from worker.sources import SourceError

log = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 1.0


def plan_job(ctx: JobContext) -> list[tuple[str, int]]:
    """Plan the job's shards; return the shards still to write (all, on a first run)."""
    params = ctx.job.params
    settings = ctx.settings
    files = files_for(settings)
    name = params["dataset"]
    dataset_dir = layout.dataset_dir(settings, name)
    finished_dataset = files.exists(shard_store.manifest_key(name))
    if params.get("overwrite") and ctx.job.attempts == 1 and finished_dataset:
        # The client asked to replace it: the old shards go when the new job starts, the
        # manifest first, so that no half-deleted dataset looks finished.
        files.delete(shard_store.manifest_key(name))
        files.delete(shard_store.dataset_key(name))
    elif finished_dataset and files.remote:
        raise JobFailed(f"dataset {name} already exists")
    source = resolve_under(settings.resolved_data_root, params["source"])
    if files.remote:
        # A local manifest here is a crashed finalizer's scratch, never published: the
        # dataset is finalized again from the store.
        manifest_file(dataset_dir).unlink(missing_ok=True)
        source = shard_store.local_source(files, files.key_of(source))
        shard_store.adopt_stored_plan(files, dataset_dir, source)
    try:
        plan = sharding.plan(
            source,
            dataset_dir,
            num_shards=params["num_shards"],
            compression=params["compression"],
            seed=params["seed"],
            source_label=params["source"],
        )
    except (SourceError, sharding.DatasetExistsError) as exc:
        raise JobFailed(str(exc)) from exc
    shard_store.publish_plan(files, plan)
    finished = {number for number, _, _, done in ctx.store.shard_progress(ctx.job_id) if done}
    # A shard a live writer holds is being written (its worker only looked dead because no
    # shard renewed the job's lease for a while): sending it again would only duplicate it.
    busy = ctx.store.claimed_shards(ctx.job_id)
    todo = []
    for number, (split, index) in enumerate(plan.all_shards()):
        if number in busy:
            continue
        if number not in finished:
            total = len(plan.records(split, index))
            ctx.store.set_shard_progress(ctx.job_id, number, 0, total, False)
            todo.append((split, index))
    _report_progress(ctx.store, ctx.job_id)
    return todo


def write_job_shard(
    store: JobStore,
    settings: Settings,
    job_id: str,
    split: str,
    index: int,
    *,
    requeue: Callable[[], None] | None = None,
) -> None:
    """Write one shard of a running shard job; finalize the job if it was the last.

    Each shard has a lease of its own in the job store, so it has one writer at a time: a
    shard delivered again while it is being written, or after it was written (the broker
    delivers at least once), writes nothing. A shard stopped by a worker shutdown is sent
    again with `requeue`.
    """
    what = f"shard job {job_id}: shard {split}/{index}"
    if shutdown_requested():
        call_requeue(requeue, what)
        return
    job = store.get(job_id)
    if job.state in FINISHED_STATES:
        return
    if job.cancel_requested:
        _cancel(store, settings, job_id)
        return
    files = files_for(settings)
    dataset_dir = layout.dataset_dir(settings, job.params["dataset"])
    plan = shard_store.load_job_plan(files, dataset_dir)
    number = plan.shard_number(split, index)
    total = len(plan.records(split, index))
    owner = f"{worker_identity()}:{uuid.uuid4().hex[:8]}"
    holder = store.claim_shard(job_id, number, owner, settings.lease_seconds)
    if holder is not None:
        log.info("%s: being written by %s, nothing to do", what, holder)
        return
    store.touch(job_id, SHARD_PARTS_OWNER, settings.lease_seconds)  # outlives the shard's
    if any(n == number and finished for n, _, _, finished in store.shard_progress(job_id)):
        store.release_shard(job_id, number, owner)
        log.info("%s: already written, nothing to do", what)
        if _report_progress(store, job_id):
            finalize_job(store, settings, job_id)
        return
    log.info("%s: writing %s", what, plan.shard_file(split, index))
    watch = _ShardWatch(store, settings, job_id, number, owner)
    try:
        with job_running():
            plan = shard_store.with_local_source(files, plan, _source_key(files, job.params))
            written = sharding.write_shard(
                plan, split, index, on_progress=watch.progress, should_stop=watch.should_stop
            )
            shard_store.publish_shard(files, plan, written)
    except sharding.ShardingStopped:
        store.release_shard(job_id, number, owner)
        if watch.shard_lost:
            log.warning("%s: its lease went to another writer; stopped", what)
        elif store.get(job_id).cancel_requested:
            _cancel(store, settings, job_id)
        elif shutdown_requested():  # its temporary file is gone; the next worker redoes it
            store.set_shard_progress(job_id, number, 0, total, False)
            _report_progress(store, job_id)
            log.warning("%s: worker shutting down; handed back", what)
            call_requeue(requeue, what)
            after_handback()
        return
    except Exception as exc:
        log.exception("shard job %s: shard %s/%d failed", job_id, split, index)
        store.release_shard(job_id, number, owner)
        store.finish(job_id, JobState.FAILED, error=describe_error(exc))
        return
    store.set_shard_progress(job_id, number, total, total, True)
    store.release_shard(job_id, number, owner)
    log.info("shard job %s: wrote %s (%d records)", job_id, written.file, written.records)
    if _report_progress(store, job_id):
        finalize_job(store, settings, job_id)


def finalize_job(store: JobStore, settings: Settings, job_id: str) -> None:
    """Write the manifest (idempotent: several last shards may race here) and finish."""
    job = store.get(job_id)
    if job.state in FINISHED_STATES:
        return
    files = files_for(settings)
    dataset_dir = layout.dataset_dir(settings, job.params["dataset"])
    try:
        manifest = _finished_manifest(files, dataset_dir) if files.remote else None
        if manifest is None:
            plan = shard_store.load_job_plan(files, dataset_dir)
            manifest = shard_store.finalize_in_store(files, plan)
    except sharding.PlanNotFoundError:
        manifest = _finished_manifest(files, dataset_dir)  # another shard finalized it
        if manifest is None:
            raise
    except (SourceError, StoreError) as exc:  # StoreError: a shard object that is not whole
        store.finish(job_id, JobState.FAILED, error=str(exc))
        return
    splits = manifest.splits
    store.finish(
        job_id,
        JobState.SUCCEEDED,
        result={
            "dataset": manifest.name,
            "classes": len(manifest.classes),
            "counts": {name: split.count for name, split in splits.items()},
            "shards": {name: len(split.shards) for name, split in splits.items()},
            "bytes": manifest.bytes,
            "skipped": manifest.skipped_total,
        },
    )


def _finished_manifest(files: Files, dataset_dir: Path) -> Manifest | None:
    """The dataset's manifest once it is finished (in the store; locally without one)."""
    if files.remote:
        return shard_store.stored_manifest(files, dataset_dir.name)
    return load_manifest(dataset_dir) if dataset_finished(dataset_dir) else None


def _source_key(files: Files, params: dict[str, Any]) -> str:
    return files.key_of(resolve_under(files.root, params["source"]))


def _report_progress(store: JobStore, job_id: str) -> bool:
    """Write images written / images total into the job; return whether all shards are done."""
    shards = store.shard_progress(job_id)
    done = sum(s[1] for s in shards)
    total = sum(s[2] for s in shards)
    finished = sum(1 for s in shards if s[3])
    store.update_job(
        job_id,
        progress={
            "fraction": round(done / total, 6) if total else 0.0,
            "images_written": done,
            "images_total": total,
            "shards_written": finished,
            "shards_total": len(shards),
        },
    )
    return bool(shards) and finished == len(shards)


def _cancel(store: JobStore, settings: Settings, job_id: str) -> None:
    job = store.get(job_id)
    if job.state not in FINISHED_STATES:
        store.finish(job_id, JobState.CANCELLED)
        sharding.cleanup_temp(layout.dataset_dir(settings, job.params["dataset"]))


class _ShardWatch:
    """Per-shard progress, the shared lease, and the cancel check, rate-limited."""

    def __init__(
        self, store: JobStore, settings: Settings, job_id: str, number: int, owner: str
    ) -> None:
        self.store, self.settings, self.job_id, self.number = store, settings, job_id, number
        self.owner = owner
        self.last_check = 0.0
        self.stop = False
        self.shard_lost = False

    def progress(self, done: int, total: int) -> None:
        self.store.set_shard_progress(self.job_id, self.number, done, total, False)
        _report_progress(self.store, self.job_id)

    def should_stop(self) -> bool:
        if shutdown_requested():
            return True
        now = time.monotonic()
        if now - self.last_check >= CANCEL_POLL_SECONDS:
            self.last_check = now
            lease = self.settings.lease_seconds
            # The shard's lease first, the job's second: a shard's lease never outlives the
            # job's, so a job whose lease expired has no shard that still looks alive.
            lost = not self.store.renew_shard(self.job_id, self.number, self.owner, lease)
            self.shard_lost = lost
            job = self.store.touch(self.job_id, SHARD_PARTS_OWNER, lease)
            self.stop = job.cancel_requested or job.state in FINISHED_STATES or lost
        return self.stop


__all__ = ["finalize_job", "plan_job", "write_job_shard"]
