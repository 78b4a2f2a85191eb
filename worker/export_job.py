"""The export job: build a model's artifact in one format, check it, then offer it.

Params: ``{"model": model id (resolved by the API), "format": "saved_model" | "onnx" |
"litert"}``. Everything is written in a scratch folder ``exports/.tmp-<job id>/``; only an
artifact whose check passed is moved (``os.replace``) to its final name, and its metadata
is written after it (``worker.exports.formats``), so a failed, cancelled or killed job
leaves nothing that is offered. A retried job starts from a clean scratch folder.

With an object store the model and the dataset come through this host's cache, and the
offer is made in the store in the same order: the old metadata object goes, the artifact
is published, its metadata last (``worker.exports.formats.offer``).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core import layout
from core.job_files import dataset_in_store, local_dataset, local_model
from core.jobs import utcnow
from core.storage import TruncatedObject
from worker.exports.formats import (
    RUNTIMES,
    TEMP_PREFIX,
    ExportFormat,
    ExportInfo,
    artifact_path,
    metadata_path,
    offer,
    withdraw_offer,
    write_metadata,
)
from worker.runner import JobContext, JobFailed

log = logging.getLogger(__name__)

# Progress fractions at the start of each stage; the check fills the rest.
LOADED, EXPORTED, CHECKED = 0.05, 0.3, 0.97


class ExportParams(BaseModel):
    model: str
    format: ExportFormat


class _Progress:
    """Reports the job's progress at most every ``interval`` seconds (and each stage)."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.interval = ctx.settings.progress_interval
        self.last = 0.0

    def __call__(self, fraction: float, stage: str, *, force: bool = True, **extra: Any) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.interval:
            self.last = now
            self.ctx.report(progress={"fraction": round(fraction, 4), "stage": stage, **extra})


def run_export(ctx: JobContext) -> dict[str, Any]:
    """Export, check and offer one artifact; returns the job's result."""
    params = ExportParams.model_validate(ctx.job.params)
    settings = ctx.settings
    try:
        model_file = local_model(settings, params.model)
    except FileNotFoundError:
        raise JobFailed(f"model {params.model} has no model file (deleted?)") from None
    except TruncatedObject as exc:
        raise JobFailed(f"model {params.model} cannot be read: {exc}") from exc
    job = ctx.store.get(params.model)
    dataset = str(job.params["dataset"])
    if not dataset_in_store(settings, dataset):
        raise JobFailed(
            f"dataset {dataset!r} of model {params.model} no longer exists: the export "
            "cannot be checked against its val split"
        )
    try:
        dataset_dir = local_dataset(settings, dataset)
    except (FileNotFoundError, TruncatedObject) as exc:
        raise JobFailed(f"dataset {dataset!r} cannot be read: {exc}") from exc
    root = layout.exports_root(settings, params.model)
    scratch = root / f"{TEMP_PREFIX}{ctx.job_id}"
    shutil.rmtree(scratch, ignore_errors=True)  # what an earlier attempt left
    scratch.mkdir(parents=True)
    try:
        return _export(ctx, params, model_file, dataset_dir, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _export(
    ctx: JobContext,
    params: ExportParams,
    model_file: Path,
    dataset_dir: Path,
    scratch: Path,
) -> dict[str, Any]:
    # TensorFlow and the converters load here, once the job is claimed and beating.
    from model.serving import load_model
    from worker.exports.artifacts import build_artifact
    from worker.exports.checks import (
        measure_agreement,
        open_in_runtime,
        require_agreement,
        val_images,
    )

    fmt = params.format
    progress = _Progress(ctx)
    progress(0.0, "loading")
    served = load_model(params.model, model_file)
    ctx.check_cancelled()
    progress(LOADED, "exporting")
    artifact = scratch / "artifact" / artifact_path(scratch, fmt).name
    artifact.parent.mkdir()
    started = time.monotonic()
    build_artifact(fmt, served, artifact)
    export_seconds = time.monotonic() - started
    ctx.check_cancelled()
    progress(EXPORTED, "checking", images=0)
    started = time.monotonic()
    predict = open_in_runtime(fmt, artifact, scratch / "runtime")
    val = val_images(dataset_dir)

    def on_batch(seen: int) -> None:
        ctx.check_cancelled()
        done = EXPORTED + (CHECKED - EXPORTED) * seen / max(val.count, 1)
        progress(min(done, CHECKED), "checking", force=False, images=seen)

    agreement = measure_agreement(predict, served.probabilities, val.batches(), on_batch)
    require_agreement(fmt, agreement)
    check_seconds = time.monotonic() - started
    ctx.check_cancelled()
    root = scratch.parent
    # Offer it: the old metadata goes first, the artifact moves in, its metadata comes last.
    metadata_path(root, fmt).unlink(missing_ok=True)
    withdraw_offer(ctx.settings, params.model, fmt)
    final = artifact_path(root, fmt)
    os.replace(artifact, final)
    info = ExportInfo(
        format=fmt,
        bytes=final.stat().st_size,
        agreement=agreement.fraction,
        created_at=utcnow(),
        images=agreement.images,
        runtime=RUNTIMES[fmt],
    )
    write_metadata(root, info)
    offer(ctx.settings, params.model, fmt)
    progress(1.0, "done", images=agreement.images)
    log.info("job %s: %s export of %s offered (%s)", ctx.job_id, fmt, params.model, info)
    return {
        "model": params.model,
        **info.model_dump(mode="json"),
        "path": str(final.relative_to(ctx.settings.resolved_data_root)),
        "export_seconds": round(export_seconds, 3),
        "check_seconds": round(check_seconds, 3),
    }
