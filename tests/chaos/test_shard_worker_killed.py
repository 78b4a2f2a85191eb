"""A datasets worker killed with SIGKILL while it writes shards: a new worker finishes the
job, every shard is written completely by one writer, and nothing temporary is left."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.chaos.conftest import (
    FINISHED,
    PrivateRedis,
    chaos_env,
    chaos_settings,
    job_store,
    lease_of,
    make_photo_source,
    read_every_record,
    tail,
    wait_worker_ready,
)
from tests.utils.services import wait_for, worker_process

pytestmark = pytest.mark.chaos

IMAGES = 3000
SHARDS = 8


@pytest.fixture
def api(data_root: Path, private_redis: PrivateRedis) -> Iterator[TestClient]:
    with TestClient(create_app(chaos_settings(data_root, private_redis.url))) as client:
        yield client


def _temp_files(dataset_dir: Path) -> list[str]:
    return sorted(p.name for p in dataset_dir.rglob("*") if ".tmp-" in p.name)


def test_sigkill_mid_shard_then_a_new_worker_finishes_it(
    api: TestClient, data_root: Path, private_redis: PrivateRedis, tmp_path: Path, timings: Any
) -> None:
    make_photo_source(data_root / "sources" / "photos", IMAGES)
    answer = api.post(
        "/jobs/shard",
        json={"source": "sources/photos", "dataset": "photos", "num_shards": SHARDS},
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    dataset_dir = data_root / "datasets" / "photos"
    env = chaos_env(data_root, private_redis.url)
    first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"

    with worker_process(env, "datasets", log=first_log, concurrency=2, name="doomed") as first:
        wait_worker_ready(first, first_log)

        def mid_write() -> list[str] | None:
            progress = api.get(f"/jobs/{job_id}").json()["progress"]
            temps = _temp_files(dataset_dir)
            written = progress.get("shards_written", 0)
            return temps if 1 <= written <= SHARDS - 3 and temps else None

        wait_for(mid_write, timeout=120, interval=0.02)
        os.killpg(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        first.wait(10)
    # Caught in the middle: a part's temporary file is still there, its shard is not.
    orphans = _temp_files(dataset_dir)
    assert orphans, "the worker was not killed in the middle of writing a shard"
    snapshot = api.get(f"/jobs/{job_id}").json()
    assert snapshot["state"] == "running"
    assert snapshot["progress"]["shards_written"] < snapshot["progress"]["shards_total"]

    with worker_process(env, "datasets", log=second_log, concurrency=2, name="rescue") as second:
        wait_worker_ready(second, second_log)

        def finished() -> dict[str, Any] | None:
            job = api.get(f"/jobs/{job_id}").json()
            return job if job["state"] in FINISHED else None

        job = wait_for(finished, timeout=120)
        recovered = time.monotonic() - killed_at
        assert isinstance(job, dict)
        assert job["state"] == "succeeded", (job, tail(second_log))

    timings("SIGKILL mid-shard -> job succeeded (incl. new worker start)", recovered)
    # The counts are right and every record of every shard reads back.
    assert job["result"]["counts"] == {"train": IMAGES}
    assert job["result"]["shards"] == {"train": SHARDS}
    assert job["progress"]["images_written"] == job["progress"]["images_total"] == IMAGES
    records = read_every_record(dataset_dir)
    filenames = [name for name, _ in records["train"]]
    assert len(filenames) == IMAGES and len(set(filenames)) == IMAGES
    assert Counter(label for _, label in records["train"]) == dict.fromkeys(range(10), IMAGES // 10)
    # Nothing temporary is left, not even the killed writer's file, and no staging.
    assert _temp_files(dataset_dir) == []
    assert not (dataset_dir / ".staging").exists()

    # Never two runs at once: the planner ran twice (once per worker), each shard file was
    # completed by exactly one writer, and the lease is released.
    owner, expires, attempts, state = lease_of(job_store(data_root), job_id)
    assert (owner, expires, attempts, state) == (None, None, 2, "succeeded")
    logs = first_log.read_text(errors="replace") + second_log.read_text(errors="replace")
    completed = Counter(re.findall(r"wrote (train-\S+) \(\d+ records\)", logs))
    assert sorted(completed.values()) == [1] * SHARDS, completed
    started = Counter(re.findall(r": writing (train-\S+)", logs))
    # Only the shards the kill interrupted (at most one per pool process) were started twice.
    assert set(started) == set(completed) and max(started.values()) <= 2, started
    assert len(orphans) <= sum(started.values()) - SHARDS <= 2, (started, orphans)
