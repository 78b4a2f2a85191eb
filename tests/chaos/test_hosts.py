"""Several hosts: workers in their own network namespaces, sharing only Redis, PostgreSQL
and the object store, which run on the bridge between them (`tools.netns`).

Each host has its own data root (its scratch and cache) and no shared filesystem: whatever
one host needs of another's work, it gets from the store. The scenario:

1. a shard job's pieces are written by both worker hosts;
2. a train job runs on host A; every process of A is SIGKILLed mid-run (a power cut);
3. the job resumes on host B from the store's newest checkpoint and ends with exactly its
   epochs;
4. the API, on a third host, serves predictions from the model B finished.

Everything (processes, namespaces, the bridge, the servers) is torn down after, also on
failure. Needs root for `ip netns`; skipped with the reason otherwise (a failure under CI).
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.config import Settings
from core.files import Files
from tests.chaos.conftest import TINY_TRAIN
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import REPO, service_env, wait_for
from tools import netns
from tools.private_services import postgres_server, redis_server
from tools.processes import free_port
from tools.seaweed import seaweed_server, weed_binary

pytestmark = pytest.mark.chaos

BUCKET = "tinyres"
STORAGE_URL = f"s3://{BUCKET}/hosts"
EPOCHS = 6


def _require_namespaces() -> None:
    reason = netns.available() or (None if weed_binary() else "the weed binary is missing")
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"several-hosts test cannot run under CI: {reason}")
    pytest.skip(reason)


class Cluster:
    """The hosts, the shared servers and how each host's processes are configured."""

    def __init__(self, net: netns.HostNetwork, shared: dict[str, str], workdir: Path) -> None:
        self.net, self.shared, self.workdir = net, shared, workdir
        self.api_base = ""

    def env(self, host: netns.Host, **extra: str) -> dict[str, str]:
        return service_env(
            host.scratch / "data",
            **self.shared,
            TINYRES_LEASE_SECONDS="3",
            TINYRES_PROGRESS_INTERVAL="0.5",
            TINYRES_STORAGE_RETRY_SECONDS="20",
            **extra,
        )

    def worker(self, host: netns.Host, queues: str, tag: str) -> None:
        command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"]
        command += ["--queues", queues, "--concurrency", "1", "--pool", "prefork"]
        command += ["--hostname", f"{tag}@{host.name}", "--loglevel", "INFO"]
        command += ["--without-gossip", "--without-mingle", "--max-tasks-per-child", "1"]
        host.popen(command, env=self.env(host), log=self.log(host, tag), cwd=REPO)

    def api(self, host: netns.Host) -> str:
        port = 8000
        env = self.env(host, TINYRES_HOST=host.address, TINYRES_PORT=str(port))
        host.popen([sys.executable, "-m", "app"], env=env, log=self.log(host, "api"), cwd=REPO)
        self.api_base = f"http://{host.address}:{port}"
        wait_for(self._healthy, timeout=90)
        return self.api_base

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self, host: netns.Host, tag: str) -> Path:
        return self.workdir / f"{host.name}-{tag}.log"

    def job(self, job_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.api_base}/jobs/{job_id}", timeout=10)
        answer.raise_for_status()
        return dict(answer.json())

    def wait_finished(self, job_id: str, timeout: float) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in ("succeeded", "failed", "cancelled") else None

        job = wait_for(finished, timeout=timeout, interval=0.5)
        assert isinstance(job, dict)
        return job


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    _require_namespaces()
    with netns.HostNetwork(["a", "b", "api"], tmp_path / "hosts") as net:
        gateway = net.gateway
        with (
            redis_server(tmp_path / "redis", gateway, free_port()) as broker,
            postgres_server(tmp_path / "postgres", gateway, free_port()) as database,
            seaweed_server(tmp_path / "s3", address=gateway) as s3,
        ):
            s3.create_bucket(BUCKET)
            shared = {
                "TINYRES_BROKER_URL": broker,
                "TINYRES_DATABASE_URL": database,
                "TINYRES_STORAGE_URL": STORAGE_URL,
                **s3.env(),
            }
            yield Cluster(net, shared, tmp_path)


