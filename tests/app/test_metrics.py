"""GET /metrics: request latencies by route template, batch sizes, jobs, leases, queues."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from app.broker import publish
from core.config import Settings
from core.jobs import JobState, JobStore
from tests.app.conftest import ClientFactory, random_image, register_model

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a text exposition, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for n, labels in samples if n == name and label in dict(labels)}


async def scrape(client: httpx.AsyncClient) -> Samples:
    answer = await client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def _image(seed: int) -> dict[str, tuple[str, bytes]]:
    return {"image": ("image.jpg", random_image(seed))}


async def test_requests_by_route_template_and_batch_sizes(
    data_root: Path, model_file: Path, client_for: ClientFactory
) -> None:
    settings = Settings(data_root=data_root, batch_timeout_ms=100, batch_max_size=32)
    model_id = register_model(settings, model_file)
    async with client_for(settings) as client:
        assert (await client.get("/jobs")).status_code == 200
        assert (await client.get(f"/jobs/{model_id}")).status_code == 200
        assert (await client.get("/jobs/0123456789abcdef")).status_code == 404
        assert (await client.get("/no/such/path")).status_code == 404
        await client.get("/metrics")  # not recorded itself
        assert (await client.post("/predict", files=_image(0))).status_code == 200
        answers = await asyncio.gather(
            *(client.post("/predict", files=_image(i)) for i in range(8))
        )
        assert [a.status_code for a in answers] == [200] * 8
        stats = (await client.get("/predict/stats")).json()
        samples = await scrape(client)

    total = "http_requests_total"
    assert value(samples, total, method="GET", status="200", handler="/jobs") == 1
    assert value(samples, total, method="GET", status="200", handler="/jobs/{job_id}") == 1
    assert value(samples, total, method="GET", status="404", handler="/jobs/{job_id}") == 1
    assert value(samples, total, method="GET", status="404", handler="none") == 1
    assert value(samples, total, method="POST", status="200", handler="/predict") == 9
    # Route templates only: no raw path, and /metrics does not count itself.
    handlers = label_values(samples, total, "handler")
    assert handlers == {"/jobs", "/jobs/{job_id}", "none", "/predict", "/predict/stats"}
    duration = "http_request_duration_seconds"
    assert value(samples, f"{duration}_count", method="POST", handler="/predict") == 9
    predict_seconds = value(samples, f"{duration}_sum", method="POST", handler="/predict")
    assert predict_seconds is not None and predict_seconds > 0
    assert value(samples, f"{duration}_bucket", method="POST", handler="/predict", le="+Inf") == 9
    assert value(samples, "http_request_duration_highr_seconds_count") == 14

    # One observation per forward pass, the same as /predict/stats.
    batch = "tinyres_predict_batch_size"
    assert stats["images"] == 9 and stats["max_batch"] > 1, stats
    assert value(samples, f"{batch}_count") == stats["batches"]
    assert value(samples, f"{batch}_sum") == 9
    single = value(samples, f"{batch}_bucket", le="1.0")
    assert single is not None and single < stats["batches"]  # some pass held several images
    assert value(samples, f"{batch}_bucket", le="+Inf") == stats["batches"]
    assert value(samples, "tinyres_predict_waiting") == 0
    assert value(samples, "tinyres_predict_queue_limit") == settings.predict_queue_size
    assert value(samples, "tinyres_predict_rejected_total") == 0
    # The process collector of the app's own registry.
    resident = value(samples, "process_resident_memory_bytes")
    assert resident is not None and resident > 10 * 2**20


async def test_jobs_by_kind_and_state_and_leases(
    settings: Settings, client_for: ClientFactory
) -> None:
    async with client_for(settings) as client:
        before = await scrape(client)
        store = JobStore(settings.effective_database_url)
        try:
            queued = store.create("shard", {"dataset": "a"})
            healthy = store.create("train", {"dataset": "a"})
            dead = store.create("train", {"dataset": "a"})
            cancelled = store.create("shard", {"dataset": "b"})
            store.request_cancel(cancelled.id)
            assert store.claim(healthy.id, "worker-1", lease_seconds=60, max_attempts=3).granted
            # A worker that stopped heartbeating 5 s ago.
            assert store.claim(dead.id, "worker-2", lease_seconds=-5, max_attempts=3).granted
            during = await scrape(client)
            await asyncio.sleep(1.5)
            stale = await scrape(client)
            store.heartbeat(healthy.id, "worker-1", lease_seconds=60)  # the heartbeat renews
            renewed = await scrape(client)
            store.finish(healthy.id, JobState.SUCCEEDED)
            store.finish(dead.id, JobState.FAILED, error="worker died")
            after = await scrape(client)
        finally:
            store.engine.dispose()

    assert value(before, "tinyres_job_store_up") == 1
    assert {value(before, "tinyres_jobs", kind=k, state=s.value) for k in ("shard", "train")
            for s in JobState} == {0}  # fmt: skip
    assert value(before, "tinyres_running_jobs") == 0
    assert "tinyres_job_lease_seconds_remaining" not in names(before)

    assert value(during, "tinyres_jobs", kind="shard", state="queued") == 1
    assert value(during, "tinyres_jobs", kind="shard", state="cancelled") == 1
    assert value(during, "tinyres_jobs", kind="train", state="running") == 2
    assert value(during, "tinyres_jobs", kind="train", state="queued") == 0
    assert value(during, "tinyres_running_jobs") == 2
    assert value(during, "tinyres_orphaned_jobs") == 1
    lease = "tinyres_job_lease_seconds_remaining"
    healthy_left = value(during, lease, job_id=healthy.id, kind="train")
    dead_left = value(during, lease, job_id=dead.id, kind="train")
    assert healthy_left is not None and 55 < healthy_left <= 60
    assert dead_left is not None and -7 < dead_left <= -4
    assert label_values(during, lease, "job_id") == {healthy.id, dead.id}
    assert queued.id not in label_values(during, lease, "job_id")

    stale_left = value(stale, lease, job_id=healthy.id, kind="train")
    renewed_left = value(renewed, lease, job_id=healthy.id, kind="train")
    assert stale_left is not None and stale_left < healthy_left - 1
    assert renewed_left is not None and renewed_left > stale_left + 1

    assert value(after, "tinyres_jobs", kind="train", state="succeeded") == 1
    assert value(after, "tinyres_jobs", kind="train", state="failed") == 1
    assert value(after, "tinyres_running_jobs") == 0
    assert value(after, "tinyres_orphaned_jobs") == 0
    assert "tinyres_job_lease_seconds_remaining" not in names(after)


async def test_queue_depth_of_the_embedded_broker(
    settings: Settings, client_for: ClientFactory
) -> None:
    # No worker runs: published messages stay in the broker's kombu_message table.
    async with client_for(settings) as client:
        empty = await scrape(client)
        celery = client._transport.app.state.celery  # type: ignore[attr-defined]
        for kind, job_id in (("shard", "a1"), ("shard", "a2"), ("train", "b1")):
            publish(celery, kind, job_id)
        full = await scrape(client)
    assert value(empty, "tinyres_broker_up") == 1
    assert value(empty, "tinyres_queue_depth", queue="datasets") == 0
    assert value(empty, "tinyres_queue_depth", queue="training") == 0
    assert value(full, "tinyres_broker_up") == 1
    assert value(full, "tinyres_queue_depth", queue="datasets") == 2
    assert value(full, "tinyres_queue_depth", queue="training") == 1


@pytest.mark.redis
async def test_queue_depth_of_a_redis_broker(
    data_root: Path, redis_broker: str, client_for: ClientFactory
) -> None:
    client_redis = redis.Redis.from_url(redis_broker)
    client_redis.flushdb()  # the test database: no messages left from before
    settings = Settings(data_root=data_root, broker_url=redis_broker)
    try:
        async with client_for(settings) as client:
            celery = client._transport.app.state.celery  # type: ignore[attr-defined]
            for kind, job_id in (("train", "a1"), ("train", "a2"), ("shard", "b1")):
                publish(celery, kind, job_id)
            samples = await scrape(client)
    finally:
        client_redis.flushdb()
        client_redis.close()
    assert value(samples, "tinyres_broker_up") == 1
    assert value(samples, "tinyres_queue_depth", queue="training") == 2
    assert value(samples, "tinyres_queue_depth", queue="datasets") == 1


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung broker or database."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


async def test_a_broker_or_store_not_answering_is_a_zero_not_an_error(
    data_root: Path, silent_server: int, client_for: ClientFactory
) -> None:
    settings = Settings(data_root=data_root, broker_url=f"redis://127.0.0.1:{silent_server}/0")
    async with client_for(settings) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        started = time.monotonic()
        hung_broker = await scrape(client)
        hung_seconds = time.monotonic() - started
        # A job store that refuses connections (nothing listens on port 1).
        live_store = app.state.store
        app.state.store = JobStore("postgresql+psycopg://nobody@127.0.0.1:1/none")
        try:
            no_store = await scrape(client)
        finally:
            app.state.store.engine.dispose()
            app.state.store = live_store
        assert (await client.get("/healthz")).status_code == 200
    assert value(hung_broker, "tinyres_broker_up") == 0
    assert "tinyres_queue_depth" not in names(hung_broker)
    assert value(hung_broker, "tinyres_job_store_up") == 1
    assert hung_seconds < 5
    assert value(no_store, "tinyres_job_store_up") == 0
    assert not names(no_store) & {"tinyres_jobs", "tinyres_running_jobs"}


async def test_each_app_has_its_own_registry(settings: Settings, client_for: ClientFactory) -> None:
    async with client_for(settings) as first, client_for(settings) as second:
        for _ in range(3):
            await first.get("/jobs")
        await second.get("/jobs")
        one, two = await scrape(first), await scrape(second)
    assert value(one, "http_requests_total", method="GET", status="200", handler="/jobs") == 3
    assert value(two, "http_requests_total", method="GET", status="200", handler="/jobs") == 1


async def test_metrics_route_is_documented(settings: Settings, client_for: ClientFactory) -> None:
    async with client_for(settings) as client:
        schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/metrics"]["get"]
    assert "text/plain" in operation["responses"]["200"]["content"]


async def test_every_metric_is_documented(settings: Settings, client_for: ClientFactory) -> None:
    """Every tinyres_* sample name the app exposes is named in app.metrics' docstring."""
    import app.metrics as module

    store = JobStore(settings.effective_database_url)
    store.create_schema()
    job = store.create("train", {"dataset": "a"})
    store.claim(job.id, "worker", lease_seconds=60, max_attempts=3)
    store.engine.dispose()
    async with client_for(settings) as client:
        samples = await scrape(client)
    histogram_parts = ("_bucket", "_count", "_sum", "_created")
    exposed = {
        name.removesuffix(next((p for p in histogram_parts if name.endswith(p)), ""))
        for name in names(samples)
        if name.startswith("tinyres_")
    }
    documented = {word.split("{")[0].strip("`,.:()") for word in (module.__doc__ or "").split()}
    assert len(exposed) >= 11
    assert exposed <= documented, exposed - documented
