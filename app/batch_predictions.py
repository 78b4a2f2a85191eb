"""Batch prediction jobs: accepting them, and finding the CSV a finished one produced.

Checked before the job is queued: an unknown model or alias answers 404 and no model at
all 409 (as ``/predict``), a source that does not exist or is neither a folder nor an
archive 422. ``model`` null means the newest model, resolved now; the params keep both.
With an object store the source and the CSV are objects (the CSV is served through this
host's cache).
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from app.model_registry import find_model_file
from app.submission import SubmissionRefused, create_and_publish
from core import layout
from core.archives import archive_suffix
from core.config import Settings
from core.evaluation import BatchPredictRequest
from core.files import files_for
from core.job_files import local_output
from core.jobs import Job, JobNotFound, JobState, JobStore
from core.names import is_valid_name, resolve_under


class PredictionsNotFound(JobNotFound):
    """Not a predict job, or one that has not succeeded: no CSV (answered 404)."""

    def __init__(self, job_id: str, reason: str) -> None:
        LookupError.__init__(self, reason)
        self.job_id = job_id


def submit_batch_prediction(
    celery: Celery, store: JobStore, settings: Settings, request: BatchPredictRequest
) -> Job:
    model_id, _ = find_model_file(store, settings, request.model)
    source = resolve_under(settings.resolved_data_root, request.source)
    is_folder, is_file = _source_kind(settings, source)
    if not (is_folder or is_file):
        raise SubmissionRefused(
            f"source does not exist under the data root: {request.source[:200]!r}"
        )
    if is_file and archive_suffix(source.name) is None:
        raise SubmissionRefused(
            "source must be a folder of images or a .zip, .tar or .tar.gz of them. "
            f"Received: {request.source[:200]!r}"
        )
    params = {
        "model": model_id,
        "requested_model": request.model,
        "source": request.source,
        "top_k": request.top_k,
    }
    return create_and_publish(celery, store, "predict", params)


def _source_kind(settings: Settings, source: Path) -> tuple[bool, bool]:
    """(is a folder, is a file): of the data root's path, or of its key in the store."""
    files = files_for(settings)
    if files.remote:
        try:
            key = files.key_of(source)
        except ValueError:  # the data root itself
            return False, False
        is_file = files.exists(key)
        return (not is_file and bool(files.list(key))), is_file
    try:
        return source.is_dir(), source.is_file()
    except OSError:
        return False, False


def predictions_file(store: JobStore, settings: Settings, job_id: str) -> Path:
    """The CSV of succeeded predict job ``job_id``."""
    if not is_valid_name(job_id):
        raise JobNotFound(job_id[:80])
    job = store.get(job_id)
    if job.kind != "predict":
        raise PredictionsNotFound(job_id, f"job {job_id} is a {job.kind} job, not a predict job")
    if job.state != JobState.SUCCEEDED:
        raise PredictionsNotFound(
            job_id, f"job {job_id} is {job.state.value}: it has no predictions (yet)"
        )
    try:
        return local_output(settings, job_id, layout.predictions_path(settings, job_id).name)
    except FileNotFoundError:
        raise PredictionsNotFound(
            job_id, f"job {job_id} has no predictions file (deleted?)"
        ) from None
