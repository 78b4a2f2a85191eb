"""The jobs API in process (the real app, job store and embedded broker; no worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.config import Settings
from core.jobs import JobState, JobStore
from tests.app.hostile import reads_of, running
from tests.utils.datasets import make_digits_tiny_imagenet

pytestmark = pytest.mark.anyio


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def source(data_root: Path) -> str:
    make_digits_tiny_imagenet(
        data_root / "sources" / "digits", classes=3, train_per_class=4, val_per_class=1
    )
    return "sources/digits"


def test_submit_shard_job(client: TestClient, source: str) -> None:
    answer = client.post("/jobs/shard", json={"source": source, "dataset": "digits"})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["Location"] == f"/jobs/{job['id']}"
    assert job["kind"] == "shard" and job["state"] == "queued"
    assert job["params"] == {
        "source": source,
        "dataset": "digits",
        "num_shards": 10,
        "compression": "GZIP",
        "seed": 0,
        "overwrite": False,
    }
    assert client.get(f"/jobs/{job['id']}").json()["id"] == job["id"]
    again = client.post("/jobs/shard", json={"source": source, "dataset": "digits"})
    assert again.status_code == 409 and "being written" in again.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"source": "missing", "dataset": "d"}, "does not exist"),
        ({"source": "../outside", "dataset": "d"}, "relative to the data root"),
        ({"source": "/etc", "dataset": "d"}, "relative to the data root"),
        ({"source": "sources/digits", "dataset": "bad name"}, "pattern"),
        ({"source": "sources/digits", "dataset": "d", "num_shards": 0}, "greater than"),
        ({"source": "sources/digits", "dataset": "d", "compression": "ZIP"}, "GZIP"),
        ({"source": "sources/digits", "dataset": "d", "extra": 1}, "extra"),
    ],
)
def test_bad_shard_requests_are_422(
    client: TestClient, source: str, body: dict[str, object], fragment: str
) -> None:
    answer = client.post("/jobs/shard", json=body)
    assert answer.status_code == 422, answer.text
    assert fragment.lower() in answer.text.lower()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"dataset": "nope"}, "does not exist"),
        ({"dataset": "nope", "width": 6}, "width=6"),
        ({"dataset": "nope", "levels": []}, "at least 1"),
        ({"dataset": "nope", "levels": [1, 2, 3, 4, 5, 6, 7]}, "at most 6"),
        ({"dataset": "nope", "epochs": 0}, "greater than"),
        ({"dataset": "nope", "batch_size": 0}, "greater than"),
        ({"dataset": "nope", "learning_rate": 0}, "greater than"),
        ({"dataset": "nope", "initial_epoch": 1}, "needs resume_from"),
    ],
)
def test_bad_train_requests_are_422(
    client: TestClient, body: dict[str, object], fragment: str
) -> None:
    answer = client.post("/jobs/train", json=body)
    assert answer.status_code == 422, answer.text
    assert fragment in answer.text


def test_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/jobs/nope").status_code == 404
    assert client.post("/jobs/nope/cancel").status_code == 404
    assert client.get("/jobs/nope/history.png").status_code == 404
    assert client.get("/models/nope").status_code == 404
    assert client.get("/datasets/nope").status_code == 404
    assert client.get("/no/such/route").status_code == 404


def test_cancel_queued_then_finished(client: TestClient, source: str) -> None:
    job = client.post("/jobs/shard", json={"source": source, "dataset": "digits"}).json()
    cancelled = client.post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["state"] == "cancelled"
    again = client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and "already finished" in again.json()["detail"]


def test_list_filters_newest_first(client: TestClient, settings: Settings) -> None:
    store = JobStore(settings.effective_database_url)
    first = store.create("shard", {"dataset": "a"})
    second = store.create("train", {"dataset": "a"})
    store.finish(second.id, JobState.FAILED, error="x")
    assert [j["id"] for j in client.get("/jobs").json()["jobs"]] == [second.id, first.id]
    assert [j["id"] for j in client.get("/jobs?kind=shard").json()["jobs"]] == [first.id]
    assert [j["id"] for j in client.get("/jobs?state=failed").json()["jobs"]] == [second.id]
    assert client.get("/jobs?state=bogus").status_code == 422
    assert client.get("/models").json() == {"models": []}
    assert client.get("/datasets").json() == {"datasets": []}


def test_api_key_guards_mutating_routes(data_root: Path, source: str) -> None:
    keyed = Settings(data_root=data_root, api_key="s3cret")
    with TestClient(create_app(keyed)) as client:
        body = {"source": source, "dataset": "digits"}
        assert client.post("/jobs/shard", json=body).status_code == 401
        wrong = client.post("/jobs/shard", json=body, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        ok = client.post("/jobs/shard", json=body, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 202
        assert client.get("/jobs").status_code == 200  # reads stay open
        job_id = ok.json()["id"]
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 401


def test_openapi_documents_the_contract(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/jobs/shard",
        "/jobs/train",
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/cancel",
        "/datasets",
        "/datasets/{name}",
        "/models",
        "/models/{model_id}",
        "/healthz",
        "/readyz",
    ):
        assert path in paths
    assert client.get("/docs").status_code == 200


# --- hostile sources and names -------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "../outside",
        "/etc",
        "/etc/passwd",
        "link",
        "link/images",
        "sources/images-link",
        "sources/../../outside",
        "sources/real/../../../outside",
        "./../outside",
        "a\x00b",
        "sources\\..\\..\\outside",
        "%2e%2e%2foutside",
        "..%2foutside",
        "%2e%2e/outside",
        "loop",
        "loop/x",
        "x" * 300,
        "a/" * 600,
        "\u2025/outside",
        "~/",
    ],
)
async def test_shard_sources_outside_the_root_are_422(
    trapped_root: Path, outside: Path, source: str
) -> None:
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        with reads_of(outside) as reads:
            answer = await client.post("/jobs/shard", json={"source": source, "dataset": "d"})
            jobs = await client.get("/jobs")
    assert answer.status_code == 422, answer.text
    assert jobs.json() == {"jobs": []}
    assert reads == []


async def test_absolute_source_naming_the_outside_folder_is_422(
    trapped_root: Path, outside: Path
) -> None:
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        answers = [
            await client.post("/jobs/shard", json={"source": source, "dataset": "d"})
            for source in (str(outside), str(outside / "images"), f"{trapped_root}/link")
        ]
    assert [a.status_code for a in answers] == [422] * 3


@pytest.mark.parametrize(
    "name", ["../x", "..", ".", "/abs", "a/b", "a\x00", "x" * 65, "é", "a\n", "-x", "%2e%2e"]
)
async def test_bad_names_in_bodies_are_422(trapped_root: Path, name: str) -> None:
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        shard = await client.post("/jobs/shard", json={"source": "sources/real", "dataset": name})
        train = await client.post("/jobs/train", json={"dataset": name})
        resume = await client.post("/jobs/train", json={"dataset": "good", "resume_from": name})
    assert [shard.status_code, train.status_code, resume.status_code] == [422] * 3
