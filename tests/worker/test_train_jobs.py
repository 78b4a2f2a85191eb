"""Train jobs end to end: the API, a real worker process, checkpoints on disk.

Resume exactness, resume validation, a worker killed by SIGKILL in the middle of an epoch,
the same job (train, resume, cancel, crash-resume) under each Keras backend, and the
models endpoints.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core import layout
from core.config import Settings
from model.resnet import Resnet
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import service_env, wait_for, worker_process
from worker import sharding

pytestmark = pytest.mark.slow

TINY = {"width": 8, "levels": [1, 1], "batch_size": 16, "learning_rate": 0.05, "l2": 0.0001}


@pytest.fixture
def root(data_root: Path) -> Path:
    source = make_digits_tiny_imagenet(
        data_root / "src", classes=4, train_per_class=24, val_per_class=4, seed=2
    )
    sharding.shard_dataset(source, data_root / "datasets" / "digits", num_shards=2, seed=0)
    return data_root


@pytest.fixture
def api(root: Path) -> Iterator[TestClient]:
    settings = Settings(data_root=root, lease_seconds=3)
    with TestClient(create_app(settings)) as client:
        yield client


def _env(root: Path, **extra: str) -> dict[str, str]:
    return service_env(root, TINYRES_LEASE_SECONDS="3", TINYRES_PROGRESS_INTERVAL="0.2", **extra)


def _submit(client: TestClient, **body: Any) -> str:
    answer = client.post("/jobs/train", json={"dataset": "digits", **TINY, **body})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _wait_finished(client: TestClient, job_id: str, log: Path, timeout: float = 180) -> dict:
    def finished() -> dict[str, Any] | None:
        job = client.get(f"/jobs/{job_id}").json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(finished, timeout=timeout)
    assert isinstance(job, dict)
    assert job["state"] == "succeeded", (job, log.read_text()[-5000:])
    return job


def _weights(root: Path, job_id: str) -> list[np.ndarray]:
    settings = Settings(data_root=root)
    model = keras.saving.load_model(layout.model_path(settings, job_id))
    assert isinstance(model, Resnet)
    return [np.asarray(w) for w in model.weights]


def test_resume_continues_exactly(api: TestClient, root: Path, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    env = _env(root, TINYRES_DETERMINISTIC="true")
    with worker_process(env, "training", log=log, max_tasks_per_child=1):
        straight = _submit(api, epochs=2)
        _wait_finished(api, straight, log)
        first_half = _submit(api, epochs=1)
        _wait_finished(api, first_half, log)

        # What a resume may not do: 422 with the reason, nothing queued.
        for body, reason in (
            ({"epochs": 2, "resume_from": "nope"}, "no job"),
            ({"epochs": 2, "resume_from": first_half, "width": 16}, "width contradicts"),
            ({"epochs": 2, "resume_from": first_half, "levels": [2, 1]}, "levels contradicts"),
            ({"epochs": 3, "resume_from": first_half, "initial_epoch": 2}, "no checkpoint"),
            ({"epochs": 1, "resume_from": first_half}, "nothing to train"),
        ):
            answer = api.post("/jobs/train", json={"dataset": "digits", **body})
            assert answer.status_code == 422, answer.text
            assert reason in answer.json()["detail"]

        resumed_answer = api.post(
            "/jobs/train",
            json={"dataset": "digits", **TINY, "epochs": 2, "resume_from": first_half},
        )
        assert resumed_answer.status_code == 202, resumed_answer.text
        resumed = resumed_answer.json()
        assert resumed["params"]["initial_epoch"] == 1
        assert resumed["params"]["width"] == 8 and resumed["params"]["levels"] == [1, 1]
        job = _wait_finished(api, resumed["id"], log)

    # The parent's epoch comes first, marked as the parent's; the new one is unmarked.
    assert [entry["epoch"] for entry in job["history"]] == [1, 2]
    assert job["history"][0]["from_job"] == first_half and "from_job" not in job["history"][1]
    parent = api.get(f"/jobs/{first_half}").json()["history"][0]
    assert {k: v for k, v in job["history"][0].items() if k != "from_job"} == parent
    for a, b in zip(_weights(root, straight), _weights(root, resumed["id"]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)

    models = api.get("/models").json()["models"]
    assert {m["id"] for m in models} == {straight, first_half, resumed["id"]}
    model = api.get(f"/models/{straight}").json()
    assert model["dataset"] == "digits" and model["width"] == 8 and model["epochs"] == 2
    assert [c["label"] for c in model["classes"]] == [
        "digit zero",
        "digit one",
        "digit two",
        "digit three",
    ]
    assert "val_accuracy" in model["metrics"]
    chart = api.get(f"/jobs/{straight}/history.png")
    assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG")


@pytest.mark.heavy  # a real worker on each backend, a few minutes: `make heavy`
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_worker_killed_mid_epoch_is_replaced_and_the_job_finishes(
    api: TestClient, root: Path, tmp_path: Path, backend: str
) -> None:
    log = tmp_path / "worker.log"
    epochs = 4
    env = _env(root, TINYRES_KERAS_BACKEND=backend)
    job_id = _submit(api, epochs=epochs, batch_size=4)
    with worker_process(env, "training", log=log, max_tasks_per_child=1) as first:

        def mid_epoch() -> bool:
            job = api.get(f"/jobs/{job_id}").json()
            return len(job["history"]) >= 1 and job["progress"].get("step", 0) > 0

        wait_for(mid_epoch, timeout=180, interval=0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    killed = api.get(f"/jobs/{job_id}").json()
    assert killed["state"] == "running"
    done_before = len(killed["history"])

    with worker_process(env, "training", log=log, max_tasks_per_child=1):
        job = _wait_finished(api, job_id, log)
    assert job["attempts"] == 2
    assert job["result"]["keras_backend"] == backend
    assert [entry["epoch"] for entry in job["history"]] == list(range(1, epochs + 1))
    assert done_before < epochs
    leftovers = [p.name for p in layout.job_dir(Settings(data_root=root), job_id).rglob(".tmp-*")]
    assert leftovers == []


@pytest.mark.heavy  # a real worker on each backend, a few minutes: `make heavy`
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_same_job_trains_resumes_and_cancels_on_each_backend(
    api: TestClient, root: Path, tmp_path: Path, backend: str
) -> None:
    log = tmp_path / "worker.log"
    env = _env(root, TINYRES_KERAS_BACKEND=backend)
    with worker_process(env, "training", log=log):
        first = _submit(api, epochs=1)
        done = _wait_finished(api, first, log)
        assert done["result"]["keras_backend"] == backend
        assert done["result"]["evaluation"]["model"] == first
        assert {"initial_accuracy", "val_accuracy"} <= set(done["metrics"])
        assert done["progress"]["fraction"] == 1.0 and done["progress"]["steps"] >= 1
        assert layout.checkpoint_epochs(Settings(data_root=root), first) == [1]

        resumed = _submit(api, epochs=2, resume_from=first)
        job = _wait_finished(api, resumed, log)
        assert [(e["epoch"], e.get("from_job")) for e in job["history"]] == [(1, first), (2, None)]
        assert np.isfinite(job["history"][-1]["loss"])

        # A long job, cancelled mid-epoch: cancelled within 5 s, its checkpoints kept.
        long = _submit(api, epochs=50, batch_size=4)

        def mid_epoch() -> bool:
            progress = api.get(f"/jobs/{long}").json()["progress"]
            return progress.get("epoch", 0) >= 2 and progress.get("step", 0) > 0

        wait_for(mid_epoch, timeout=180, interval=0.05)
        asked = time.monotonic()
        assert api.post(f"/jobs/{long}/cancel").status_code in (200, 202)

        def cancelled() -> dict | None:
            answer = api.get(f"/jobs/{long}").json()
            return answer if answer["state"] == "cancelled" else None

        final = wait_for(cancelled, timeout=30, interval=0.05)
        assert time.monotonic() - asked < 5
        assert isinstance(final, dict) and final["error"] is None
        assert layout.checkpoint_epochs(Settings(data_root=root), long)[-1] >= 1
    # Either backend's model file loads here (this process runs TensorFlow).
    assert len(_weights(root, resumed)) > 0
