"""On an object store: a datasets worker SIGKILLed while it writes a shard, then a worker
on another "host" (its own empty data root) finishes the job from what is in the store.

Every shard is then an object of the size its manifest records, written completely by one
writer, nothing staged is left in the store, and the killed writer's half-written file
never left its host's disk."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.manifest import Manifest
from tests.chaos.conftest import (
    FINISHED,
    LEASE_SECONDS,
    make_photo_source,
    read_every_record,
    tail,
    wait_worker_ready,
)
from tests.utils.seaweed import seaweed_fixture  # noqa: F401
from tests.utils.services import api_process, wait_for, worker_process
from tests.utils.store_hosts import StoreHosts, files_under, store_hosts_fixture  # noqa: F401
from tools.datasets import zip_dir

pytestmark = pytest.mark.chaos

IMAGES = 1500
SHARDS = 6


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name)


def test_sigkill_mid_shard_then_another_host_finishes_it(
    hosts: StoreHosts, tmp_path: Path, timings: Any
) -> None:
    archive = zip_dir(make_photo_source(tmp_path / "made" / "photos", IMAGES), tmp_path / "p.zip")
    reader = hosts.files(hosts.root("reader"))
    reader.publish(archive, "sources/photos.zip")
    extra = {"TINYRES_LEASE_SECONDS": str(LEASE_SECONDS), "TINYRES_PROGRESS_INTERVAL": "0.2"}
    first_root, second_root = hosts.root("host-a"), hosts.root("host-b")
    first_log, second_log = tmp_path / "host-a.log", tmp_path / "host-b.log"
    api_env = hosts.env(hosts.root("api"), **extra)
    with api_process(api_env, log=tmp_path / "api.log") as api:
        answer = httpx.post(
            f"{api}/jobs/shard",
            json={"source": "sources/photos.zip", "dataset": "photos", "num_shards": SHARDS},
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        scratch = first_root / "datasets" / "photos"

        env = hosts.env(first_root, **extra)
        with worker_process(env, "datasets", log=first_log, concurrency=2, name="a") as first:
            wait_worker_ready(first, first_log)

            def mid_write() -> list[str] | None:
                progress = httpx.get(f"{api}/jobs/{job_id}").json()["progress"]
                temps = _temp_files(scratch)
                written = progress.get("shards_written", 0)
                return temps if 1 <= written <= SHARDS - 2 and temps else None

            wait_for(mid_write, timeout=180, interval=0.02)
            os.killpg(first.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            first.wait(10)
        assert _temp_files(scratch), "the worker was not killed in the middle of a shard"
        # Nothing of the killed writer reached the store: its shard has no object yet.
        stored = set(reader.list("datasets/photos"))
        assert "datasets/photos/manifest.json" not in stored

        env = hosts.env(second_root, **extra)
        with worker_process(env, "datasets", log=second_log, concurrency=2, name="b") as second:
            wait_worker_ready(second, second_log)

            def finished() -> dict[str, Any] | None:
                job = httpx.get(f"{api}/jobs/{job_id}").json()
                return job if job["state"] in FINISHED else None

            job = wait_for(finished, timeout=180)
            recovered = time.monotonic() - killed_at
        assert isinstance(job, dict)
        assert job["state"] == "succeeded", (job, tail(second_log))
    timings("SIGKILL mid-shard on the store -> another host finished it", recovered)

    assert job["result"]["counts"] == {"train": IMAGES}
    assert job["result"]["shards"] == {"train": SHARDS}
    # The store holds exactly the manifest and its shards, each of the recorded size.
    manifest = Manifest.from_json(reader.get_bytes("datasets/photos/manifest.json"))
    shards = manifest.splits["train"].shards
    assert reader.list("datasets/photos") == sorted(
        ["datasets/photos/manifest.json", *(f"datasets/photos/{s.file}" for s in shards)]
    )
    local = hosts.root("reader") / "check"
    local.mkdir()
    (local / "manifest.json").write_bytes(reader.get_bytes("datasets/photos/manifest.json"))
    for shard in shards:
        (local / shard.file).symlink_to(
            reader.local(f"datasets/photos/{shard.file}", size=shard.bytes)
        )
    records = read_every_record(local)
    filenames = [name for name, _ in records["train"]]
    assert len(filenames) == IMAGES and len(set(filenames)) == IMAGES
    # Each shard completed by exactly one writer (the killed one's never), on either host.
    logs = first_log.read_text(errors="replace") + second_log.read_text(errors="replace")
    completed = Counter(re.findall(r"wrote (train-\S+) \(\d+ records\)", logs))
    assert sorted(completed.values()) == [1] * SHARDS, completed
    assert re.search(r"wrote train-\S+", second_log.read_text(errors="replace"))
    # Host B's data root: its cache (the source it read) and the job's log, nothing else.
    held = files_under(second_root)
    assert all(p.startswith("cache/") or p == f"logs/{job_id}.log" for p in held), held
