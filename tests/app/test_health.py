"""GET /healthz and /readyz: the process lives; the job store, the broker and (when set)
the object store answer; the object store's faults against a real SeaweedFS server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.config import Settings
from tests.utils.seaweed import (  # noqa: F401
    s3_credentials_fixture,
    s3_settings_fixture,
    s3_settings_for,
    seaweed_fixture,
)
from tools.processes import free_port
from tools.seaweed import SeaweedServer


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


# ------------------------------------------------------------------ the object store


def _readyz(settings: Settings) -> tuple[int, dict[str, str]]:
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
    return ready.status_code, ready.json()["checks"]


@pytest.mark.heavy
def test_ready_checks_the_object_store(s3_settings: Settings) -> None:
    status, checks = _readyz(s3_settings)
    assert status == 200, checks
    assert checks == {"job_store": "ok", "broker": "ok", "object_store": "ok"}


def test_ready_is_503_on_a_wrong_bucket(
    seaweed: SeaweedServer, s3_credentials: None, data_root: Path
) -> None:
    status, checks = _readyz(s3_settings_for(seaweed, data_root, "no-such-bucket"))
    assert status == 503
    assert checks["object_store"].startswith("misconfigured")
    assert (
        "NoSuchBucket" in checks["object_store"]
        and "s3://no-such-bucket/" in checks["object_store"]
    )
    assert checks["job_store"] == checks["broker"] == "ok"


def test_ready_is_503_on_bad_credentials(
    s3_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    status, checks = _readyz(s3_settings)
    assert status == 503
    assert checks["object_store"].startswith("misconfigured: ")
    assert "access denied" in checks["object_store"]
    assert "not-the-secret" not in checks["object_store"]  # no secret in the answer


def test_ready_is_503_when_the_store_is_unreachable(data_root: Path) -> None:
    unreachable = Settings(
        data_root=data_root,
        storage_url="s3://tinyres/x",
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
    )
    started = time.monotonic()
    status, checks = _readyz(unreachable)
    assert status == 503
    assert checks["object_store"].startswith("unavailable: ")
    assert "EndpointConnectionError" in checks["object_store"]
    assert time.monotonic() - started < 15
