"""A train job on an object store whose worker is SIGKILLed mid-epoch: a new worker with
a fresh, empty data root (another host) finishes it from the store's checkpoints, with
exactly its epochs. Its newest checkpoint object is cut short in the store meanwhile, so
the new worker must refuse it (its size is not its sidecar's) and resume from the one
before."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from core.job_files import checkpoint_key, stored_checkpoints
from tests.chaos.conftest import FINISHED, TINY_TRAIN, tail, wait_worker_ready
from tests.utils.seaweed import seaweed_fixture  # noqa: F401
from tests.utils.services import wait_for, worker_process
from tests.utils.store_hosts import StoreHosts
from tests.utils.store_jobs import (  # noqa: F401
    api_client,
    hosts_fixture,
    publish_dataset,
    wait_finished,
    worker_env,
)

pytestmark = pytest.mark.chaos

EPOCHS = 5


def test_a_killed_worker_s_job_finishes_on_another_host(hosts: StoreHosts, tmp_path: Path) -> None:
    publish_dataset(hosts)
    files = hosts.files(hosts.root("reader"))
    with api_client(hosts) as api:
        body = {"dataset": "digits", **TINY_TRAIN, "epochs": EPOCHS}
        job_id = api.post("/jobs/train", json=body).json()["id"]
        log_a = tmp_path / "worker-a.log"
        with worker_process(
            worker_env(hosts, hosts.root("worker-a")), "training", log=log_a, name="doomed"
        ) as first:
            wait_worker_ready(first, log_a)

            def two_epochs_done() -> bool:
                job = api.get(f"/jobs/{job_id}").json()
                assert job["state"] not in FINISHED, (job, tail(log_a))
                return len(job["history"]) >= 2

            wait_for(two_epochs_done, timeout=240, interval=0.05)
            os.killpg(first.pid, signal.SIGKILL)  # mid-epoch: the next one had begun
            first.wait(10)

        committed = [c.epoch for c in stored_checkpoints(files, job_id)]
        newest = committed[-1]
        assert newest >= 2 and newest < EPOCHS, committed
        key = checkpoint_key(job_id, newest)
        whole = files.get_bytes(key)
        files.put_bytes(whole[: len(whole) // 2], key)

        log_b = tmp_path / "worker-b.log"
        with worker_process(
            worker_env(hosts, hosts.root("worker-b")), "training", log=log_b, name="rescuer"
        ) as second:
            wait_worker_ready(second, log_b)
            job = wait_finished(api, job_id, timeout=300)

    text = log_b.read_text(errors="replace")
    assert job["state"] == "succeeded", (job, tail(log_b))
    assert [entry["epoch"] for entry in job["history"]] == list(range(1, EPOCHS + 1))
    assert job["result"]["epochs"] == EPOCHS and job["attempts"] == 2
    assert f"{key} cannot be fetched" in text and "truncated" in text, tail(log_b)
    assert f"continuing from its own checkpoint at epoch {newest - 1}" in text
    # Pruned in the store as on disk: the newest `checkpoints_keep` (and the best) remain.
    assert [c.epoch for c in stored_checkpoints(files, job_id)][-1] == EPOCHS
    assert files.exists(f"jobs/{job_id}/model.keras")
