"""Server-Sent Events: ids that resume exactly, one store watcher for every stream, and a
real job followed through a dropped connection.

The stream logic runs against a real uvicorn server in this process (so the test can count
the store's queries) with jobs driven through the store; the end-to-end case runs a real
API process and a real worker training a tiny model.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from httpx_sse import connect_sse
from sqlalchemy import event

from app.events import events_after, job_events, parse_event_id
from app.events.ids import BadEventId
from app.main import create_app
from core.config import Settings
from core.jobs import Job, JobState, JobStore
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import api_process, free_port, service_env, wait_for, worker_process

TINY_TRAIN = {"width": 8, "levels": [1, 1], "batch_size": 8, "learning_rate": 0.05, "l2": 0.0001}


@contextmanager
def served(settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    """The app under a real uvicorn server in a thread of this process."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, interval=0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(15)


def read_events(
    client: httpx.Client, url: str, *, last_id: str | None = None, limit: int | None = None
) -> list[tuple[str, str, Any]]:
    """(id, event, data) of a stream until `end` or `limit` events."""
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    seen: list[tuple[str, str, Any]] = []
    with connect_sse(client, "GET", url, headers=headers) as source:
        for sse in source.iter_sse():
            if not sse.data:  # a ping (comment) line
                continue
            seen.append((sse.id, sse.event, json.loads(sse.data)))
            if sse.event == "end" or (limit is not None and len(seen) >= limit):
                break
    return seen


def _job(store: JobStore, **fields: Any) -> Job:
    return store.create("train", {"dataset": "d", **fields})


