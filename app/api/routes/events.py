"""Live progress: Server-Sent Events of one job, and of every job.

Both streams are fed by the API process's one `JobWatcher` (app/events/watcher.py), so the
number of open streams does not change how often the job store is asked. The ids of a
job's events are recomputed from its record (app/events/ids.py): `Last-Event-ID` resumes
exactly. A comment line goes out every `PING_SECONDS` so that proxies keep streams open.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ_UNAUTHORIZED, Reading, StoreDep
from app.api.routes.jobs import get_known_job
from app.errors import json_safe
from app.events import BadEventId, JobWatcher, events_after, parse_event_id
from app.events.watcher import CLOCK_MARGIN, changed_jobs
from app.schemas import ErrorBody
from core.jobs import Job, JobStore

router = APIRouter(tags=["events"], dependencies=[Reading], responses=READ_UNAUTHORIZED)

PING_SECONDS = 10
# GET /events sends a job at most this often; a newer record waits for its turn.
JOB_EVENT_SECONDS = 1.0
_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events; `data` is JSON text",
        "content": {"text/event-stream": {"schema": _EVENT_SCHEMA}},
    },
    400: {"model": ErrorBody, "description": "a Last-Event-ID this API never sent"},
}


# Documented, not enforced by FastAPI: anything else gets a 400 with the reason.
_LAST_EVENT_ID = Header(
    description="the id of the last event received; the stream resumes after it",
    json_schema_extra={"pattern": "^[0-9]{0,16}$"},
)


def _watcher(request: Request) -> JobWatcher:
    return request.app.state.watcher


def _sse(event: str, data: Any, event_id: int) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(json_safe(data)), event=event, id=str(event_id))


def _last_id(value: str | None) -> int | None:
    try:
        return parse_event_id(value)
    except BadEventId as exc:
        raise HTTPException(400, detail=str(exc)) from exc


async def _job_stream(
    watcher: JobWatcher, store: JobStore, job_id: str, last_id: int | None
) -> AsyncIterator[ServerSentEvent]:
    with watcher.subscribe(job_id) as mailbox:
        # Read after subscribing: a change after this read reaches the mailbox.
        job = await run_in_threadpool(store.get, job_id)
        while True:
            for event in events_after(job, last_id):
                yield _sse(event.event, event.data, event.id)
                last_id = event.id
                if event.event == "end":
                    return
            changed = await mailbox.get()
            if changed:
                job = changed[-1]


@router.get(
    "/jobs/{job_id}/events",
    response_model=None,
    responses={**_STREAM, 404: {"model": ErrorBody}},
)
async def job_events(
    job_id: str,
    request: Request,
    store: StoreDep,
    last_event_id: Annotated[str, _LAST_EVENT_ID] = "",
) -> EventSourceResponse:
    """The job's `progress`, `epoch` and `state` events, then `end` (the whole Job)."""
    last_id = _last_id(last_event_id)
    await run_in_threadpool(get_known_job, store, job_id)
    stream = _job_stream(_watcher(request), store, job_id, last_id)
    return EventSourceResponse(stream, ping=PING_SECONDS)


class _Clock:
    """Ids of GET /events: microseconds since 1970, strictly increasing."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last = max(self.last + 1, time.time_ns() // 1000)
        return self.last


def _since(value: str | None) -> datetime | None:
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 17:
        raise HTTPException(
            400,
            f"Last-Event-ID must be the id of an event of this stream (microseconds since "
            f"1970). Received: {value[:80]!r}",
        )
    try:
        stamp = datetime.fromtimestamp(int(text) / 1e6, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise HTTPException(400, f"Last-Event-ID is not a time. Received: {value[:80]!r}") from exc
    return stamp.replace(tzinfo=None) - CLOCK_MARGIN


async def _all_stream(
    watcher: JobWatcher, store: JobStore, since: datetime | None
) -> AsyncIterator[ServerSentEvent]:
    clock = _Clock()
    sent_at: dict[str, float] = {}
    pending: dict[str, Job] = {}
    with watcher.subscribe() as mailbox:
        if since is not None:  # a reconnect: what may have changed while away
            for job in await run_in_threadpool(changed_jobs, store, since, set()):
                pending[job.id] = job
        while True:
            now = time.monotonic()
            for job_id, job in list(pending.items()):
                if now - sent_at.get(job_id, -JOB_EVENT_SECONDS) >= JOB_EVENT_SECONDS:
                    yield _sse("job", job.model_dump(mode="json"), clock.next())
                    sent_at[job_id] = now
                    del pending[job_id]
            for job_id in [k for k, t in sent_at.items() if now - t > JOB_EVENT_SECONDS]:
                if job_id not in pending:
                    del sent_at[job_id]
            due = [sent_at[k] + JOB_EVENT_SECONDS - now for k in pending if k in sent_at]
            for job in await mailbox.get(timeout=max(min(due), 0.01) if due else None):
                pending[job.id] = job


@router.get("/events", response_model=None, responses=_STREAM)
async def all_events(
    request: Request,
    store: StoreDep,
    last_event_id: Annotated[str, _LAST_EVENT_ID] = "",
) -> EventSourceResponse:
    """`job` events (data: a Job) when any job is created or changes, at most 1/s per job."""
    since = _since(last_event_id)
    stream = _all_stream(_watcher(request), store, since)
    return EventSourceResponse(stream, ping=PING_SECONDS)
