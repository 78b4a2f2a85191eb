"""A training worker told to stop (SIGTERM) hands its running job back at once: the job
stops at the next batch, keeps its checkpoints, releases its lease without counting an
attempt, and the next worker continues it from its last checkpoint to the end."""

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
    job_store,
    lease_of,
    make_digits_dataset,
    tail,
    wait_worker_ready,
)
from tests.utils.services import wait_for, worker_process

pytestmark = pytest.mark.chaos

EPOCHS = 8


@pytest.fixture
def api(data_root: Path, private_redis: PrivateRedis) -> Iterator[TestClient]:
    make_digits_dataset(data_root)
    with TestClient(create_app(chaos_settings(data_root, private_redis.url))) as client:
        yield client


@pytest.mark.parametrize(
    "target",
    [
        # `docker stop`, Kubernetes, `kill <pid>`: only the worker's main process is told.
        "main",
        # systemd, a terminal's process group: the pool child is told as well.
        "group",
    ],
)
def test_sigterm_hands_a_running_train_job_back_at_once(
    target: str,
    api: TestClient,
    data_root: Path,
    private_redis: PrivateRedis,
    tmp_path: Path,
    timings: Any,
) -> None:
    answer = api.post("/jobs/train", json={"dataset": "digits", **TINY_TRAIN, "epochs": EPOCHS})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    env = chaos_env(data_root, private_redis.url)
    store = job_store(data_root)
    first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"

    with worker_process(
        env, "training", log=first_log, max_tasks_per_child=1, name="leaving"
    ) as first:
        wait_worker_ready(first, first_log)

        def mid_epoch() -> dict[str, Any] | None:
            job = api.get(f"/jobs/{job_id}").json()
            progress = job["progress"]
            inside = progress.get("epoch") == len(job["history"]) + 1 and progress.get("step")
            return job if len(job["history"]) >= 1 and inside else None

        before = wait_for(mid_epoch, timeout=180, interval=0.05)
        assert isinstance(before, dict)
        if target == "main":
            first.send_signal(signal.SIGTERM)
        else:
            os.killpg(first.pid, signal.SIGTERM)
        asked = time.monotonic()

        def handed_back() -> bool:
            owner, expires, _, state = lease_of(store, job_id)
            return state == "running" and owner is None and expires is None

        wait_for(handed_back, timeout=30, interval=0.05)
        released = time.monotonic() - asked
        first.wait(60)
        exited = time.monotonic() - asked

    timings(f"SIGTERM ({target}) -> lease released", released)
    timings(f"SIGTERM ({target}) -> worker exited", exited)
    # Promptly: within seconds, and before the job could end there (a warm shutdown that
    # waited for the task would have let it train to the end: it is unfinished, below).
    assert released < 5, tail(first_log)
    assert exited < 10, tail(first_log)
    assert first.returncode == 0, tail(first_log)
    assert "handed back for another worker" in first_log.read_text()

    # Handed back: still running, no attempt counted, and nothing of the interrupted epoch
    # was recorded (no history entry, no checkpoint): only whole epochs are kept.
    paused = api.get(f"/jobs/{job_id}").json()
    owner, _, attempts, state = lease_of(store, job_id)
    assert (state, owner, attempts) == ("running", None, 0)
    done = [entry["epoch"] for entry in paused["history"]]
    assert done == list(range(1, len(done) + 1)) and 1 <= len(done) < EPOCHS
    settings = Settings(data_root=data_root)
    assert layout.checkpoint_epochs(settings, job_id)[-1] == len(done)
    assert paused["progress"]["fraction"] == round(len(done) / EPOCHS, 6)

    with worker_process(
        env, "training", log=second_log, max_tasks_per_child=1, name="arriving"
    ) as second:
        wait_worker_ready(second, second_log)
        continued = time.monotonic()

        def finished() -> dict[str, Any] | None:
            job = api.get(f"/jobs/{job_id}").json()
            return job if job["state"] in FINISHED else None

        job = wait_for(finished, timeout=240)
        assert isinstance(job, dict)
        assert job["state"] == "succeeded", (job, tail(second_log))
        timings(
            f"SIGTERM ({target}): next worker ready -> job succeeded", time.monotonic() - continued
        )

    assert [entry["epoch"] for entry in job["history"]] == list(range(1, EPOCHS + 1))
    assert job["history"][: len(done)] == paused["history"]
    assert job["attempts"] == 1
    assert f"continuing from its own checkpoint at epoch {len(done)}" in second_log.read_text()
    leftovers = [p.name for p in layout.job_dir(settings, job_id).rglob(".tmp-*")]
    assert leftovers == []
