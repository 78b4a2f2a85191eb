"""The manifest of a sharded dataset: the one typed record of what a shard job produced.

A dataset exists exactly when its ``manifest.json`` does; it is written last, atomically,
and read only through ``Manifest`` (never by string keys). No TensorFlow here: the API
reads manifests too.
"""

from __future__ import annotations

import builtins
import os
import uuid
from os import PathLike
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_FILE = "manifest.json"
TEMP_MARK = ".tmp-"


class DatasetNotFoundError(LookupError):
    """No manifest at the dataset folder: no finished dataset there."""


class ClassEntry(BaseModel):
    """One class, the same shape in sources, manifests, ``/datasets`` and ``/models``."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, description="position in the model's output")
    wnid: str = Field(description="class id (a WordNet id in Tiny ImageNet, else the folder)")
    label: str = Field(description="human-readable name")


class SkippedFile(BaseModel):
    """A source file that could not be stored, with the reason."""

    file: str
    reason: str


class ShardInfo(BaseModel):
    """One written shard file of a split."""

    file: str = Field(description="file name inside the dataset folder")
    records: int = Field(ge=0)
    bytes: int = Field(ge=0)


class SplitInfo(BaseModel):
    """One split (``train`` or ``val``) of a dataset."""

    count: int = Field(ge=0)
    per_class: dict[str, int] = Field(description="images per wnid")
    shards: list[ShardInfo]
    bytes: int = Field(ge=0)
    skipped: list[SkippedFile] = []


class Manifest(BaseModel):
    """``<dataset>/manifest.json``."""

    name: str
    source: str
    layout: str
    seed: int
    num_shards: int
    compression: str
    created_at: str
    image_size: int
    classes: list[ClassEntry]
    splits: dict[str, SplitInfo]
    count: int
    bytes: int
    skipped_total: int

    def split(self, name: str) -> SplitInfo | None:
        """The split called ``name``, or None when the dataset has none."""
        return self.splits.get(name)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str | builtins.bytes) -> Manifest:
        return cls.model_validate_json(text)


def manifest_file(dataset_dir: str | PathLike[str]) -> Path:
    return Path(dataset_dir) / MANIFEST_FILE


def dataset_finished(dataset_dir: str | PathLike[str]) -> bool:
    """Whether a finished dataset (one with a manifest) is at ``dataset_dir``."""
    return manifest_file(dataset_dir).is_file()


def load_manifest(dataset_dir: str | PathLike[str]) -> Manifest:
    """The manifest of the finished dataset at ``dataset_dir``.

    Raises:
        DatasetNotFoundError: No finished dataset there.
        ValueError: The manifest is damaged (not JSON, or not a manifest).
    """
    path = manifest_file(dataset_dir)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"dataset {Path(dataset_dir).name} not found") from None
    return Manifest.from_json(text)


def list_manifests(datasets_root: str | PathLike[str]) -> list[Manifest]:
    """The manifests of every finished dataset directly under ``datasets_root``, by name.

    A folder whose manifest is being replaced right now, or is damaged, is left out.
    """
    root = Path(datasets_root)
    if not root.is_dir():
        return []
    manifests = []
    for folder in sorted(root.iterdir()):
        try:
            manifests.append(load_manifest(folder))
        except (OSError, ValueError, DatasetNotFoundError):
            continue
    return manifests


def write_manifest(dataset_dir: str | PathLike[str], manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically: the dataset exists from this moment on."""
    write_text_atomic(manifest_file(dataset_dir), manifest.to_json())


def write_text_atomic(path: str | PathLike[str], text: str) -> None:
    """Write a file so that readers see the old content or the whole new one, nothing else."""
    path = Path(path)
    temp = path.with_name(f"{path.name}{TEMP_MARK}{uuid.uuid4().hex}")
    try:
        temp.write_text(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
