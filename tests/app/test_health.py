"""GET /healthz and /readyz: the process lives; the job store and the broker answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.config import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"job_store": "ok", "broker": "ok"}


def test_ready_is_503_when_the_broker_does_not_answer(data_root: Path) -> None:
    dead = Settings(data_root=data_root, broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(dead)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"].startswith("unavailable")
        submitted = client.post("/jobs/shard", json={"source": ".", "dataset": "d"})
        assert submitted.status_code in (422, 503)
