"""The job side on an object store, end to end with real processes: a real SeaweedFS, a
private Redis, a SQLite job store outside every data root, the API (in-process, with an
empty data root of its own) and `celery worker`s, each with its own empty data root.

- a dataset that is only in the store trains on a worker that reads it through its cache;
  the checkpoints (with their sidecars), TensorBoard files, model, classes and evaluation
  are objects, and the worker's data root holds nothing but its cache and the job's log;
- the API lists the model, serves /predict and its evaluation from the store;
- a second worker with an empty data root resumes the model from its checkpoint in the
  store (``resume_from``); a truncated checkpoint object is refused, with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.submission import create_and_publish
from core.files import Files
from core.job_files import SIDECAR_SUFFIX, checkpoint_key, stored_checkpoints
from core.jobs import JobStore
from tests.chaos.conftest import (
    TINY_TRAIN,
    tail,
    wait_worker_ready,
)
from tests.utils.datasets import encode
from tests.utils.seaweed import seaweed_fixture  # noqa: F401
from tests.utils.services import worker_process
from tests.utils.store_hosts import StoreHosts, files_under
from tests.utils.store_jobs import (  # noqa: F401
    api_client,
    hosts_fixture,
    publish_dataset,
    wait_finished,
    worker_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def test_train_serve_and_resume_from_the_store(hosts: StoreHosts, tmp_path: Path) -> None:
    publish_dataset(hosts)
    files: Files = hosts.files(hosts.root("reader"))
    with api_client(hosts) as api:
        body = {"dataset": "digits", **TINY_TRAIN, "epochs": 2}
        answer = api.post("/jobs/train", json=body)
        assert answer.status_code == 202, answer.text
        model_id = answer.json()["id"]
        root_a, log_a = hosts.root("worker-a"), tmp_path / "worker-a.log"
        with worker_process(worker_env(hosts, root_a), "training", log=log_a) as worker:
            wait_worker_ready(worker, log_a)
            job = wait_finished(api, model_id)
        assert job["state"] == "succeeded", (job, tail(log_a))
        assert [entry["epoch"] for entry in job["history"]] == [1, 2]

        # Everything the job made is in the store; the worker kept only caches and its log.
        keys = files.list(f"jobs/{model_id}")
        for name in ("model.keras", "classes.json", "evaluation.json", "confusion.png"):
            assert f"jobs/{model_id}/{name}" in keys, keys
        assert any(key.startswith(f"jobs/{model_id}/tensorboard/") for key in keys), keys
        committed = stored_checkpoints(files, model_id)
        assert [c.epoch for c in committed] == [1, 2]
        for checkpoint in committed:
            assert files.info(checkpoint.key).size == checkpoint.size
        held = files_under(root_a)
        assert all(p.startswith("cache/") or p.startswith("logs/") for p in held), held
        assert any(p.endswith("/objects/datasets/digits/manifest.json") for p in held), held

        # The API, whose data root is empty, serves the model from the store.
        listed = api.get("/models").json()["models"]
        assert [m["id"] for m in listed] == [model_id] and len(listed[0]["classes"]) == 4
        image = {"image": ("a.png", encode(_digit(), "PNG"))}
        predicted = api.post("/predict", files=image, data={"model": model_id})
        assert predicted.status_code == 200, predicted.text
        evaluation = api.get(f"/models/{model_id}/evaluation")
        assert evaluation.status_code == 200 and evaluation.json()["model"] == model_id
        chart = api.get(f"/models/{model_id}/confusion.png")
        assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG")
        assert files_under(hosts.root("api")) and all(
            p.startswith("cache/") for p in files_under(hosts.root("api"))
        )

        # Resumed on another host, from the store. (POST /jobs/train checks resume_from
        # against the API host's disk until app/submission.py asks the store: submitted
        # here with the params it would record.)
        celery, store = api.app.state.celery, JobStore(hosts.database_url)  # type: ignore[attr-defined]
        params = {**store.get(model_id).params, "resume_from": model_id, "initial_epoch": 2}
        # First from a checkpoint whose object was cut short in the store: refused.
        newest = checkpoint_key(model_id, 2)
        whole = files.get_bytes(newest)
        files.put_bytes(whole[: len(whole) // 2], newest)
        damaged_id = create_and_publish(celery, store, "train", {**params, "epochs": 3}).id
        root_b, log_b = hosts.root("worker-b"), tmp_path / "worker-b.log"
        with worker_process(worker_env(hosts, root_b), "training", log=log_b) as worker:
            wait_worker_ready(worker, log_b)
            damaged = wait_finished(api, damaged_id)
            files.put_bytes(whole, newest)  # mended
            resumed_id = create_and_publish(celery, store, "train", {**params, "epochs": 3}).id
            resumed = wait_finished(api, resumed_id)
    assert damaged["state"] == "failed", (damaged, tail(log_b))
    assert "truncated" in damaged["error"] and newest in damaged["error"], damaged["error"]
    assert resumed["state"] == "succeeded", (resumed, tail(log_b))
    history = resumed["history"]
    assert [entry["epoch"] for entry in history] == [1, 2, 3]
    assert [entry.get("from_job") for entry in history] == [model_id, model_id, None]
    assert f"jobs/{resumed_id}/model.keras" in files.list(f"jobs/{resumed_id}")
    assert files.exists(checkpoint_key(resumed_id, 3) + SIDECAR_SUFFIX)


def _digit() -> Any:
    import numpy as np

    from tools.datasets import digit_image

    return digit_image(3, np.random.default_rng(0))
