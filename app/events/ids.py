"""The events of one job's stream, recomputed from its record, with ids that resume exactly.

Every event of `GET /jobs/{id}/events` is a pure function of the job record, so a stream
that reconnects with `Last-Event-ID` (even to another API process, or after a restart) gets
exactly the events after that id: none missed, none repeated. An id is one integer,

    id = rank * 10**16 + epochs * 10**11 + fraction_nano * 10 + kind

compared as the tuple (rank, epochs, fraction_nano, kind):

- `rank`: 0 queued, 1 running, 2 finished, 3 the `end` event;
- `epochs`: how many history entries the job had (an `epoch` event carries its position
  in the history, 1-based);
- `fraction_nano`: `progress.fraction` in units of 1e-9 (0 for state and epoch events);
- `kind`: 0 state, 1 epoch, 2 progress, 3 end.

While a job runs, its history only grows and its fraction only rises, so the ids of the
events in the order they happen are increasing. A progress event is only sent when its id is
above the last one sent: the fractions a stream carries never go down, even when a job
handed back to another worker resumes from an earlier checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.jobs import FINISHED_STATES, Job, JobState

KIND_STATE, KIND_EPOCH, KIND_PROGRESS, KIND_END = 0, 1, 2, 3
RANK_QUEUED, RANK_RUNNING, RANK_FINISHED, RANK_END = 0, 1, 2, 3
MAX_EVENT_ID = 4 * 10**16
_MAX_EPOCHS = 10**5 - 1


class BadEventId(ValueError):
    """A Last-Event-ID that no stream of this API sent."""


@dataclass(frozen=True)
class JobEvent:
    id: int
    event: str
    data: dict[str, Any]


def event_id(rank: int, epochs: int = 0, fraction: float = 0.0, kind: int = KIND_STATE) -> int:
    fraction_nano = int(min(max(fraction, 0.0), 1.0) * 10**9)
    return rank * 10**16 + min(epochs, _MAX_EPOCHS) * 10**11 + fraction_nano * 10 + kind


def parse_event_id(value: str | None) -> int | None:
    """The id a client last saw, or None for a fresh stream; `BadEventId` for garbage."""
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 17:
        raise BadEventId(
            f"Last-Event-ID must be the id of an event this API sent (a non-negative "
            f"integer below {MAX_EVENT_ID}). Received: {value[:80]!r}"
        )
    number = int(text)
    if number >= MAX_EVENT_ID:
        raise BadEventId(f"Last-Event-ID is above any event id. Received: {value[:80]!r}")
    return number


def _rank(state: JobState) -> int:
    if state == JobState.QUEUED:
        return RANK_QUEUED
    return RANK_FINISHED if state in FINISHED_STATES else RANK_RUNNING


def _fraction(job: Job) -> float:
    try:
        return float(job.progress.get("fraction", 0.0))
    except (TypeError, ValueError):
        return 0.0


def _progress(job: Job) -> dict[str, Any]:
    return {"state": job.state.value, "progress": job.progress, "metrics": job.metrics}


def job_events(job: Job) -> list[JobEvent]:
    """Every event the record implies, in id order (the stream from its beginning)."""
    rank = _rank(job.state)
    events = [JobEvent(event_id(RANK_QUEUED), "state", {"state": "queued", "error": None})]
    ran = rank >= RANK_RUNNING and job.started_at is not None
    if ran:
        events.append(
            JobEvent(event_id(RANK_RUNNING), "state", {"state": "running", "error": None})
        )
        for position, entry in enumerate(job.history, start=1):
            events.append(
                JobEvent(event_id(RANK_RUNNING, position, 0.0, KIND_EPOCH), "epoch", entry)
            )
    epochs = len(job.history) if ran else 0
    if rank == RANK_RUNNING:
        progress_id = event_id(RANK_RUNNING, epochs, _fraction(job), KIND_PROGRESS)
        events.append(JobEvent(progress_id, "progress", _progress(job)))
    if rank == RANK_FINISHED:
        finished = {"state": job.state.value, "error": job.error}
        events.append(JobEvent(event_id(RANK_FINISHED), "state", finished))
        final_id = event_id(RANK_FINISHED, epochs, _fraction(job), KIND_PROGRESS)
        events.append(JobEvent(final_id, "progress", _progress(job)))
        whole = job.model_dump(mode="json")
        events.append(JobEvent(event_id(RANK_END, kind=KIND_END), "end", whole))
    return events


def events_after(job: Job, last_id: int | None) -> list[JobEvent]:
    """The events a stream that last saw `last_id` still needs. A fresh stream (no id) of a
    finished job gets only its `end` event (the whole job), at once."""
    events = job_events(job)
    if last_id is None:
        if job.state in FINISHED_STATES:
            return events[-1:]
        return events
    return [event for event in events if event.id > last_id]
