"""Reaching this machine's Redis and PostgreSQL, and real worker and API processes.

Tests that need a server use it when it answers and skip with the reason when it does not,
except under CI=true, where a missing server fails the test: CI always runs everything.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tools.processes import free_port, stop_process_group

REPO = Path(__file__).resolve().parents[2]


def postgres_url() -> str:
    return os.environ.get(
        "TINYRES_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


def redis_url() -> str:
    return os.environ.get("TINYRES_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), 1):
            return True
    except OSError:
        return False


def require_service(name: str, url: str) -> str:
    """Return `url` if its server answers; else skip (fail under CI=true)."""
    if _answers(url):
        return url
    reason = f"{name} is not reachable at {url}; start it to run this test"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run every test: {reason}")
    pytest.skip(reason)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2) -> object:
    """Poll until `predicate()` is truthy and return it; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def service_env(data_root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYRES_")}
    env.update(
        TINYRES_DATA_ROOT=str(data_root),
        PYTHONPATH=str(REPO),
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_ENABLE_ONEDNN_OPTS="0",  # see tests/conftest.py
        CUDA_VISIBLE_DEVICES="",
    )
    env.update(extra)
    return env


@contextmanager
def worker_process(
    env: dict[str, str],
    queues: str = "datasets,training",
    *,
    log: Path,
    concurrency: int = 1,
    max_tasks_per_child: int | None = None,
    name: str = "test",
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery worker` process, stopped (and reaped) at the end."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--pool",
        "prefork",
        "--hostname",
        f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    if max_tasks_per_child:
        command += ["--max-tasks-per-child", str(max_tasks_per_child)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_process_group(process)


@contextmanager
def api_process(env: dict[str, str], *, log: Path) -> Iterator[str]:
    """The real API under uvicorn on a free port; yields its base URL once /healthz answers."""
    import httpx

    port = free_port()
    env = {**env, "TINYRES_PORT": str(port)}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"API exited early: {log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60)
        yield base
    finally:
        stop_process_group(process)
