"""A job's own log (written by its worker, see worker/joblog.py), whole, tailed or followed.

With an object store the log is read from the store (its worker publishes it every few
seconds and when the job ends); following polls the store's copy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ_UNAUTHORIZED, Reading, SettingsDep, StoreDep
from app.api.routes.jobs import get_known_job
from app.events import JobWatcher
from app.schemas import ErrorBody
from core.config import Settings
from core.files import Files, files_for
from core.jobs import FINISHED_STATES, JobStore
from core.storage import ObjectNotFound
from worker.joblog import LOG_BACKUPS, job_log_files, job_log_path

router = APIRouter(tags=["jobs"], dependencies=[Reading], responses=READ_UNAUTHORIZED)

FOLLOW_POLL_SECONDS = 0.5
_CHUNK = 64 * 1024


def _parts(settings: Settings, job_id: str) -> list[tuple[bool, bytes]]:
    """(is the current part, its bytes) of each part of the job's log, oldest first."""
    root = settings.resolved_data_root
    current = job_log_path(root, job_id)
    files = files_for(settings)
    if not files.remote:
        return [(path == current, path.read_bytes()) for path in job_log_files(root, job_id)]
    parts = []
    for n in [*range(LOG_BACKUPS, 0, -1), 0]:
        key = files.key_of(current.with_name(f"{current.name}.{n}") if n else current)
        try:
            parts.append((n == 0, files.get_bytes(key)))
        except ObjectNotFound:
            continue
    return parts


def read_log(settings: Settings, job_id: str, tail: int | None) -> tuple[str, int]:
    """The job's log (all its parts, oldest first), or its last `tail` lines, and how many
    bytes of the current part that covers (where following continues)."""
    lines: deque[bytes] = deque(maxlen=tail)
    offset = 0
    for is_current, data in _parts(settings, job_id):
        if is_current:
            offset = len(data)
        lines.extend(data.splitlines(keepends=True))
    return b"".join(lines).decode("utf-8", errors="replace"), offset


def _read_stored_from(files: Files, key: str, offset: int) -> tuple[bytes, int]:
    """`_read_from` of the store's copy of the current part."""
    try:
        data = files.get_bytes(key)
    except ObjectNotFound:
        return b"", offset
    if len(data) < offset:
        offset = 0
    chunk = data[offset : offset + _CHUNK * 16]
    return chunk, offset + len(chunk)


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    """New bytes of the current log file after `offset` (from 0 again once it rolled over)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return b"", offset
    if size < offset:
        offset = 0
    with path.open("rb") as file:
        file.seek(offset)
        data = file.read(_CHUNK * 16)
    return data, offset + len(data)


async def _follow(
    watcher: JobWatcher, store: JobStore, settings: Settings, job_id: str, tail: int | None
) -> AsyncIterator[bytes]:
    path = job_log_path(settings.resolved_data_root, job_id)
    files = files_for(settings)

    def read_from(offset: int) -> tuple[bytes, int]:
        if files.remote:
            return _read_stored_from(files, files.key_of(path), offset)
        return _read_from(path, offset)

    with watcher.subscribe(job_id) as mailbox:
        job = await run_in_threadpool(store.get, job_id)
        text, offset = await run_in_threadpool(read_log, settings, job_id, tail)
        yield text.encode()
        finished = job.state in FINISHED_STATES
        while True:
            data, offset = await run_in_threadpool(read_from, offset)
            if data:
                yield data
                continue
            if finished:  # drained after the end: the worker writes its last line first
                return
            for changed in await mailbox.get(timeout=FOLLOW_POLL_SECONDS):
                finished = finished or changed.state in FINISHED_STATES


@router.get(
    "/jobs/{job_id}/logs",
    response_model=None,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        404: {"model": ErrorBody},
    },
)
async def job_logs(
    job_id: str,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    tail: Annotated[int | None, Query(ge=0, le=1_000_000, description="last N lines")] = None,
    follow: Annotated[bool, Query(description="stream until the job ends")] = False,
) -> Response:
    """The lines the job's worker logged while running it (warnings, tracebacks included);
    empty while it has not started. Bounded: see worker/joblog.py (5 MB x 3 parts)."""
    job = await run_in_threadpool(get_known_job, store, job_id)
    if follow and job.state not in FINISHED_STATES:
        watcher: JobWatcher = request.app.state.watcher
        stream = _follow(watcher, store, settings, job.id, tail)
        return StreamingResponse(stream, media_type="text/plain; charset=utf-8")
    text, _ = await run_in_threadpool(read_log, settings, job.id, tail)
    return PlainTextResponse(text)