def test_resuming_at_every_event_misses_and_repeats_nothing(settings: Settings) -> None:
    """The ids are a function of the record: resuming after any event gives the rest."""
    store = JobStore(settings.effective_database_url)
    store.create_schema()
    job = _job(store)
    records = [store.get(job.id)]
    store.claim(job.id, "w", 60, 3)
    for step in range(1, 7):
        history = [{"epoch": e, "loss": 1.0 / e} for e in range(1, step // 2 + 1)]
        store.update_job(job.id, progress={"fraction": step / 6}, history=history)
        records.append(store.get(job.id))
    records.append(store.finish(job.id, JobState.SUCCEEDED, result={"model": job.id}))
    full = job_events(records[-1])
    ids = [e.id for e in full]
    assert ids == sorted(set(ids)) and full[-1].event == "end"
    # A client that saw the stream up to any point, then reconnected to the final record.
    for record in records[:-1]:
        seen = events_after(record, None)
        rest = events_after(records[-1], seen[-1].id)
        got = [e.id for e in seen + rest]
        assert got == sorted(set(got)), "repeated or out of order"
        assert {e.id for e in full if e.event in ("epoch", "state", "end")} <= set(got)
    assert [e.event for e in events_after(records[-1], None)] == ["end"]
    store.engine.dispose()


@pytest.mark.parametrize("garbage", ["abc", "-1", "1.5", "9" * 30, "١٢"])
def test_garbage_last_event_id_is_refused(garbage: str) -> None:
    with pytest.raises(BadEventId):
        parse_event_id(garbage)


def test_streams_answer_404_400_and_end_at_once(settings: Settings) -> None:
    with served(settings) as (base, app), httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/jobs/nosuchjob/events").status_code == 404
        store: JobStore = app.state.store
        job = _job(store)
        bad = client.get(f"/jobs/{job.id}/events", headers={"Last-Event-ID": "garbage"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["detail"]
        assert client.get("/events", headers={"Last-Event-ID": "x"}).status_code == 400
        store.finish(job.id, JobState.FAILED, error="boom")
        started = time.monotonic()
        seen = read_events(client, f"/jobs/{job.id}/events")
        assert [e for _, e, _ in seen] == ["end"] and seen[0][2]["error"] == "boom"
        assert time.monotonic() - started < 2


def _count_queries(store: JobStore) -> list[str]:
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    return statements


def test_one_watcher_serves_every_stream(settings: Settings) -> None:
    """40 open streams cost the store the same queries per second as one."""
    with served(settings) as (base, app):
        store: JobStore = app.state.store
        job = _job(store)
        store.claim(job.id, "w", 60, 3)
        statements = _count_queries(store)
        results: list[list[tuple[str, str, Any]]] = []

        def follow() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                results.append(read_events(client, f"/jobs/{job.id}/events"))

        threads = [threading.Thread(target=follow) for _ in range(40)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(app.state.watcher._mailboxes) == 40, timeout=20)
        polls_before, started = app.state.watcher.polls, time.monotonic()
        statements.clear()
        for step in range(1, 5):
            store.update_job(job.id, progress={"fraction": step / 5})
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        polls = app.state.watcher.polls - polls_before
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        store.finish(job.id, JobState.SUCCEEDED)
        for thread in threads:
            thread.join(20)
    assert polls <= elapsed / 0.5 + 2, polls
    # The writes above are this test's own (one SELECT each); the rest are the watcher's.
    assert len(reads) <= polls + 4 + 2, reads
    assert len(results) == 40
    for seen in results:
        fractions = [d["progress"]["fraction"] for _, e, d in seen if e == "progress"]
        assert fractions == sorted(fractions) and seen[-1][1] == "end"


def test_all_jobs_stream_sends_creations_and_changes(settings: Settings) -> None:
    with served(settings) as (base, app), httpx.Client(base_url=base, timeout=10) as client:
        store: JobStore = app.state.store
        got: list[dict[str, Any]] = []

        def follow() -> None:
            with connect_sse(client, "GET", "/events") as source:
                for sse in source.iter_sse():
                    assert sse.event == "job" and int(sse.id) > 0
                    got.append(json.loads(sse.data))
                    if got[-1]["state"] == "succeeded":
                        return

        thread = threading.Thread(target=follow)
        thread.start()
        wait_for(lambda: app.state.watcher._mailboxes, timeout=10)
        job = _job(store)
        time.sleep(0.8)
        store.claim(job.id, "w", 60, 3)
        for step in range(10):  # 20 changes a second: sent at most once a second
            store.update_job(job.id, progress={"fraction": step / 10})
            time.sleep(0.05)
        store.finish(job.id, JobState.SUCCEEDED)
        thread.join(15)
    states = [j["state"] for j in got if j["id"] == job.id]
    assert states[0] == "queued" and states[-1] == "succeeded"
    assert len(states) <= 5, states


@pytest.fixture
def digits_root(data_root: Path) -> Path:
    from worker import sharding

    source = make_digits_tiny_imagenet(
        data_root / "src", classes=4, train_per_class=24, val_per_class=4, seed=2
    )
    sharding.shard_dataset(source, data_root / "datasets" / "digits", num_shards=2, seed=0)
    return data_root


@pytest.mark.slow
@pytest.mark.heavy
def test_a_real_job_followed_through_a_dropped_connection(
    digits_root: Path, tmp_path: Path
) -> None:
    """A real worker trains; the stream is dropped after a few events and resumed with
    Last-Event-ID: together, the parts are the whole stream, and fractions never go down."""
    env = service_env(digits_root, TINYRES_LEASE_SECONDS="3", TINYRES_PROGRESS_INTERVAL="0.2")
    with (
        api_process(env, log=tmp_path / "api.log") as base,
        worker_process(env, log=tmp_path / "worker.log"),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        answer = client.post("/jobs/train", json={"dataset": "digits", "epochs": 6, **TINY_TRAIN})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        url = f"/jobs/{job_id}/events"
        parts = [read_events(client, url, limit=4)]
        while parts[-1][-1][1] != "end":
            parts.append(read_events(client, url, last_id=parts[-1][-1][0], limit=6))
        final = client.get(f"/jobs/{job_id}").json()
    seen = [event for part in parts for event in part]
    ids = [int(i) for i, _, _ in seen]
    assert ids == sorted(set(ids)), "an event was repeated or came out of order"
    assert final["state"] == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
    epochs = [d["epoch"] for _, e, d in seen if e == "epoch"]
    assert epochs == [h["epoch"] for h in final["history"]], "an epoch event was missed"
    fractions = [d["progress"]["fraction"] for _, e, d in seen if e == "progress"]
    assert fractions == sorted(fractions) and len(fractions) >= 3
    assert [d["state"] for _, e, d in seen if e == "state"] == ["queued", "running", "succeeded"]
    assert seen[-1][2]["id"] == job_id and len(parts) >= 3
