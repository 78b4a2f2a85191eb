"""The finished datasets, as clients see them.

A dataset exists when its manifest does: ``datasets/<name>/manifest.json`` in the store
(``core/files.py``; with the local backend, that file under the data root). Manifests are
read from the store on every request (a small object; another API replica may have
deleted or replaced it meanwhile), shards through this host's cache.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

from pydantic import BaseModel

from core import layout
from core.config import Settings
from core.files import Files, files_for
from core.jobs import JobState, JobStore
from core.manifest import MANIFEST_FILE, ClassEntry, Manifest, SplitInfo
from core.names import is_valid_name, is_within
from core.storage import ObjectNotFound, join_key

log = logging.getLogger(__name__)


class DatasetNotFound(LookupError):
    """No readable dataset of that name inside the data root."""


class DatasetInUse(RuntimeError):
    """The dataset cannot be deleted: a queued or running job writes or reads it."""


class Dataset(BaseModel):
    name: str
    source: str
    compression: str
    seed: int
    created_at: str
    classes: list[ClassEntry]
    splits: dict[str, SplitInfo]
    count: int
    bytes: int
    skipped: int


class DatasetList(BaseModel):
    datasets: list[Dataset]


def manifest_key(name: str) -> str:
    return join_key("datasets", name, MANIFEST_FILE)


def dataset_exists(settings: Settings, name: str) -> bool:
    """Whether dataset `name` is finished (its manifest is in the store)."""
    files = files_for(settings)
    if not files.remote:
        return dataset_manifest(settings, name) is not None
    return is_valid_name(name) and files.exists(manifest_key(name))


def dataset_manifest(settings: Settings, name: str) -> Path | None:
    """The manifest file of dataset `name`, or None when it has none *inside* the data root.

    A dataset folder (or manifest) that is a symlink resolving outside the data root counts
    as absent: nothing outside the data root is read, or trained on. With an object store
    the manifest is an object (see `dataset_exists`): this is then its path in the data
    root, which this host need not hold.
    """
    if not is_valid_name(name):
        return None
    if files_for(settings).remote:
        return layout.manifest_path(settings, name) if dataset_exists(settings, name) else None
    path = layout.manifest_path(settings, name)
    inside = is_within(settings.resolved_data_root, path) and is_within(
        layout.datasets_root(settings), path
    )
    return path if inside and path.is_file() else None


def read_manifest(settings: Settings, name: str) -> Manifest:
    """The manifest of dataset `name`.

    Raises:
        DatasetNotFound: It has none inside the data root.
        OSError, ValueError: The file cannot be read, or is not a manifest.
    """
    files = files_for(settings)
    if files.remote and is_valid_name(name):
        try:
            return Manifest.from_json(files.get_bytes(manifest_key(name)))
        except ObjectNotFound:
            raise DatasetNotFound(f"no dataset named {name[:80]!r}") from None
    path = dataset_manifest(settings, name)
    if path is None:
        raise DatasetNotFound(f"no dataset named {name[:80]!r}")
    return Manifest.from_json(path.read_bytes())


def read_dataset(settings: Settings, name: str) -> Dataset:
    manifest = read_manifest(settings, name)
    return Dataset(
        name=manifest.name,
        source=manifest.source,
        compression=manifest.compression,
        seed=manifest.seed,
        created_at=manifest.created_at,
        classes=manifest.classes,
        splits=manifest.splits,
        count=manifest.count,
        bytes=manifest.bytes,
        skipped=manifest.skipped_total,
    )


def all_datasets(settings: Settings) -> DatasetList:
    """Every readable dataset; a folder that is not one (a bad name, a symlink out of the
    data root, a broken manifest) is left out, so it cannot break the listing."""
    datasets = []
    for name in _dataset_names(settings):
        try:
            datasets.append(read_dataset(settings, name))
        except DatasetNotFound:
            continue
        except (OSError, ValueError) as exc:  # ValueError: bad JSON, or not a manifest
            log.warning("dataset %r left out of the listing: %s", name, exc)
    return DatasetList(datasets=datasets)


def _dataset_names(settings: Settings) -> list[str]:
    files = files_for(settings)
    if files.remote:  # the keys datasets/<name>/manifest.json
        parts = (key.split("/") for key in files.list("datasets"))
        return sorted({p[1] for p in parts if len(p) == 3 and p[2] == MANIFEST_FILE})
    root = layout.datasets_root(settings)
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


PREVIEW_COUNT = 16


def dataset_preview_png(settings: Settings, name: str) -> bytes:
    """A grid of preprocessed training images of dataset `name`, labelled.

    With an object store the first train shards that hold enough images are read through
    this host's cache (each checked against the bytes the manifest recorded:
    `TruncatedObject` for one that is not whole), from a scratch folder that holds the
    manifest and links to the cached shards.
    """
    manifest = read_manifest(settings, name)  # DatasetNotFound before loading TensorFlow
    from worker.preview import render_preview

    files = files_for(settings)
    if not files.remote:
        return render_preview(layout.dataset_dir(settings, name), PREVIEW_COUNT)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="preview-")))
        _link_preview_shards(files, stack, manifest, folder / name)
        return render_preview(folder / name, PREVIEW_COUNT)


def _link_preview_shards(files: Files, stack: ExitStack, manifest: Manifest, to: Path) -> None:
    """A dataset folder at `to` of the first train shards (pinned in the cache while the
    block lasts) holding at least `PREVIEW_COUNT` images, and a manifest naming them."""
    to.mkdir()
    train = manifest.splits["train"]
    shards, records = [], 0
    for shard in train.shards:
        if records >= PREVIEW_COUNT:
            break
        key = join_key("datasets", manifest.name, shard.file)
        cached = stack.enter_context(files.cache.pinned(key, size=shard.bytes))
        (to / shard.file).symlink_to(cached)
        shards.append(shard)
        records += shard.records
    splits = {**manifest.splits, "train": train.model_copy(update={"shards": shards})}
    (to / MANIFEST_FILE).write_text(manifest.model_copy(update={"splits": splits}).to_json())


def delete_dataset(settings: Settings, store: JobStore, name: str) -> None:
    """Delete dataset `name`: the manifest first, so that a deletion cut short leaves no
    folder that looks like a finished dataset, then its shards (the whole folder).

    Raises:
        DatasetNotFound: It has no manifest inside the data root.
        DatasetInUse: A queued or running job uses it (a shard job writing it, a train
            or evaluation job reading it).
    """
    if not dataset_exists(settings, name):
        raise DatasetNotFound(f"no dataset named {name[:80]!r}")
    users = [
        job.id
        for state in (JobState.QUEUED, JobState.RUNNING)
        for job in store.list_jobs(state=state.value)
        if job.params.get("dataset") == name
    ]
    if users:
        raise DatasetInUse(f"dataset {name!r} is used by {', '.join(users)}; wait or cancel them")
    files = files_for(settings)
    if files.remote:
        files.delete(manifest_key(name))
        files.delete(join_key("datasets", name))
        return
    layout.manifest_path(settings, name).unlink(missing_ok=True)
    shutil.rmtree(layout.dataset_dir(settings, name), ignore_errors=True)
