"""Fixtures of the browser tests: a real service (API + worker processes), Chromium,
pages that log their requests, and a folder for the screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.browser import WIDE, RequestLog, artifacts_dir, chromium, require_chromium
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import api_process, service_env, worker_process

CLASSES = 6


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, per module: playwright's sync API keeps an event loop running while it is
    open, which the asyncio tests (anyio) of other modules cannot share."""
    with chromium(require_chromium()) as launched:
        yield launched


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_dir(tmp_path_factory)


def sharded_root(folder: Path) -> Path:
    """A data root with the dataset `digits` already sharded (6 classes)."""
    from worker import sharding

    root = folder / "data"
    source = make_digits_tiny_imagenet(
        root / "src", classes=CLASSES, train_per_class=16, val_per_class=4, seed=3
    )
    sharding.shard_dataset(source, root / "datasets" / "digits", num_shards=2, seed=0)
    return root


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The API and a worker on a data root holding `digits`; yields (base URL, data root)."""
    require_chromium()  # no processes started for tests that will skip
    folder = tmp_path_factory.mktemp("dashboard")
    root = sharded_root(folder)
    env = service_env(root, TINYRES_LEASE_SECONDS="3", TINYRES_PROGRESS_INTERVAL="0.2")
    with (
        api_process(env, log=folder / "api.log") as base,
        worker_process(env, log=folder / "worker.log"),
    ):
        yield base, root


@pytest.fixture
def requests_log() -> RequestLog:
    return RequestLog()


@pytest.fixture
def page(browser: Any, requests_log: RequestLog) -> Iterator[Any]:
    """A fresh browser context (its own sessionStorage) at 1280x800."""
    context = browser.new_context(viewport=WIDE)
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    requests_log.attach(opened)
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
