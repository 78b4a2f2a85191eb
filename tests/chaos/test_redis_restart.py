"""The broker restarted in the middle of a shard job: Redis runs without persistence, so
the restart loses every queued part. The worker reconnects, the orphan sweeper sends the
job again, only the missing parts are written, and the API answers throughout (it reads
jobs from the job store, not from the broker)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.conftest import (
    FINISHED,
    PrivateRedis,
    chaos_env,
    make_photo_source,
    read_every_record,
    tail,
    wait_worker_ready,
)
from tests.utils.services import api_process, wait_for, worker_process

pytestmark = pytest.mark.chaos

IMAGES = 2000
SHARDS = 8


class Poller(threading.Thread):
    """GET `path` every 0.1 s until stopped; keeps every answer's status (or error)."""

    def __init__(self, base: str, path: str) -> None:
        super().__init__(daemon=True)
        self.base, self.path = base, path
        self.answers: list[int | str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while not self.halt.is_set():
                try:
                    self.answers.append(client.get(self.path).status_code)
                except httpx.HTTPError as exc:
                    self.answers.append(repr(exc))
                self.halt.wait(0.1)

    def stop(self) -> list[int | str]:
        self.halt.set()
        self.join(10)
        return self.answers


def test_redis_restarted_mid_job_loses_nothing(
    data_root: Path, private_redis: PrivateRedis, tmp_path: Path, timings: Any
) -> None:
    make_photo_source(data_root / "sources" / "photos", IMAGES)
    env = chaos_env(data_root, private_redis.url)
    log = tmp_path / "worker.log"
    with (
        worker_process(env, "datasets", log=log, concurrency=1, name="steady") as worker,
        api_process(env, log=tmp_path / "api.log") as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        wait_worker_ready(worker, log)
        answer = client.post(
            "/jobs/shard",
            json={"source": "sources/photos", "dataset": "photos", "num_shards": SHARDS},
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        poller = Poller(base, f"/jobs/{job_id}")
        poller.start()

        def some_parts_written() -> bool:
            progress = client.get(f"/jobs/{job_id}").json()["progress"]
            return 1 <= progress.get("shards_written", 0) <= SHARDS // 2

        wait_for(some_parts_written, timeout=120, interval=0.05)
        queued_before = _queued(private_redis)
        private_redis.stop()  # a crash: the queued parts are gone with it
        time.sleep(2)
        down = client.get(f"/jobs/{job_id}")
        assert down.status_code == 200 and down.json()["state"] == "running"
        private_redis.start()
        back = time.monotonic()
        assert _queued(private_redis) == 0  # nothing survived the restart

        def finished() -> dict[str, Any] | None:
            job = client.get(f"/jobs/{job_id}").json()
            return job if job["state"] in FINISHED else None

        job = wait_for(finished, timeout=120)
        timings("Redis back -> job succeeded", time.monotonic() - back)
        answers = poller.stop()
        assert worker.poll() is None, "the worker must survive the broker restart"

    assert isinstance(job, dict)
    assert job["state"] == "succeeded", (job, tail(log))
    assert queued_before > 0, "the restart was meant to lose queued parts"
    # The API answered every poll, before, during and after the outage.
    assert answers and all(status == 200 for status in answers), answers
    assert len(answers) > 20
    assert job["result"]["counts"] == {"train": IMAGES}
    records = read_every_record(data_root / "datasets" / "photos")
    assert len({name for name, _ in records["train"]}) == IMAGES
    leftovers = [p.name for p in (data_root / "datasets").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
    # The lost parts were sent again by one more planning run, nothing more.
    assert job["attempts"] == 2


def _queued(server: PrivateRedis) -> int:
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        return int(client.llen("datasets"))
    finally:
        client.close()
