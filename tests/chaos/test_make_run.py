"""`make run`: API and workers in the foreground on the embedded defaults; SIGTERM stops
every child; a second `make run` on the same data root finds the jobs of the first."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import REPO, free_port, service_env, wait_for

pytestmark = pytest.mark.chaos  # real `make run` processes, started twice (make chaos)


def _start(data_root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = service_env(data_root, TINYRES_PORT=str(port))
    with log.open("ab") as out:
        return subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """SIGTERM to `make` alone (what a supervisor sends); return what is still alive."""
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 4  # supervisord, the API and two workers at least
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=30)
    for leftover in alive:
        leftover.kill()
    return alive


def test_make_run_serves_stops_and_keeps_jobs(data_root: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "make-run.log"
    make_digits_tiny_imagenet(data_root / "src", classes=2, train_per_class=4, val_per_class=1)
    first = _start(data_root, port, log)
    try:
        wait_for(lambda: _ready(base), timeout=120)
        answer = httpx.post(f"{base}/jobs/shard", json={"source": "src", "dataset": "d"})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]

        def done() -> bool:
            return httpx.get(f"{base}/jobs/{job_id}").json()["state"] == "succeeded"

        wait_for(done, timeout=120)
    finally:
        alive = _stop(first)
    assert alive == [], f"children left running after SIGTERM: {alive}\n{log.read_text()[-3000:]}"

    second = _start(data_root, port, log)
    try:
        wait_for(lambda: _ready(base), timeout=120)
        jobs = httpx.get(f"{base}/jobs").json()["jobs"]
        assert [job["id"] for job in jobs] == [job_id]
        assert jobs[0]["state"] == "succeeded"
        assert httpx.get(f"{base}/datasets/d").status_code == 200
    finally:
        assert _stop(second) == []
    assert os.path.exists(data_root / "tinyres.sqlite")
