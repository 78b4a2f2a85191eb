"""A job's own log file: its records, warnings and failure traceback, bounded in size."""

from __future__ import annotations

import logging
import warnings
from logging.handlers import RotatingFileHandler
from pathlib import Path

from core.config import Settings
from core.jobs import JobState, JobStore
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
