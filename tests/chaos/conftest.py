"""Fault injection with real processes: a private Redis that tests stop and restart, real
`celery worker` and API processes, and helpers to watch jobs while things break.

Nothing here simulates a fault: processes are killed with real signals and the broker is a
real `redis-server` on its own port (never the machine's Redis on 6379), started without
persistence, so a restart loses every queued message, as a crash of an unsaved Redis does.

Every chaos test is marked `chaos`; they are not part of the default run (`make chaos`).
Each test records how long recovery took; the numbers are printed at the end of the run.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from PIL import Image
from sqlalchemy import select

from core.config import Settings
from core.jobs import JobRow, JobStore
from tests.utils.datasets import _photos, make_digits_tiny_imagenet
from tests.utils.services import free_port, service_env, wait_for

LEASE_SECONDS = 3
# The architecture every chaos train job uses: tiny, so an epoch takes about a second.
TINY_TRAIN: dict[str, Any] = {
    "width": 8,
    "levels": [1, 1],
    "batch_size": 4,
    "learning_rate": 0.05,
    "l2": 0.0001,
}
FINISHED = ("succeeded", "failed", "cancelled")

_TIMINGS: list[tuple[str, str, float]] = []


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so `pytest tests/chaos` works with --strict-markers on its own.
    config.addinivalue_line(
        "markers", "chaos: kills or restarts real worker, API and Redis processes (make chaos)"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TIMINGS:
        return
    terminalreporter.section("chaos: time to recover")
    for test, label, seconds in _TIMINGS:
        terminalreporter.write_line(f"{seconds:7.1f} s  {label}  ({test})")


@pytest.fixture
def timings(request: pytest.FixtureRequest) -> Any:
    """`timings("what", seconds)` records a measured time for the summary at the end."""

    def record(label: str, seconds: float) -> None:
        _TIMINGS.append((request.node.name, label, seconds))
        request.node.user_properties.append((label, round(seconds, 2)))

    return record


# --------------------------------------------------------------------------- private Redis


class PrivateRedis:
    """A `redis-server` of this test alone, on a free port, that can go away and come back
    on the same port (clients reconnect to the same URL)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def start(self, timeout: float = 15) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self.ping, timeout=timeout, interval=0.05)

    def stop(self, *, kill: bool = True, timeout: float = 10) -> None:
        """SIGKILL (a crash: nothing saved, as configured) or SIGTERM (a clean stop)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(timeout)
        wait_for(lambda: not self.ping(), timeout=timeout, interval=0.05)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not on PATH; the chaos tests start their own"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = PrivateRedis(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- services


def chaos_env(data_root: Path, broker_url: str, **extra: str) -> dict[str, str]:
    """Environment of a worker or API process on the private broker, with short leases."""
    return service_env(
        data_root,
        TINYRES_BROKER_URL=broker_url,
        TINYRES_LEASE_SECONDS=str(LEASE_SECONDS),
        TINYRES_PROGRESS_INTERVAL="0.2",
        **extra,
    )


def chaos_settings(data_root: Path, broker_url: str) -> Settings:
    return Settings(data_root=data_root, broker_url=broker_url, lease_seconds=LEASE_SECONDS)


def wait_worker_ready(process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> float:
    """Wait until the worker whose output goes to `log` (its own) says it is ready."""
    started = time.monotonic()

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"worker exited early:\n{tail(log)}")
        return " ready." in log.read_text(errors="replace")

    wait_for(ready, timeout=timeout, interval=0.1)
    return time.monotonic() - started


def tail(log: Path, chars: int = 6000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def lease_of(store: JobStore, job_id: str) -> tuple[str | None, Any, int, str]:
    """(lease owner, lease expiry, attempts, state) as the job store holds them now."""
    with store.engine.connect() as connection:
        row = connection.execute(
            select(JobRow.lease_owner, JobRow.lease_expires, JobRow.attempts, JobRow.state).where(
                JobRow.id == job_id
            )
        ).one()
    return row[0], row[1], row[2], row[3]


def job_store(data_root: Path) -> JobStore:
    """The default job store of the services (the SQLite file under the data root)."""
    store = JobStore(Settings(data_root=data_root).effective_database_url)
    store.create_schema()
    return store


# --------------------------------------------------------------------------- datasets


def make_photo_source(root: Path, images: int, classes: int = 10, side: int = 320) -> Path:
    """A class-per-folder source of `images` real photo crops (`side` px JPEGs, about 30 kB
    each, like camera thumbnails): heavy enough that a shard takes a fraction of a second
    to write, so a worker can be caught in the middle of one."""
    rng = np.random.default_rng(0)
    crops = []
    for i in range(40):
        photo = _photos()[i % 2]
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        buffer = io.BytesIO()
        Image.fromarray(photo[top : top + side, left : left + side]).save(
            buffer, format="JPEG", quality=90
        )
        crops.append(buffer.getvalue())
    for i in range(images):
        path = root / f"class_{i % classes:02d}" / f"photo_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(crops[i % len(crops)])
    return root


def make_digits_dataset(data_root: Path, name: str = "digits") -> None:
    """A small sharded dataset (4 classes, 96 train and 16 val images) for train jobs."""
    from worker import sharding

    source = make_digits_tiny_imagenet(
        data_root / "sources" / name, classes=4, train_per_class=24, val_per_class=4, seed=2
    )
    sharding.shard_dataset(source, data_root / "datasets" / name, num_shards=2, seed=0)


def read_every_record(dataset_dir: Path) -> dict[str, list[tuple[str, int]]]:
    """Decode every record of every shard the manifest lists: {split: [(filename, label)]}.
    Raises if any file is truncated or any record or image is damaged."""
    import json

    import tensorflow as tf

    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    compression = "" if manifest.get("compression") == "NONE" else "GZIP"
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "filename": tf.io.FixedLenFeature([], tf.string),
    }
    out: dict[str, list[tuple[str, int]]] = {}
    for split, info in manifest["splits"].items():
        records = []
        for shard in info["shards"]:
            name = shard["file"] if isinstance(shard, dict) else shard
            for raw in tf.data.TFRecordDataset(str(dataset_dir / name), compression):
                example = tf.io.parse_single_example(raw, features)
                image = tf.io.decode_image(example["image"], channels=3)
                assert image.shape[-1] == 3 and image.shape[0] > 0
                records.append((example["filename"].numpy().decode(), int(example["label"])))
        out[split] = records
    return out
