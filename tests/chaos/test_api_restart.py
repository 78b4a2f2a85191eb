"""The API restarted while a train job runs: the job does not notice (it runs in the
worker), the new API process shows the same job, and its progress keeps moving."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.conftest import (
    FINISHED,
    TINY_TRAIN,
    PrivateRedis,
    chaos_env,
    make_digits_dataset,
    tail,
    wait_worker_ready,
)
from tests.utils.services import api_process, wait_for, worker_process

pytestmark = pytest.mark.chaos

EPOCHS = 10


def test_api_restarted_while_a_job_runs_loses_nothing(
    data_root: Path, private_redis: PrivateRedis, tmp_path: Path, timings: Any
) -> None:
    make_digits_dataset(data_root)
    env = chaos_env(data_root, private_redis.url)
    log = tmp_path / "worker.log"
    with worker_process(env, "training", log=log, max_tasks_per_child=1, name="busy") as worker:
        with (
            api_process(env, log=tmp_path / "api-1.log") as base,
            httpx.Client(base_url=base, timeout=10) as client,
        ):
            answer = client.post(
                "/jobs/train", json={"dataset": "digits", **TINY_TRAIN, "epochs": EPOCHS}
            )
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["id"]
            wait_worker_ready(worker, log)

            def under_way() -> dict[str, Any] | None:
                job = client.get(f"/jobs/{job_id}").json()
                return job if job["state"] == "running" and job["history"] else None

            before = wait_for(under_way, timeout=120, interval=0.05)
            assert isinstance(before, dict)
            jobs_before = client.get("/jobs").json()["jobs"]
        # The first API process is gone (SIGTERM, graceful); the worker keeps training.
        stopped = time.monotonic()

        with (
            api_process(env, log=tmp_path / "api-2.log") as base,
            httpx.Client(base_url=base, timeout=10) as client,
        ):
            after = client.get(f"/jobs/{job_id}").json()
            timings("API stopped -> new API answers the job", time.monotonic() - stopped)
            assert after["state"] in ("running", "succeeded")
            for field in ("id", "kind", "params", "created_at", "started_at", "attempts"):
                assert after[field] == before[field], field
            assert after["history"][: len(before["history"])] == before["history"]
            listed = [job["id"] for job in client.get("/jobs").json()["jobs"]]
            assert listed == [job["id"] for job in jobs_before]
            # It trained on while no API was up, and the new API shows it moving on.
            assert after["progress"]["fraction"] > before["progress"]["fraction"]

            def moved_on() -> bool:
                fraction = client.get(f"/jobs/{job_id}").json()["progress"]["fraction"]
                return fraction > after["progress"]["fraction"] or fraction == 1.0

            wait_for(moved_on, timeout=60, interval=0.1)

            def finished() -> dict[str, Any] | None:
                job = client.get(f"/jobs/{job_id}").json()
                return job if job["state"] in FINISHED else None

            job = wait_for(finished, timeout=180)
            assert isinstance(job, dict)
            assert job["state"] == "succeeded", (job, tail(log))
    assert [entry["epoch"] for entry in job["history"]] == list(range(1, EPOCHS + 1))
    assert job["attempts"] == 1  # the job never restarted: only the API did
