"""A job's own log (written by its worker, see worker/joblog.py), whole, tailed or followed."""

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
from core.jobs import FINISHED_STATES, JobStore
from worker.joblog import job_log_files, job_log_path

router = APIRouter(tags=["jobs"], dependencies=[Reading], responses=READ_UNAUTHORIZED)

FOLLOW_POLL_SECONDS = 0.5
_CHUNK = 64 * 1024


def read_log(data_root: Path, job_id: str, tail: int | None) -> tuple[str, int]:
    """The job's log (all its parts, oldest first), or its last `tail` lines, and how many
    bytes of the current part that covers (where following continues)."""
    lines: deque[bytes] = deque(maxlen=tail)
    current = job_log_path(data_root, job_id)
    offset = 0
    for path in job_log_files(data_root, job_id):
        data = path.read_bytes()
        if path == current:
            offset = len(data)
        lines.extend(data.splitlines(keepends=True))
    return b"".join(lines).decode("utf-8", errors="replace"), offset


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
    watcher: JobWatcher, store: JobStore, data_root: Path, job_id: str, tail: int | None
) -> AsyncIterator[bytes]:
    path = job_log_path(data_root, job_id)
    with watcher.subscribe(job_id) as mailbox:
        job = await run_in_threadpool(store.get, job_id)
        text, offset = await run_in_threadpool(read_log, data_root, job_id, tail)
        yield text.encode()
        finished = job.state in FINISHED_STATES
        while True:
            data, offset = await run_in_threadpool(_read_from, path, offset)
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
    root = settings.resolved_data_root
    if follow and job.state not in FINISHED_STATES:
        watcher: JobWatcher = request.app.state.watcher
        stream = _follow(watcher, store, root, job.id, tail)
        return StreamingResponse(stream, media_type="text/plain; charset=utf-8")
    text, _ = await run_in_threadpool(read_log, root, job.id, tail)
    return PlainTextResponse(text)
