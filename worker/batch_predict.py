"""Batch prediction jobs: classify every image of a source into a CSV.

The work of a job of kind ``predict``, whose params were resolved at submission
(``app.batch_predictions``) to a model id, a source path under the data root and ``top_k``.

* Same answers as ``/predict``: each file goes through ``model.serving.decode_upload`` (the
  upload checks and decoder of ``/predict``) and ``LoadedModel.probabilities`` (its network),
  ranked by ``model.serving.top_k``.
* Streaming: only the list of file names is held; images are read, decoded (in a few
  threads) and classified ``BATCH_SIZE`` at a time, and their rows appended to the CSV.
* Sources: a folder (searched recursively; hidden files and symbolic links skipped) or a
  ``.zip``, ``.tar`` or ``.tar.gz``, read in place (``worker.sources.SourceFiles``). Files
  with an image extension are classified; others are counted as ``ignored``.
* A file that cannot be read or decoded is counted and listed (the first
  ``UNREADABLE_LISTED``) in the result, with the reason; it never fails the job.
* The CSV is written to a temporary file and renamed into place when every image is done:
  a cancelled or failed job leaves no ``predictions.csv``. With an object store the source
  is read through this host's cache and the finished CSV is then published.
"""

from __future__ import annotations

import csv
import logging
import os
import posixpath
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import layout
from core.files import files_for
from core.job_files import publish_path
from core.names import resolve_under
from model.serving import BadImage, LoadedModel, decode_upload, top_k
from worker.evaluation_job import load_job_model
from worker.runner import JobContext, JobFailed
from worker.sources import SourceError, SourceFiles, is_image_name

log = logging.getLogger(__name__)

BATCH_SIZE = 64
DECODE_THREADS = 4
UNREADABLE_LISTED = 100
CSV_HEADER = ("file", "rank", "class_index", "wnid", "label", "probability")


@dataclass
class Tally:
    """What a batch prediction did so far."""

    images: int = 0
    unreadable_count: int = 0
    unreadable: list[dict[str, str]] = field(default_factory=list)

    def reject(self, name: str, reason: str) -> None:
        self.unreadable_count += 1
        if len(self.unreadable) < UNREADABLE_LISTED:
            self.unreadable.append({"file": name, "reason": reason[:300]})


def list_source(files: SourceFiles) -> tuple[list[str], int]:
    """The image file names of a source (sorted) and how many other files it holds."""
    path = files.path
    if files.is_tar:
        names = files.tar_members().names()
    elif files.is_zip:
        try:
            with zipfile.ZipFile(path) as archive:
                names = [info.filename for info in archive.infolist() if not info.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise SourceError(f"source {path.name} is not a readable zip file: {exc}") from exc
    else:
        names = list(_folder_files(path))
    names = [name for name in names if not name.startswith("__MACOSX/")]
    images = sorted(name for name in names if is_image_name(name))
    return images, len(names) - len(images)


def _folder_files(root: Path) -> Iterator[str]:
    for folder, subfolders, filenames in os.walk(root, followlinks=False):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        relative = Path(folder).relative_to(root).as_posix()
        for name in filenames:
            if not os.path.islink(os.path.join(folder, name)):
                yield name if relative == "." else posixpath.join(relative, name)


def run_batch_prediction(ctx: JobContext) -> dict[str, Any]:
    """The work of a predict job: the CSV at ``layout.predictions_path``, and a summary."""
    params = ctx.job.params
    settings = ctx.settings
    try:
        source = resolve_under(settings.resolved_data_root, params["source"])
    except ValueError as exc:
        raise JobFailed(str(exc)) from exc
    files = files_for(settings)
    if files.remote:
        from worker.shard_store import local_source

        source = local_source(files, files.key_of(source))
    if not source.exists():
        raise JobFailed(f"source {params['source']!r} does not exist (any more)")
    model = load_job_model(settings, params["model"])
    k = min(int(params["top_k"]), model.num_classes)
    target = layout.predictions_path(settings, ctx.job_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    started = time.monotonic()
    try:
        with SourceFiles(source) as source_files:
            names, ignored = list_source(source_files)
            if not names:
                raise JobFailed(f"source {params['source']!r} holds no image files")
            with temp.open("w", newline="", encoding="utf-8") as out:
                tally = _classify_all(ctx, model, source_files, names, k, csv.writer(out))
        os.replace(temp, target)
        publish_path(settings, target)
    except SourceError as exc:
        raise JobFailed(str(exc)) from exc
    finally:
        temp.unlink(missing_ok=True)
    log.info(
        "job %s: %d images classified, %d unreadable, in %.2f s",
        ctx.job_id,
        tally.images,
        tally.unreadable_count,
        time.monotonic() - started,
    )
    return {
        "model": model.id,
        "source": params["source"],
        "top_k": k,
        "images": tally.images,
        "rows": tally.images * k,
        "unreadable_count": tally.unreadable_count,
        "unreadable": tally.unreadable,
        "ignored": ignored,
        "predictions_path": str(target.relative_to(settings.resolved_data_root)),
    }


def _classify_all(
    ctx: JobContext,
    model: LoadedModel,
    files: SourceFiles,
    names: Sequence[str],
    k: int,
    writer: Any,
) -> Tally:
    writer.writerow(CSV_HEADER)
    tally = Tally()
    max_pixels = ctx.settings.max_image_pixels
    last_report = 0.0
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode") as pool:
        for start in range(0, len(names), BATCH_SIZE):
            ctx.check_cancelled()
            batch = names[start : start + BATCH_SIZE]
            # Read in this thread (an archive is one file handle), decode in the pool.
            contents = [_read(files, name, tally) for name in batch]
            decoded = list(pool.map(lambda data: _decode(data, max_pixels), contents))
            good: list[tuple[str, np.ndarray]] = []
            for name, data, result in zip(batch, contents, decoded, strict=True):
                if isinstance(result, np.ndarray):
                    good.append((name, result))
                elif data is not None:
                    tally.reject(name, result)
            if good:
                probabilities = model.probabilities(np.stack([pixels for _, pixels in good]))
                for (name, _), row in zip(good, probabilities, strict=True):
                    for rank, (entry, p) in enumerate(top_k(row, k, model.class_names), 1):
                        writer.writerow((name, rank, entry.index, entry.wnid, entry.label, p))
                tally.images += len(good)
            done = start + len(batch)
            now = time.monotonic()
            if done == len(names) or now - last_report >= ctx.settings.progress_interval:
                last_report = now
                ctx.report(
                    progress={
                        "fraction": round(done / len(names), 6),
                        "files": done,
                        "total": len(names),
                        "unreadable": tally.unreadable_count,
                    }
                )
    return tally


def _read(files: SourceFiles, name: str, tally: Tally) -> bytes | None:
    try:
        return files.read(name)
    except Exception as exc:  # a damaged member (CRC, zlib, truncated tar): that file only
        tally.reject(name, f"cannot be read: {type(exc).__name__}: {exc}")
        return None


def _decode(data: bytes | None, max_pixels: int) -> np.ndarray | str:
    """The pixels /predict would classify, or the reason it would refuse the file."""
    if data is None:
        return "unread"
    try:
        return decode_upload(data, max_pixels)
    except BadImage as exc:  # ImageTooLarge included
        return str(exc)
