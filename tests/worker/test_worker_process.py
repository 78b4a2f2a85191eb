"""A real `celery worker` process runs jobs sent through the API, over both brokers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from core.config import Settings
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import redis_url, require_service, service_env, wait_for, worker_process


@pytest.fixture(params=["embedded", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "embedded":
        return None
    url = require_service("redis", redis_url())
    redis.Redis.from_url(url).flushdb()  # the test database: no messages left from before
    return url


@pytest.fixture
def stack(data_root: Path, broker_url: str | None, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The API in process and one real worker process, sharing a data root and broker."""
    extra = {"TINYRES_LEASE_SECONDS": "3"}
    if broker_url:
        extra["TINYRES_BROKER_URL"] = broker_url
    settings = Settings(data_root=data_root, broker_url=broker_url, lease_seconds=3)
    log = tmp_path / "worker.log"
    with (
        worker_process(service_env(data_root, **extra), log=log, concurrency=2),
        TestClient(create_app(settings)) as client,
    ):
        yield {"client": client, "log": log, "settings": settings}


def _finished(client: TestClient, job_id: str) -> dict[str, Any] | None:
    job = client.get(f"/jobs/{job_id}").json()
    return job if job["state"] in ("succeeded", "failed", "cancelled") else None


def test_shard_job_fans_out_through_a_real_worker(stack: dict[str, Any], data_root: Path) -> None:
    client: TestClient = stack["client"]
    make_digits_tiny_imagenet(data_root / "src", classes=4, train_per_class=6, val_per_class=2)
    answer = client.post(
        "/jobs/shard", json={"source": "src", "dataset": "digits", "num_shards": 3}
    )
    assert answer.status_code == 202, answer.text
    job = wait_for(lambda: _finished(client, answer.json()["id"]), timeout=120)
    assert isinstance(job, dict)
    assert job["state"] == "succeeded", (job, stack["log"].read_text()[-4000:])
    assert job["progress"]["fraction"] == 1.0
    assert job["progress"]["images_written"] == job["progress"]["images_total"] == 32
    assert job["result"]["counts"] == {"train": 24, "val": 8}
    assert job["result"]["shards"] == {"train": 3, "val": 1}
    # One planning task and one task per shard really ran in the worker.
    log = stack["log"].read_text()
    assert log.count("Task tinyres.shard_part[") >= 2 * 4  # received + succeeded lines
    dataset = client.get("/datasets/digits").json()
    assert [c["label"] for c in dataset["classes"]][:2] == ["digit zero", "digit one"]
    assert dataset["splits"]["train"]["count"] == 24
    png = client.get("/datasets/digits/preview.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_a_bad_source_fails_the_job_with_a_readable_error(
    stack: dict[str, Any], data_root: Path
) -> None:
    client: TestClient = stack["client"]
    (data_root / "empty").mkdir()
    answer = client.post("/jobs/shard", json={"source": "empty", "dataset": "nothing"})
    assert answer.status_code == 202
    job = wait_for(lambda: _finished(client, answer.json()["id"]), timeout=120)
    assert isinstance(job, dict)
    assert job["state"] == "failed" and job["error"], job
    assert "Traceback" not in job["error"]
    assert client.get("/datasets/nothing").status_code == 404
