"""The job store, the same cases on SQLite and on PostgreSQL."""

from __future__ import annotations

import time

import pytest

from core.jobs import JobAlreadyFinished, JobNotFound, JobState, JobStore, LeaseLost


def test_create_get_roundtrip(store: JobStore) -> None:
    job = store.create("shard", {"dataset": "d", "num_shards": 2})
    got = store.get(job.id)
    assert got.state == JobState.QUEUED
    assert got.params == {"dataset": "d", "num_shards": 2}
    assert got.progress == {"fraction": 0.0}
    assert got.history == [] and got.metrics == {} and got.error is None
    assert got.created_at.tzinfo is not None
    assert got.started_at is None and got.finished_at is None


def test_unknown_job(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.get("nope")


def test_list_newest_first_and_filters(store: JobStore) -> None:
    first = store.create("shard", {})
    time.sleep(0.01)
    second = store.create("train", {})
    time.sleep(0.01)
    third = store.create("train", {})
    store.finish(third.id, JobState.FAILED, error="boom")
    assert [j.id for j in store.list_jobs()] == [third.id, second.id, first.id]
    assert [j.id for j in store.list_jobs(kind="train")] == [third.id, second.id]
    assert [j.id for j in store.list_jobs(state="failed")] == [third.id]
    assert [j.id for j in store.list_jobs(kind="shard", state="failed")] == []


def test_claim_is_exclusive_until_the_lease_expires(store: JobStore) -> None:
    job = store.create("train", {})
    first = store.claim(job.id, "worker-a", lease_seconds=1, max_attempts=3)
    assert first.granted and first.job is not None
    assert first.job.state == JobState.RUNNING and first.job.attempts == 1
    assert first.job.started_at is not None
    second = store.claim(job.id, "worker-b", lease_seconds=1, max_attempts=3)
    assert not second.granted and "worker-a" in second.reason
    assert store.orphaned() == []
    time.sleep(1.2)
    assert [j.id for j in store.orphaned()] == [job.id]
    third = store.claim(job.id, "worker-b", lease_seconds=5, max_attempts=3)
    assert third.granted and third.job is not None and third.job.attempts == 2
    with pytest.raises(LeaseLost):
        store.heartbeat(job.id, "worker-a", 5)
    assert store.heartbeat(job.id, "worker-b", 5) is False


def test_too_many_attempts_fail_the_job_with_a_reason(store: JobStore) -> None:
    job = store.create("train", {})
    for attempt in range(2):
        claim = store.claim(job.id, f"w{attempt}", lease_seconds=0, max_attempts=2)
        assert claim.granted
    last = store.claim(job.id, "w9", lease_seconds=0, max_attempts=2)
    assert not last.granted and last.job is not None
    assert last.job.state == JobState.FAILED
    assert last.job.error is not None and "2 attempts" in last.job.error


def test_cancel_queued_job_means_it_never_starts(store: JobStore) -> None:
    job = store.create("train", {})
    cancelled = store.request_cancel(job.id)
    assert cancelled.state == JobState.CANCELLED and cancelled.finished_at is not None
    claim = store.claim(job.id, "w", lease_seconds=5, max_attempts=3)
    assert not claim.granted
    assert store.get(job.id).state == JobState.CANCELLED


def test_cancel_running_job_is_seen_by_its_heartbeat(store: JobStore) -> None:
    job = store.create("train", {})
    assert store.claim(job.id, "w", lease_seconds=5, max_attempts=3).granted
    assert store.request_cancel(job.id).state == JobState.RUNNING
    assert store.heartbeat(job.id, "w", 5) is True
    store.finish(job.id, JobState.CANCELLED)
    with pytest.raises(JobAlreadyFinished):
        store.request_cancel(job.id)


def test_update_and_finish(store: JobStore) -> None:
    job = store.create("train", {})
    store.update_job(job.id, progress={"fraction": 0.5, "epoch": 1}, metrics={"loss": 1.5})
    store.update_job(job.id, progress={"step": 3}, history=[{"epoch": 1, "loss": 1.5}])
    got = store.get(job.id)
    assert got.progress == {"fraction": 0.5, "epoch": 1, "step": 3}
    assert got.metrics == {"loss": 1.5} and got.history == [{"epoch": 1, "loss": 1.5}]
    done = store.finish(job.id, JobState.SUCCEEDED, result={"model": job.id})
    assert done.progress["fraction"] == 1.0 and done.result == {"model": job.id}
    assert done.finished_at is not None


def test_units_are_idempotent(store: JobStore) -> None:
    job = store.create("shard", {})
    store.set_shard_progress(job.id, 0, 10, 20, False)
    store.set_shard_progress(job.id, 1, 5, 20, False)
    store.set_shard_progress(job.id, 0, 20, 20, True)
    assert store.shard_progress(job.id) == [(0, 20, 20, True), (1, 5, 20, False)]


def test_records_survive_a_new_store_on_the_same_database(store_url: str, store: JobStore) -> None:
    job = store.create("shard", {"dataset": "kept"})
    store.engine.dispose()
    reopened = JobStore(store_url)
    reopened.create_schema()
    assert reopened.get(job.id).params == {"dataset": "kept"}
    reopened.engine.dispose()


def test_counts_by_kind_and_state_and_running_leases(store: JobStore) -> None:
    assert store.count_by_kind_state() == {} and store.running_leases() == []
    queued = store.create("shard", {})
    running = store.create("train", {})
    store.create("train", {})
    assert store.claim(running.id, "w1", lease_seconds=30, max_attempts=3).granted
    assert store.count_by_kind_state() == {
        ("shard", "queued"): 1,
        ("train", "queued"): 1,
        ("train", "running"): 1,
    }
    [lease] = store.running_leases()
    assert (lease.job_id, lease.kind) == (running.id, "train") and lease.expires is not None
    store.request_cancel(queued.id)
    assert store.count_by_kind_state()[("shard", "cancelled")] == 1
