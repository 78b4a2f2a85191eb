"""A job's files in the store (``core/files.py``): checkpoints, outputs, and the datasets
its readers need, so a job can run, resume and be served on any host.

Keys are the data root's layout (``core/layout.py``): ``jobs/<id>/checkpoints/
epoch-0003.keras``, ``jobs/<id>/model.keras``, ``datasets/<name>/...``. Every writer here
commits its file locally first (a temporary file renamed into place, as before the store
existed), then publishes it; every reader asks for a local copy, through the per-host
cache, checked against a recorded size.

Checkpoints: a checkpoint object counts only once its sidecar
``epoch-NNNN.keras.json`` (its size and ETag as the store reported them after the upload,
and the best epoch so far) is in the store, written after it. An object without a
sidecar is an upload a crash cut short; one whose size is not the sidecar's is truncated
(`TruncatedObject`); neither is ever loaded. Sidecars are written once and never
rewritten, so no object is updated in place (``best.json`` of the local layout is the
newest sidecar's ``best`` here).

With ``TINYRES_STORAGE_URL`` unset (``files.remote`` False) nothing here is called by the
job code, or it returns the data root's own files: every path is exactly today's.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import layout
from core.config import Settings
from core.files import Files, files_for
from core.manifest import MANIFEST_FILE, Manifest
from core.storage import ObjectNotFound, StoreError, join_key

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
_SIDECAR_RE = re.compile(r"^epoch-(\d{4,})\.keras\.json$")


def job_key(job_id: str, *parts: str) -> str:
    return join_key("jobs", job_id, *parts)


def checkpoint_key(job_id: str, epoch: int) -> str:
    return job_key(job_id, "checkpoints", layout.checkpoint_name(epoch))


def publish_path(settings: Settings, path: Path) -> None:
    """Publish the committed local file `path` (nothing with the local backend), then drop
    the local copy: the store holds it now, and this host's disk keeps only caches."""
    files = files_for(settings)
    if files.remote:
        files.publish(path)
        files.discard_local(path)


# --------------------------------------------------------------------------- datasets


def _stored_dataset(files: Files, name: str) -> tuple[Manifest, list[tuple[str, int]]]:
    """The dataset's manifest (fetched into the cache) and (key, recorded bytes) of every
    shard it names."""
    manifest_key = join_key("datasets", name, MANIFEST_FILE)
    manifest = Manifest.from_json(files.local(manifest_key).read_bytes())
    shards = [
        (join_key("datasets", name, shard.file), shard.bytes)
        for split in manifest.splits.values()
        for shard in split.shards
    ]
    return manifest, shards


def local_dataset(settings: Settings, name: str) -> Path:
    """A local folder holding dataset `name`: its manifest and every shard it names, each
    checked against the bytes the manifest recorded (`TruncatedObject` if not), in this
    host's cache (whose entries are the keys as paths, so the folder is a dataset folder).
    A dataset without a manifest in the store raises `ObjectNotFound` (a
    FileNotFoundError). The local backend: the data root's dataset folder itself."""
    files = files_for(settings)
    if not files.remote:
        return layout.dataset_dir(settings, name)
    _, shards = _stored_dataset(files, name)
    for key, size in shards:
        files.local(key, size=size)
    return files.cache.objects / "datasets" / name


@contextmanager
def pinned_dataset(settings: Settings, name: str) -> Iterator[Path]:
    """`local_dataset`, with every shard kept from the cache's eviction until the block
    ends (a training run reads its shards again every epoch)."""
    files = files_for(settings)
    if not files.remote:
        yield layout.dataset_dir(settings, name)
        return
    _, shards = _stored_dataset(files, name)
    with ExitStack() as stack:
        for key, size in shards:
            stack.enter_context(files.cache.pinned(key, size=size))
        yield files.cache.objects / "datasets" / name


def dataset_in_store(settings: Settings, name: str) -> bool:
    """Whether dataset `name` is finished (its manifest is in the store)."""
    files = files_for(settings)
    if not files.remote:
        return layout.manifest_path(settings, name).is_file()
    return files.exists(join_key("datasets", name, MANIFEST_FILE))


# --------------------------------------------------------------------------- outputs


def local_output(settings: Settings, job_id: str, name: str, size: int | None = None) -> Path:
    """A local copy of the job's output file `name` (``model.keras``, ``predictions.csv``,
    ``exports/model.onnx``...), through the cache: `ObjectNotFound` (a FileNotFoundError)
    when the store has none. The local backend: the data root's file, which must exist."""
    files = files_for(settings)
    if not files.remote:
        path = layout.job_dir(settings, job_id) / name
        if not path.is_file():
            raise ObjectNotFound(f"no file {path}")
        return path
    return files.local(job_key(job_id, name), size=size)


