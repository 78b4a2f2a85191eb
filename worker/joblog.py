"""Each job's own log: what its worker logged while running it, in a file of its own.

While a job runs, `attach_job_log` adds a handler to the root logger that writes the job's
records to `<data_root>/logs/<job_id>.log`: Python logging, warnings (through
`logging.captureWarnings`) and the traceback of its failure (the runner logs it before the
job ends). The file is bounded: it rolls over at `LOG_MAX_BYTES` and keeps `LOG_BACKUPS`
older parts (`.log.1`, `.log.2`), so a job's log never takes more than 15 MB.

In a prefork worker a process runs one job at a time, and everything it logs meanwhile is
that job's. Where several jobs run in one process (threads), each gets only the records of
its own thread and of threads named after it (its heartbeat).

With an object store (`attach_job_log(..., files=files_for(settings))`) the log's parts
are published under the same keys (``logs/<job_id>.log[.N]``) every `PUBLISH_SECONDS`
while the job runs, by a thread of their own, and once more when it ends, so the API on
any host serves it. A log object is replaced by a longer copy as it grows: a reader sees
the log so far. A failed upload is logged and retried at the next round: a log is never
worth failing a job over.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.files import Files

LOG_MAX_BYTES = 5 * 1024**2
LOG_BACKUPS = 2
PUBLISH_SECONDS = 10.0
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


class _Publisher(threading.Thread):
    """Publishes the parts of one job's log that changed, every `seconds` and at `stop`."""

    def __init__(self, files: Files, data_root: Path, job_id: str, seconds: float) -> None:
        super().__init__(name=f"joblog-{job_id}", daemon=True)
        self.files, self.data_root, self.job_id, self.seconds = files, data_root, job_id, seconds
        self.sizes: dict[Path, tuple[int, int]] = {}
        self.done = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.done.wait(self.seconds):
            self.publish()

    def publish(self) -> None:
        with self.lock:
            for path in job_log_files(self.data_root, self.job_id):
                try:
                    stat = path.stat()
                    if self.sizes.get(path) != (stat.st_size, stat.st_mtime_ns):
                        self.files.publish(path)
                        self.sizes[path] = (stat.st_size, stat.st_mtime_ns)
                except Exception as exc:  # the store may blink: the next round retries
                    # Not through logging: the record would land in this very log.
                    print(f"job log {path} not published: {exc}", flush=True)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
        self.publish()
        for path in job_log_files(self.data_root, self.job_id):
            self.files.discard_local(path)


@dataclass
class JobLog:
    job_id: str
    handler: logging.Handler
    publisher: _Publisher | None = None


def attach_job_log(
    data_root: Path, job_id: str, level: int = logging.INFO, *, files: Files | None = None
) -> JobLog:
    """Start writing this thread's job's records to its log file (and, given the `files`
    of an object store, publishing it there)."""
    global _captured_before
    path = job_log_path(data_root, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if files is not None and files.remote and not path.exists():
        _continue_stored(files, data_root, path)
    handler = RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8", delay=True
    )
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_OwnRecords(job_id, threading.get_ident()))
    publisher = None
    if files is not None and files.remote:
        publisher = _Publisher(files, data_root, job_id, PUBLISH_SECONDS)
        publisher.start()
    job_log = JobLog(job_id, handler, publisher)
    with _lock:
        if not _attached:
            _captured_before = _warnings_captured()
            logging.captureWarnings(True)
        _attached.append(job_log)
    logging.getLogger().addHandler(handler)
    log.info("job %s started in %s (pid %d)", job_id, threading.current_thread().name, os.getpid())
    return job_log


def _continue_stored(files: Files, data_root: Path, path: Path) -> None:
    """Start from the log an earlier attempt (on any host) published, so a resumed job's
    log is one log, not only its last attempt's."""
    from core.storage import StoreError

    try:
        data = files.get_bytes(path.relative_to(data_root).as_posix())
    except StoreError:  # none yet (or the store blinks: the job itself will say)
        return
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def detach_job_log(job_log: JobLog) -> None:
    """Stop writing the job's log and close its file (publishing it a last time)."""
    logging.getLogger().removeHandler(job_log.handler)
    job_log.handler.close()
    if job_log.publisher is not None:
        job_log.publisher.stop()
    with _lock:
        if job_log in _attached:
            _attached.remove(job_log)
        if not _attached and not _captured_before:
            logging.captureWarnings(False)


def _warnings_captured() -> bool:
    # logging keeps the original showwarning here while it captures warnings.
    return getattr(logging, "_warnings_showwarning", None) is not None
