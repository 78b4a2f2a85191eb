"""GET /jobs/{id}/logs: the whole log, its tail, following until the job ends, and 404."""

from __future__ import annotations

import threading
import time

import httpx

from core.config import Settings
from core.jobs import JobState, JobStore
from tests.app.test_events import served
from tests.utils.services import wait_for
from worker.joblog import job_log_path


def test_logs_whole_tail_empty_and_unknown(settings: Settings) -> None:
    with served(settings) as (base, app), httpx.Client(base_url=base, timeout=10) as client:
        store: JobStore = app.state.store
        job = store.create("train", {"dataset": "d"})
        empty = client.get(f"/jobs/{job.id}/logs")
        assert empty.status_code == 200 and empty.text == ""
        assert empty.headers["content-type"].startswith("text/plain")
        path = job_log_path(settings.resolved_data_root, job.id)
        path.parent.mkdir(parents=True)
        path.write_text("".join(f"line {n}\n" for n in range(10)))
        assert client.get(f"/jobs/{job.id}/logs").text.count("\n") == 10
        assert client.get(f"/jobs/{job.id}/logs", params={"tail": 2}).text == "line 8\nline 9\n"
        assert client.get("/jobs/nosuchjob/logs").status_code == 404
        assert client.get(f"/jobs/{job.id}/logs", params={"tail": -1}).status_code == 422


def test_follow_streams_until_the_job_ends(settings: Settings) -> None:
    with served(settings) as (base, app), httpx.Client(base_url=base, timeout=20) as client:
        store: JobStore = app.state.store
        job = store.create("train", {"dataset": "d"})
        store.claim(job.id, "w", 60, 3)
        path = job_log_path(settings.resolved_data_root, job.id)
        path.parent.mkdir(parents=True)
        path.write_text("first\n")
        received: list[str] = []

        def follow() -> None:
            params = {"follow": "true"}
            with client.stream("GET", f"/jobs/{job.id}/logs", params=params) as response:
                received.extend(response.iter_text())

        thread = threading.Thread(target=follow)
        thread.start()
        wait_for(lambda: "first" in "".join(received), timeout=10)
        with path.open("a") as file:
            file.write("second\n")
        wait_for(lambda: "second" in "".join(received), timeout=10)
        with path.open("a") as file:
            file.write("last words\n")
        time.sleep(0.2)
        store.finish(job.id, JobState.FAILED, error="boom")
        thread.join(15)
        assert not thread.is_alive(), "follow did not end with the job"
    assert "".join(received) == "first\nsecond\nlast words\n"
