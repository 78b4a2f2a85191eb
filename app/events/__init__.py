"""Live job events: one store watcher per API process, and the ids of a job's stream."""

from app.events.ids import BadEventId, JobEvent, events_after, job_events, parse_event_id
from app.events.watcher import JobWatcher, Mailbox

__all__ = [
    "BadEventId",
    "JobEvent",
    "JobWatcher",
    "Mailbox",
    "events_after",
    "job_events",
    "parse_event_id",
]
