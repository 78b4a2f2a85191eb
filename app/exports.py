"""Exports of a model: accepting export jobs, listing the checked artifacts, serving one.

The job (``worker.export_job``) builds, checks and offers an artifact; this side only reads
what it offered (``worker.exports.formats``: an artifact counts once its metadata exists),
in the store when there is one (an artifact is then downloaded through this host's cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from celery import Celery
from pydantic import BaseModel, ConfigDict

from app.dataset_catalog import dataset_manifest
from app.model_registry import ModelNotFound, find_model_file
from app.submission import SubmissionRefused, create_and_publish
from core.config import Settings
from core.jobs import Job, JobStore
from worker.exports.formats import (
    MEDIA_TYPES,
    ExportFormat,
    ExportList,
    download_name,
    local_artifact,
    stored_export,
    stored_exports,
)


class ExportNotFound(ModelNotFound):
    """The model exists but has no checked export in that format (a 404, as a missing
    model is: the subclass is answered like its base in ``app.errors``)."""


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: ExportFormat


@dataclass(frozen=True)
class ExportFile:
    path: Path
    filename: str
    media_type: str


def submit_export(
    celery: Celery, store: JobStore, settings: Settings, model: str, request: ExportRequest
) -> Job:
    """An export job for model ``model`` (an id or an alias, resolved now).

    Raises:
        ModelNotFound: No such model or alias.
        SubmissionRefused: The model's dataset is gone, so the export could not be checked.
    """
    model_id, _ = find_model_file(store, settings, model)
    dataset = str(store.get(model_id).params["dataset"])
    if dataset_manifest(settings, dataset) is None:
        raise SubmissionRefused(
            f"dataset {dataset!r} of model {model_id} no longer exists: an export is checked "
            "against its val split"
        )
    params = {"model": model_id, "format": request.format}
    return create_and_publish(celery, store, "export", params)


def model_exports(store: JobStore, settings: Settings, model: str) -> ExportList:
    """The checked exports of model ``model`` (an id or an alias)."""
    model_id, _ = find_model_file(store, settings, model)
    return ExportList(exports=stored_exports(settings, model_id))


def export_file(store: JobStore, settings: Settings, model: str, fmt: ExportFormat) -> ExportFile:
    """The artifact of model ``model`` in format ``fmt``, to download.

    Raises:
        ModelNotFound: No such model or alias.
        ExportNotFound: The model has no checked export in that format.
    """
    model_id, _ = find_model_file(store, settings, model)
    info = stored_export(settings, model_id, fmt)
    if info is None:
        raise ExportNotFound(
            f"model {model_id} has no {fmt} export; POST /models/{model_id}/exports makes one"
        )
    return ExportFile(
        path=local_artifact(settings, model_id, info),
        filename=download_name(model_id, fmt),
        media_type=MEDIA_TYPES[fmt],
    )
