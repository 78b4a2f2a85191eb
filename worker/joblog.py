"""Each job's own log: what its worker logged while running it, in a file of its own.

While a job runs, `attach_job_log` adds a handler to the root logger that writes the job's
records to `<data_root>/logs/<job_id>.log`: Python logging, warnings (through
`logging.captureWarnings`) and the traceback of its failure (the runner logs it before the
job ends). The file is bounded: it rolls over at `LOG_MAX_BYTES` and keeps `LOG_BACKUPS`
older parts (`.log.1`, `.log.2`), so a job's log never takes more than 15 MB.

In a prefork worker a process runs one job at a time, and everything it logs meanwhile is
that job's. Where several jobs run in one process (threads), each gets only the records of
its own thread and of threads named after it (its heartbeat).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path

LOG_MAX_BYTES = 5 * 1024**2
LOG_BACKUPS = 2
log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_lock = threading.Lock()
_attached: list[JobLog] = []
_captured_before = False


def job_log_path(data_root: Path, job_id: str) -> Path:
    return data_root / "logs" / f"{job_id}.log"


def job_log_files(data_root: Path, job_id: str) -> list[Path]:
    """The parts of a job's log that exist, oldest first."""
    current = job_log_path(data_root, job_id)
    parts = [current.with_name(f"{current.name}.{n}") for n in range(LOG_BACKUPS, 0, -1)]
    return [path for path in [*parts, current] if path.is_file()]


class _OwnRecords(logging.Filter):
    def __init__(self, job_id: str, thread: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.thread = thread

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            alone = len(_attached) == 1
        if alone:
            return True
        return record.thread == self.thread or self.job_id in (record.threadName or "")


@dataclass
class JobLog:
    job_id: str
    handler: logging.Handler


def attach_job_log(data_root: Path, job_id: str, level: int = logging.INFO) -> JobLog:
    """Start writing this thread's job's records to its log file."""
    global _captured_before
    path = job_log_path(data_root, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8", delay=True
    )
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_OwnRecords(job_id, threading.get_ident()))
    job_log = JobLog(job_id, handler)
    with _lock:
        if not _attached:
            _captured_before = _warnings_captured()
            logging.captureWarnings(True)
        _attached.append(job_log)
    logging.getLogger().addHandler(handler)
    log.info("job %s started in %s (pid %d)", job_id, threading.current_thread().name, os.getpid())
    return job_log


def detach_job_log(job_log: JobLog) -> None:
    """Stop writing the job's log and close its file."""
    logging.getLogger().removeHandler(job_log.handler)
    job_log.handler.close()
    with _lock:
        if job_log in _attached:
            _attached.remove(job_log)
        if not _attached and not _captured_before:
            logging.captureWarnings(False)


def _warnings_captured() -> bool:
    # logging keeps the original showwarning here while it captures warnings.
    return getattr(logging, "_warnings_showwarning", None) is not None
