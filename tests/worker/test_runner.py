"""The job runner in this process: outcomes, cancellation through the heartbeat, hand-back.

Real job stores (SQLite and PostgreSQL); work functions are plain functions here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.config import Settings
from core.jobs import JobState, JobStore
from tests.worker.fresh_process import run_script
from worker.runner import HandBack, JobContext, JobFailed, describe_error, run_job


def test_a_successful_work_finishes_the_job_with_its_result(
    store: JobStore, settings: Settings
) -> None:
    job = store.create("train", {"dataset": "d"})
    seen: list[str] = []

    def work(ctx: JobContext) -> dict[str, int]:
        seen.append(ctx.job_id)
        ctx.report(metrics={"seen": 1.0})
        return {"answer": 42}

    finished = run_job(store, settings, job.id, work)
    assert finished is not None and finished.state == JobState.SUCCEEDED
    assert finished.result == {"answer": 42} and finished.attempts == 1
    assert finished.metrics == {"seen": 1.0}
    assert finished.progress["fraction"] == 1.0  # a finished job is all done
    assert seen == [job.id]
    # A finished job is not run again, whoever delivers it.
    assert run_job(store, settings, job.id, work) is None
    assert seen == [job.id]


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (JobFailed("the dataset is empty"), "the dataset is empty"),
        (ValueError("boom\nmore lines"), "ValueError: boom"),
        (MemoryError("cannot allocate 4 GiB"), "out of memory: cannot allocate 4 GiB"),
    ],
)
def test_a_failing_work_records_a_one_line_reason(
    store: JobStore, settings: Settings, error: Exception, shown: str
) -> None:
    job = store.create("train", {"dataset": "d"})

    def work(_: JobContext) -> None:
        raise error

    finished = run_job(store, settings, job.id, work)
    assert finished is not None and finished.state == JobState.FAILED
    assert finished.error == shown == describe_error(error)


def test_the_heartbeat_picks_up_a_cancel_request(store: JobStore, settings: Settings) -> None:
    job = store.create("train", {"dataset": "d"})

    def work(ctx: JobContext) -> None:
        store.request_cancel(ctx.job_id)  # as the API does while the job runs
        deadline = time.monotonic() + 30
        while not ctx.should_stop() and time.monotonic() < deadline:
            time.sleep(0.05)
        ctx.check_cancelled()
        raise AssertionError("check_cancelled did not raise")

    finished = run_job(store, settings, job.id, work)
    assert finished is not None and finished.state == JobState.CANCELLED
    assert finished.error is None


def test_a_cancel_is_recorded_within_seconds_even_while_work_cannot_stop(
    store: JobStore, data_root: Path
) -> None:
    # A long lease (its heartbeat renews every 15 s) and work with no safe point for 8 s,
    # as while the first train step is traced: the cancel still takes effect in seconds.
    settings = Settings(data_root=data_root, lease_seconds=60)
    job = store.create("train", {"dataset": "d"})
    asked: list[float] = []
    seen: list[tuple[float, str]] = []

    def work(ctx: JobContext) -> dict[str, int]:
        store.request_cancel(ctx.job_id)
        asked.append(time.monotonic())
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            state = store.get(ctx.job_id).state
            if not seen and state == JobState.CANCELLED:
                seen.append((time.monotonic(), state))
            time.sleep(0.05)
        ctx.report(metrics={"late": 1.0})  # dropped: the job is cancelled
        ctx.check_cancelled()
        return {"never": 1}

    finished = run_job(store, settings, job.id, work)
    assert finished is not None and finished.state == JobState.CANCELLED
    assert seen and seen[0][0] - asked[0] < 5, (seen, asked)
    final = store.get(job.id)
    assert final.state == JobState.CANCELLED and final.error is None
    assert "late" not in final.metrics and final.result in (None, {})


def test_a_handed_back_job_is_released_and_sent_again(store: JobStore, settings: Settings) -> None:
    job = store.create("train", {"dataset": "d"})
    sent: list[str] = []

    def work(_: JobContext) -> None:
        raise HandBack("the broker went away")

    assert run_job(store, settings, job.id, work, requeue=lambda: sent.append("again")) is None
    assert sent == ["again"]
    released = store.get(job.id)
    # Still running, with no lease and the attempt given back: the next claim continues it.
    assert released.state == JobState.RUNNING and released.attempts == 0
    finished = run_job(store, settings, job.id, lambda _: {"done": True})
    assert finished is not None and finished.state == JobState.SUCCEEDED


def test_finish_false_leaves_the_job_running(store: JobStore, settings: Settings) -> None:
    job = store.create("shard", {"dataset": "d"})
    assert run_job(store, settings, job.id, lambda _: None, finish=False) is None
    assert store.get(job.id).state == JobState.RUNNING


SHUTDOWN_SCRIPT = """
from core.config import Settings
from core.jobs import JobStore
from worker.runner import request_shutdown, run_job
settings = Settings()
store = JobStore(settings.effective_database_url)
store.create_schema()
sent = []
running = store.create("train", {"dataset": "d"})

def work(ctx):
    request_shutdown()  # as Celery's worker_shutting_down signal does
    ctx.check_cancelled()

assert run_job(store, settings, running.id, work, requeue=lambda: sent.append(1)) is None
late = store.create("train", {"dataset": "d"})
assert run_job(store, settings, late.id, work, requeue=lambda: sent.append(2)) is None
print("RESULT", sent, store.get(running.id).attempts, store.get(late.id).state)
"""


def test_a_worker_shutting_down_hands_its_jobs_back(data_root: Path) -> None:
    # In a fresh interpreter: the shutdown flag is process-wide and is never cleared.
    result = run_script(SHUTDOWN_SCRIPT, data_root, timeout=120)
    # The running job was handed back (no attempt counted); the late one never started.
    assert result == "[1, 2] 0 queued"
