"""Helpers of the job-side store tests (tests/worker/test_store_jobs.py,
tests/chaos/test_store_train_killed.py): several "hosts" (``tests/utils/store_hosts.py``)
on a real SeaweedFS and a private Redis, a dataset that is only in the store, the API
in-process on an empty data root of its own.

    from tests.utils.store_jobs import hosts_fixture  # noqa: F401  (the `hosts` fixture)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.chaos.conftest import PrivateRedis, make_digits_dataset
from tests.utils.seaweed import new_bucket
from tests.utils.services import wait_for
from tests.utils.store_hosts import StoreHosts
from tools.seaweed import SeaweedServer

FINISHED = ("succeeded", "failed", "cancelled")
LEASE = "3"


@pytest.fixture(name="hosts")
def hosts_fixture(
    seaweed: SeaweedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StoreHosts]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    for name, value in seaweed.env().items():  # this process (the API) reads the store too
        monkeypatch.setenv(name, value)
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield StoreHosts(seaweed, new_bucket(seaweed), redis.url, tmp_path)
    finally:
        redis.stop()


def publish_dataset(hosts: StoreHosts, name: str = "digits") -> None:
    """Shard a small dataset on a scratch "host", publish its files (the manifest last),
    then throw the scratch host away: the dataset is only in the store."""
    scratch = hosts.root("sharder")
    make_digits_dataset(scratch, name)
    files = hosts.files(scratch)
    folder = scratch / "datasets" / name
    shards = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "manifest.json")
    for path in [*shards, folder / "manifest.json"]:
        files.publish(path)
    shutil.rmtree(scratch)


def wait_finished(api: TestClient, job_id: str, timeout: float = 240) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = api.get(f"/jobs/{job_id}").json()
        return job if job["state"] in FINISHED else None

    return wait_for(finished, timeout=timeout, interval=0.3)  # type: ignore[return-value]


def api_client(hosts: StoreHosts) -> TestClient:
    return TestClient(create_app(hosts.settings(hosts.root("api"), lease_seconds=int(LEASE))))


def worker_env(hosts: StoreHosts, root: Path) -> dict[str, str]:
    return hosts.env(root, TINYRES_LEASE_SECONDS=LEASE, TINYRES_PROGRESS_INTERVAL="0.2")
