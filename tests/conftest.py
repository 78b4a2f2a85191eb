"""Fixtures shared by every test: settings on a temporary data root, job stores on SQLite
and PostgreSQL, the Redis URL, and real worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.jobs import Base, JobStore
from tests.utils.services import postgres_url, redis_url, require_service

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN's CPU kernels corrupted the heap of TensorFlow 2.21 intermittently on this
# machine's CPU with the tests' tiny width-8 models (seen in benchmarks, never at width
# 16+); the tests run TensorFlow's own kernels. Set before anything imports TensorFlow.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def settings(data_root: Path) -> Settings:
    return Settings(data_root=data_root, lease_seconds=3, progress_interval=0.5)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, data_root: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{data_root / 'jobs.sqlite'}"
    return require_service("postgres", postgres_url())


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    job_store = JobStore(store_url)
    if not store_url.startswith("sqlite"):
        Base.metadata.drop_all(job_store.engine)  # a clean PostgreSQL database per test
    job_store.create_schema()
    yield job_store
    job_store.engine.dispose()


@pytest.fixture
def redis_broker() -> str:
    return require_service("redis", redis_url())
