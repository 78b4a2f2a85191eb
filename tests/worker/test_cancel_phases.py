"""Cancel takes effect within 5 s in every phase of a train job, through a real worker.

The worker runs with the default lease (60 s, so its heartbeat renews every 15 s: the
cancel is picked up by the job's own poll) and a width-16 network of the write-up's depth,
whose first train step takes about 15 s to trace on 2 CPUs. Each case waits until the job
reports the phase (`progress.phase`), then cancels through the API and measures the time
until the job reads `cancelled`. The latencies are printed (`pytest -s`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.config import Settings
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import service_env, wait_for, worker_process
from worker import sharding

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

# 4 train steps and 16 validation steps an epoch: every phase lasts long enough to hit.
JOB = {"dataset": "digits", "width": 16, "batch_size": 32, "epochs": 20, "learning_rate": 0.01}
LIMIT_SECONDS = 5.0


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_root = tmp_path_factory.mktemp("cancel") / "data"
    source = make_digits_tiny_imagenet(
        data_root / "src", classes=4, train_per_class=32, val_per_class=128, seed=3
    )
    sharding.shard_dataset(source, data_root / "datasets" / "digits", num_shards=2, seed=0)
    return data_root


@pytest.fixture(scope="module")
def api(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_root=root))) as client:
        yield client


@pytest.fixture(scope="module")
def worker(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("cancel-log") / "worker.log"
    env = service_env(root, TINYRES_PROGRESS_INTERVAL="0.2")
    with worker_process(env, "training", log=log, max_tasks_per_child=1):
        yield log


def _progress(api: TestClient, job_id: str) -> dict[str, Any]:
    job = api.get(f"/jobs/{job_id}").json()
    return {"state": job["state"], "history": len(job["history"]), **job["progress"]}


def _cancel_when(
    api: TestClient, log: Path, reached: Callable[[dict[str, Any]], bool], body: dict[str, Any]
) -> float:
    job_id = str(api.post("/jobs/train", json={**JOB, **body}).json()["id"])
    wait_for(lambda: reached(_progress(api, job_id)), timeout=300, interval=0.02)
    seen = _progress(api, job_id)
    asked = time.monotonic()
    assert api.post(f"/jobs/{job_id}/cancel").status_code in (200, 202)

    def finished() -> dict[str, Any] | None:
        job = api.get(f"/jobs/{job_id}").json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(finished, timeout=60, interval=0.02)
    latency = time.monotonic() - asked
    print(f"\ncancel in phase {seen.get('phase')!r} at {seen}: {latency:.2f} s")
    assert isinstance(job, dict) and job["state"] == "cancelled", (job, log.read_text()[-3000:])
    return latency


def _phase(name: str, **more: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p.get("phase") == name and all(p.get(k, 0) >= v for k, v in more.items())


CASES = {
    # The worker's pool child imports TensorFlow and builds the input pipeline.
    "setup": lambda p: p["state"] == "running",
    "sanity_check": _phase("sanity_check"),
    # Epoch 1, step 0: the first train step is being traced and compiled.
    "tracing": lambda p: p.get("phase") == "training" and p.get("epoch") == 1,
    "epoch": _phase("training", history=1, step=1),
    "validation": _phase("validation", history=1),
    # Epoch 1's checkpoint is being written: its history entry is committed after it.
    "checkpoint": lambda p: p.get("phase") == "checkpoint" and p["history"] == 0,
}


@pytest.mark.parametrize("phase", list(CASES))
def test_cancel_takes_effect_within_5_s(
    api: TestClient, worker: Path, phase: str, record_property: Callable[[str, Any], None]
) -> None:
    latency = _cancel_when(api, worker, CASES[phase], {})
    record_property(f"cancel_seconds_{phase}", round(latency, 2))
    assert latency < LIMIT_SECONDS
