"""A job's own log file: its records, warnings and failure traceback, bounded in size."""

from __future__ import annotations

import logging
import warnings
from logging.handlers import RotatingFileHandler
from pathlib import Path

from core.config import Settings
from core.jobs import JobState, JobStore
from tests.utils.seaweed import (  # noqa: F401
    s3_credentials_fixture,
    s3_settings_fixture,
    seaweed_fixture,
)
from worker.joblog import LOG_BACKUPS, LOG_MAX_BYTES, attach_job_log, detach_job_log, job_log_path
from worker.runner import JobContext, run_job


def test_records_and_warnings_go_to_the_jobs_file(tmp_path: Path) -> None:
    job_log = attach_job_log(tmp_path, "job1")
    logger = logging.getLogger("tests.joblog")
    logger.setLevel(logging.INFO)
    try:
        logger.info("hello from the job")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("something odd", UserWarning, stacklevel=1)
    finally:
        detach_job_log(job_log)
    logger.info("after the job")
    text = job_log_path(tmp_path, "job1").read_text()
    assert "hello from the job" in text and "something odd" in text
    assert "after the job" not in text
    assert isinstance(job_log.handler, RotatingFileHandler)
    assert job_log.handler.maxBytes == LOG_MAX_BYTES and job_log.handler.backupCount == LOG_BACKUPS
    assert job_log.handler not in logging.getLogger().handlers


def test_a_failed_jobs_traceback_is_in_its_log(settings: Settings) -> None:
    store = JobStore(settings.effective_database_url)
    store.create_schema()
    job = store.create("train", {"dataset": "d"})

    def work(ctx: JobContext) -> None:
        logging.getLogger("worker.training").warning("about to fail")
        raise ValueError("a bad thing")

    finished = run_job(store, settings, job.id, work)
    store.engine.dispose()
    assert finished is not None and finished.state == JobState.FAILED
    text = job_log_path(settings.resolved_data_root, job.id).read_text()
    assert "about to fail" in text and "Traceback" in text and "ValueError: a bad thing" in text


def test_a_job_log_is_published_to_the_store_and_served_from_it(s3_settings: Settings) -> None:
    """With an object store the log is an object when the job ends (continued, not
    restarted, by a later attempt on another host), and the API reads it from there."""
    from app.api.routes.logs import read_log
    from core.files import Files

    root = s3_settings.resolved_data_root
    files = Files(s3_settings)
    logger = logging.getLogger("tests.joblog")
    logger.setLevel(logging.INFO)
    for attempt in ("first", "second"):
        job_log = attach_job_log(root, "job1", files=files)
        try:
            logger.info("%s attempt", attempt)
        finally:
            detach_job_log(job_log)
        assert not job_log_path(root, "job1").exists()  # only the store keeps it
    stored = files.get_bytes("logs/job1.log").decode()
    assert stored.index("first attempt") < stored.index("second attempt")
    text, offset = read_log(s3_settings, "job1", tail=None)
    assert text == stored and offset == len(stored.encode())
