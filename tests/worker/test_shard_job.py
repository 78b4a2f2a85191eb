"""A shard job's steps against a real job store, without Celery: plan, each shard, finish.

The Celery side (fan-out, redelivery, workers killed) is tests/worker/test_distributed.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings
from core.jobs import JobState, JobStore
from core.manifest import load_manifest
from tools.datasets import make_digits_tiny_imagenet
from worker.runner import JobContext, JobFailed
from worker.shard_job import plan_job, write_job_shard


def test_every_shard_written_finishes_the_job(store: JobStore, settings: Settings) -> None:
    make_digits_tiny_imagenet(
        settings.resolved_data_root / "sources" / "digits", 3, 8, 2, test_images=0
    )
    params = {
        "dataset": "digits",
        "source": "sources/digits",
        "num_shards": 2,
        "compression": "GZIP",
        "seed": 0,
        "overwrite": False,
    }
    job = store.create("shard", params)
    owner = "test-owner"
    store.claim(job.id, owner, settings.lease_seconds, max_attempts=3)
    ctx = JobContext(store, store.get(job.id), settings, owner)
    shards = plan_job(ctx)
    assert shards == [("train", 0), ("train", 1), ("val", 0)]
    assert store.get(job.id).progress["images_total"] == 3 * 8 + 3 * 2
    for split, index in shards:
        assert store.get(job.id).state == JobState.RUNNING
        write_job_shard(store, settings, job.id, split, index)
    write_job_shard(store, settings, job.id, "train", 0)  # redelivered: nothing to do
    done = store.get(job.id)
    assert done.state == JobState.SUCCEEDED
    assert done.progress["shards_written"] == done.progress["shards_total"] == 3
    assert done.result == {
        "dataset": "digits",
        "classes": 3,
        "counts": {"train": 24, "val": 6},
        "shards": {"train": 2, "val": 1},
        "bytes": load_manifest(Path(settings.resolved_data_root) / "datasets" / "digits").bytes,
        "skipped": 0,
    }
    with pytest.raises(JobFailed, match="already exists"):  # a finished dataset stays
        plan_job(ctx)
