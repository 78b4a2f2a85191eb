"""Damaged checkpoints after a crash: a job whose newest checkpoint is truncated resumes
from the one before it; a job none of whose checkpoints can be read fails with a reason
instead of silently starting over."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core import layout
from core.config import Settings
from tests.chaos.conftest import (
    FINISHED,
    TINY_TRAIN,
    PrivateRedis,
    chaos_env,
    chaos_settings,
    make_digits_dataset,
    tail,
    wait_worker_ready,
)
from tests.utils.services import wait_for, worker_process

pytestmark = pytest.mark.chaos

EPOCHS = 6


@pytest.fixture
def api(data_root: Path, private_redis: PrivateRedis) -> Iterator[TestClient]:
    make_digits_dataset(data_root)
    with TestClient(create_app(chaos_settings(data_root, private_redis.url))) as client:
        yield client


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_newest_checkpoint_resumes_from_the_one_before(
    api: TestClient, data_root: Path, private_redis: PrivateRedis, tmp_path: Path, timings: Any
) -> None:
    body = {"dataset": "digits", **TINY_TRAIN, "epochs": EPOCHS}
    one_bad, all_bad = (api.post("/jobs/train", json=body).json()["id"] for _ in range(2))
    env = chaos_env(data_root, private_redis.url)
    settings = Settings(data_root=data_root)
    first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"

    with worker_process(
        env, "training", log=first_log, concurrency=2, max_tasks_per_child=1, name="crashing"
    ) as first:
        wait_worker_ready(first, first_log)

        def both_halfway() -> bool:
            jobs = [api.get(f"/jobs/{job_id}").json() for job_id in (one_bad, all_bad)]
            assert not any(job["state"] in FINISHED for job in jobs), (jobs, tail(first_log))
            return all(len(job["history"]) >= 2 for job in jobs)

        wait_for(both_halfway, timeout=180, interval=0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)

    # The damage a full disk or a bad block does: checkpoint files cut short.
    folder = layout.checkpoints_dir(settings, one_bad)
    kept = layout.checkpoint_epochs(settings, one_bad)
    newest = kept[-1]
    _truncate(folder / layout.checkpoint_name(newest))
    for epoch in layout.checkpoint_epochs(settings, all_bad):
        _truncate(layout.checkpoints_dir(settings, all_bad) / layout.checkpoint_name(epoch))

    with worker_process(
        env, "training", log=second_log, concurrency=2, max_tasks_per_child=1, name="resuming"
    ) as second:
        wait_worker_ready(second, second_log)
        started = time.monotonic()

        def finished(job_id: str) -> dict[str, Any] | None:
            job = api.get(f"/jobs/{job_id}").json()
            return job if job["state"] in FINISHED else None

        failed = wait_for(lambda: finished(all_bad), timeout=120)
        timings(
            "all checkpoints unreadable -> job failed with the reason", time.monotonic() - started
        )
        resumed = wait_for(lambda: finished(one_bad), timeout=240)
        timings("newest checkpoint truncated -> job succeeded", time.monotonic() - started)

    log = second_log.read_text(errors="replace")
    assert isinstance(resumed, dict) and isinstance(failed, dict)
    assert resumed["state"] == "succeeded", (resumed, tail(second_log))
    assert f"{layout.checkpoint_name(newest)} cannot be read" in log
    assert f"continuing from its own checkpoint at epoch {newest - 1}" in log
    assert [entry["epoch"] for entry in resumed["history"]] == list(range(1, EPOCHS + 1))
    assert resumed["attempts"] == 2
    # The damaged checkpoint was written again, whole, when that epoch was trained again.
    assert layout.checkpoint_epochs(settings, one_bad)[-1] == EPOCHS

    assert failed["state"] == "failed", (failed, tail(second_log))
    assert "none of this job's checkpoints can be read" in failed["error"]
    assert "Traceback" not in failed["error"]