def _publish_source(cluster: Cluster, workdir: Path) -> str:
    """Put a digits source (a .tar in the Tiny ImageNet layout) into the store, as an
    upload would, from a client machine's own folder."""
    source = make_digits_tiny_imagenet(
        workdir / "client" / "digits", classes=4, train_per_class=40, val_per_class=8, seed=3
    )
    archive = workdir / "client" / "data" / "uploads" / "digits.tar"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=".")
    settings = Settings(
        data_root=workdir / "client" / "data",
        storage_url=STORAGE_URL,
        s3_endpoint_url=cluster.shared["TINYRES_S3_ENDPOINT_URL"],
    )
    Files(settings).publish(archive)
    return "uploads/digits.tar"


def _shard_parts_done(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(
        1 for line in text.splitlines() if "tinyres.shard_part" in line and "succeeded" in line
    )


def test_two_worker_hosts_share_a_shard_job_and_hand_a_train_job_over(
    cluster: Cluster, tmp_path: Path, timings: Any
) -> None:
    hosts = cluster.net.hosts
    base = cluster.api(hosts["api"])
    source = _publish_source(cluster, tmp_path)
    cluster.worker(hosts["a"], "datasets,training", "a")
    cluster.worker(hosts["b"], "datasets", "b")

    # 1. The shard job's pieces are written by both hosts.
    answer = httpx.post(
        f"{base}/jobs/shard",
        json={"source": source, "dataset": "digits", "num_shards": 8},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    shard = cluster.wait_finished(answer.json()["id"], timeout=240)
    assert shard["state"] == "succeeded", shard["error"]
    parts = {name: _shard_parts_done(cluster.log(hosts[name], name)) for name in ("a", "b")}
    assert parts["a"] > 0 and parts["b"] > 0, parts
    assert httpx.get(f"{base}/datasets/digits", timeout=30).status_code == 200

    # 2. A train job runs on host A; all of A dies mid-run.
    answer = httpx.post(
        f"{base}/jobs/train", json={"dataset": "digits", **TINY_TRAIN, "epochs": EPOCHS}
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]

    def two_epochs_done() -> bool:
        job = cluster.job(job_id)
        assert job["state"] not in ("failed", "cancelled"), job["error"]
        return len(job["history"]) >= 2 and job["state"] == "running"

    wait_for(two_epochs_done, timeout=300, interval=0.3)
    killed_at = time.monotonic()
    hosts["a"].kill_all()
    epochs_before = len(cluster.job(job_id)["history"])
    assert epochs_before < EPOCHS, "the job ended before host A was killed; make it longer"

    # 3. Host B takes the training queue too: the lease sweep sends the job again and B
    #    resumes it from the store's newest checkpoint (A's disk is gone with A).
    cluster.worker(hosts["b"], "training", "b-training")
    job = cluster.wait_finished(job_id, timeout=420)
    timings("train job resumed on another host", time.monotonic() - killed_at)
    assert job["state"] == "succeeded", job["error"]
    assert [entry["epoch"] for entry in job["history"]] == list(range(1, EPOCHS + 1))
    assert job["attempts"] >= 2

    # 4. The API (a third host) serves the model B finished, from the store.
    image = next((tmp_path / "client" / "digits" / "val" / "images").iterdir()).read_bytes()
    answer = httpx.post(
        f"{base}/predict",
        files={"image": ("x.jpg", io.BytesIO(image), "image/jpeg")},
        data={"model": job_id},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == job_id
    # No host shares another's disk: the API host never held the model but in its cache.
    api_files = list((hosts["api"].scratch / "data").rglob("model.keras"))
    assert all("cache" in path.parts for path in api_files), api_files
