"""The finished datasets under the data root, as clients see them."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pydantic import BaseModel

from core import layout
from core.config import Settings
from core.jobs import JobState, JobStore
from core.manifest import ClassEntry, Manifest, SplitInfo
from core.names import is_valid_name, is_within

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


def dataset_manifest(settings: Settings, name: str) -> Path | None:
    """The manifest file of dataset `name`, or None when it has none *inside* the data root.

    A dataset folder (or manifest) that is a symlink resolving outside the data root counts
    as absent: nothing outside the data root is read, or trained on.
    """
    if not is_valid_name(name):
        return None
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
    root = layout.datasets_root(settings)
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    datasets = []
    for name in names:
        try:
            datasets.append(read_dataset(settings, name))
        except DatasetNotFound:
            continue
        except (OSError, ValueError) as exc:  # ValueError: bad JSON, or not a manifest
            log.warning("dataset %r left out of the listing: %s", name, exc)
    return DatasetList(datasets=datasets)


def dataset_preview_png(settings: Settings, name: str) -> bytes:
    """A grid of preprocessed training images of dataset `name`, labelled."""
    read_manifest(settings, name)  # DatasetNotFound before loading TensorFlow
    from worker.preview import render_preview

    return render_preview(layout.dataset_dir(settings, name))


def delete_dataset(settings: Settings, store: JobStore, name: str) -> None:
    """Delete dataset `name`: the manifest first, so that a deletion cut short leaves no
    folder that looks like a finished dataset, then its shards (the whole folder).

    Raises:
        DatasetNotFound: It has no manifest inside the data root.
        DatasetInUse: A queued or running job uses it (a shard job writing it, a train
            or evaluation job reading it).
    """
    manifest = dataset_manifest(settings, name)
    if manifest is None:
        raise DatasetNotFound(f"no dataset named {name[:80]!r}")
    users = [
        job.id
        for state in (JobState.QUEUED, JobState.RUNNING)
        for job in store.list_jobs(state=state.value)
        if job.params.get("dataset") == name
    ]
    if users:
        raise DatasetInUse(f"dataset {name!r} is used by {', '.join(users)}; wait or cancel them")
    manifest.unlink(missing_ok=True)
    shutil.rmtree(layout.dataset_dir(settings, name), ignore_errors=True)