def local_model(settings: Settings, job_id: str) -> Path:
    """A local copy of the job's ``model.keras`` (cached on first use); `ObjectNotFound`
    (a FileNotFoundError) when it has none."""
    return local_output(settings, job_id, layout.model_path(settings, job_id).name)


def output_bytes(settings: Settings, job_id: str, name: str) -> bytes:
    """The bytes of the job's (small) output file `name`; `ObjectNotFound` when absent."""
    files = files_for(settings)
    if not files.remote:
        path = layout.job_dir(settings, job_id) / name
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(f"no file {path}") from None
    return files.get_bytes(job_key(job_id, name))


def output_exists(settings: Settings, job_id: str, name: str) -> bool:
    files = files_for(settings)
    if not files.remote:
        return (layout.job_dir(settings, job_id) / name).is_file()
    return files.exists(job_key(job_id, name))


def delete_job_files(settings: Settings, job_id: str) -> None:
    """The job's whole folder, in the store and on this host (the local backend: today's
    ``rmtree`` of the job folder)."""
    files_for(settings).delete(job_key(job_id))


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint object and what its sidecar recorded of it."""

    epoch: int
    key: str
    size: int
    etag: str
    best: dict[str, Any] | None


def publish_checkpoint(
    files: Files, job_id: str, path: Path, epoch: int, best: dict[str, Any] | None
) -> StoredCheckpoint:
    """Upload the committed checkpoint `path`, then its sidecar (last: from now on the
    checkpoint counts), then drop the local copy."""
    key = checkpoint_key(job_id, epoch)
    info = files.publish(path, key)
    body = {"epoch": epoch, "size": info.size, "etag": info.etag, "best": best}
    files.put_bytes(json.dumps(body).encode(), key + SIDECAR_SUFFIX)
    files.discard_local(path)
    return StoredCheckpoint(epoch, key, info.size, info.etag, best)


def stored_checkpoints(files: Files, job_id: str) -> list[StoredCheckpoint]:
    """The job's committed checkpoints (those with a readable sidecar), oldest first."""
    found = []
    for key in files.list(job_key(job_id, "checkpoints")):
        match = _SIDECAR_RE.match(key.rsplit("/", 1)[-1])
        if not match:
            continue
        try:
            raw = json.loads(files.get_bytes(key))
            found.append(
                StoredCheckpoint(
                    epoch=int(match.group(1)),
                    key=key[: -len(SIDECAR_SUFFIX)],
                    size=int(raw["size"]),
                    etag=str(raw["etag"]),
                    best=raw.get("best"),
                )
            )
        except (ObjectNotFound, ValueError, KeyError, TypeError):
            log.warning("job %s: checkpoint sidecar %s is unreadable; ignored", job_id, key)
    return sorted(found, key=lambda c: c.epoch)


def checkpoint_objects(files: Files, job_id: str) -> list[str]:
    """Every checkpoint object key of the job, committed or not."""
    prefix = job_key(job_id, "checkpoints")
    return [key for key in files.list(prefix) if key.endswith(".keras")]


def fetch_checkpoint(files: Files, checkpoint: StoredCheckpoint) -> Path:
    """A local copy of `checkpoint`, checked against its sidecar's size
    (`TruncatedObject` when the object is not the one uploaded)."""
    return files.local(checkpoint.key, size=checkpoint.size)


def prune_stored(files: Files, job_id: str, keep: int, best_epoch: int | None) -> None:
    """Delete all but the newest `keep` committed checkpoints (and the best one): the
    sidecar first, so a checkpoint stops counting before its object goes."""
    for checkpoint in stored_checkpoints(files, job_id)[:-keep]:
        if checkpoint.epoch != best_epoch:
            files.store.delete(checkpoint.key + SIDECAR_SUFFIX)
            files.store.delete(checkpoint.key)


def stored_checkpoint_epochs(settings: Settings, job_id: str) -> list[int]:
    """Epochs with a committed checkpoint, in the store (the local backend:
    `layout.checkpoint_epochs`, today's listing)."""
    files = files_for(settings)
    if not files.remote:
        return layout.checkpoint_epochs(settings, job_id)
    return [c.epoch for c in stored_checkpoints(files, job_id)]


__all__ = ["StoreError", "local_dataset", "pinned_dataset"]
