"""The broker down, then back: the API stays alive and says why it cannot take jobs (503
with a reason, /readyz 503, /healthz 200), and takes them again, without a restart, once
Redis is back; the worker reconnects by itself and runs them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.conftest import FINISHED, PrivateRedis, chaos_env, tail, wait_worker_ready
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import api_process, wait_for, worker_process

pytestmark = pytest.mark.chaos


def test_broker_down_answers_503_and_recovers_without_restarts(
    data_root: Path, private_redis: PrivateRedis, tmp_path: Path, timings: Any
) -> None:
    make_digits_tiny_imagenet(
        data_root / "sources" / "digits", classes=4, train_per_class=6, val_per_class=2
    )
    shard = {"source": "sources/digits", "dataset": "digits", "num_shards": 2}
    env = chaos_env(data_root, private_redis.url)
    log = tmp_path / "worker.log"
    with (
        worker_process(env, "datasets", log=log, name="patient") as worker,
        api_process(env, log=tmp_path / "api.log") as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        wait_worker_ready(worker, log)
        assert client.get("/readyz").status_code == 200

        private_redis.stop()
        went = time.monotonic()
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["job_store"] == "ok"
        assert ready.json()["checks"]["broker"].startswith("unavailable")
        asked = time.monotonic()
        refused = client.post("/jobs/shard", json=shard)
        answered = time.monotonic() - asked
        timings("broker down -> POST /jobs/shard answered 503", answered)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/json"
        assert "broker" in refused.json()["detail"]
        assert refused.headers.get("retry-after")
        assert answered < 15
        # The job store still answers while the broker is down. The refused job is kept,
        # failed with the same reason, so nothing is queued that no worker will ever see.
        listing = client.get("/jobs")
        assert listing.status_code == 200
        [kept] = listing.json()["jobs"]
        assert kept["state"] == "failed" and "broker" in kept["error"]
        time.sleep(max(0.0, 3 - (time.monotonic() - went)))

        private_redis.start()
        back = time.monotonic()
        wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30)
        timings("Redis back -> /readyz 200 (same API process)", time.monotonic() - back)
        accepted = client.post("/jobs/shard", json=shard)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]

        def finished() -> dict[str, Any] | None:
            job = client.get(f"/jobs/{job_id}").json()
            return job if job["state"] in FINISHED else None

        job = wait_for(finished, timeout=120)
        timings("Redis back -> a new shard job succeeded", time.monotonic() - back)
        assert isinstance(job, dict)
        assert job["state"] == "succeeded", (job, tail(log))
        assert job["result"]["counts"] == {"train": 24, "val": 8}
        assert worker.poll() is None, "the worker must ride out the outage"
