"""Planning a shard job: which source image goes into which shard, decided once.

``plan`` scans the source and deals its images into shards in a seeded random order, and
stores the plan in ``<dataset>/.staging/plan.json``. Planning again with the same arguments
returns the stored plan, so a redelivered job writes the same shards.

Shard assignment: in each split, every class's images are shuffled (numpy
``Generator(seed)``) and dealt round-robin over the shards, so each shard holds every class
(when the class has at least one image per shard) and shard sizes differ by at most one;
each shard's records are then in random order. The train split gets ``num_shards`` shards
(fewer when it has fewer images); the val split gets shards of about the train shards'
size: ``ceil(n_val * train_shards / n_train)``, between 1 and ``num_shards``.
"""

from __future__ import annotations

import hashlib
import math
from os import PathLike, fspath
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ValidationError

from core.manifest import ClassEntry, dataset_finished
from worker.sharding.records import check_compression
from worker.sharding.staging import plan_path, sidecar_path, write_text_atomic
from worker.sources import SourceError, scan_source

PLAN_VERSION = 2
MAX_SHARDS = 10_000

ShardKey = tuple[str, int]  # (split, index): one shard of a dataset


class DatasetExistsError(ValueError):
    """A finished dataset (one with a manifest) is already at the target folder."""


class PlanNotFoundError(LookupError):
    """No sharding plan at the dataset folder (never planned, or finalized since)."""


class Plan(BaseModel):
    """Which source image goes into which shard. Stored as JSON, so a task can reload it.

    ``shards[split][i]`` lists the records of shard ``i`` as ``(key, label_index)`` pairs,
    ``key`` being where the image is read in the source (see ``worker.sources.Item``).
    """

    name: str
    dataset_dir: str
    source: str
    source_path: str
    layout: str
    root: str
    num_shards: int
    compression: str
    seed: int
    classes: list[ClassEntry]
    shards: dict[str, list[list[tuple[str, int]]]]
    version: int = PLAN_VERSION
    plan_id: str = ""

    def all_shards(self) -> list[ShardKey]:
        """Every shard to write, in a fixed order; each is one task of a shard job."""
        return [(split, i) for split, shards in self.shards.items() for i in range(len(shards))]

    def shard_number(self, split: str, index: int) -> int:
        """The position of a shard in ``all_shards`` (how the job store counts shards)."""
        return self.all_shards().index((split, index))

    def shard_file(self, split: str, index: int) -> str:
        return shard_file_name(split, index, len(self.shards[split]))

    def records(self, split: str, index: int) -> list[tuple[str, int]]:
        return self.shards[split][index]

    def filename(self, key: str) -> str:
        """The path of a source key relative to the layout's root."""
        return key[len(self.root) + 1 :] if self.root else key

    @property
    def total_images(self) -> int:
        return sum(len(records) for shards in self.shards.values() for records in shards)

    def request(self) -> tuple[str, str, int, str, int]:
        """What identifies a plan request: planning again with these reuses the plan."""
        return (self.source, self.source_path, self.num_shards, self.compression, self.seed)


def shard_file_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def plan(
    source_path: str | PathLike[str],
    dataset_dir: str | PathLike[str],
    *,
    num_shards: int = 10,
    compression: str = "GZIP",
    seed: int = 0,
    source_label: str | None = None,
) -> Plan:
    """Scan the source and decide every shard's content; store the plan in staging.

    Args:
        source_path: The source folder or zip (already checked to be inside the data root).
        dataset_dir: The dataset's folder (created); its base name is the dataset's name.
        num_shards: Shards of the train split.
        compression: "GZIP" or "NONE".
        seed: Seeds the shuffle: the same seed gives the same shards.
        source_label: How the manifest names the source (the client's relative path);
            defaults to the source's base name.

    Returns:
        The plan; the stored one when a plan with the same arguments exists.

    Raises:
        ValueError: Bad ``num_shards`` or ``compression``.
        DatasetExistsError: The dataset is already finished.
        SourceError: The source is missing, unusable or holds no images.
    """
    check_args(num_shards, compression)
    folder = fspath(dataset_dir).rstrip("/")
    resolved = str(Path(source_path).resolve())
    label = source_label if source_label is not None else Path(resolved).name
    if dataset_finished(folder):
        raise DatasetExistsError(f"dataset {Path(folder).name} already exists")
    stored = _stored_plan(folder)
    if stored is not None and stored.request() == (label, resolved, num_shards, compression, seed):
        return stored
    if stored is not None:
        _discard_shards(stored)  # a different request: nothing of the old one may be reused
    new = _make_plan(resolved, folder, num_shards, compression, seed, label)
    plan_path(folder).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan_path(folder), new.model_dump_json())
    return new


def load_plan(dataset_dir: str | PathLike[str]) -> Plan:
    """The stored plan of a dataset being sharded (for shard tasks).

    Raises:
        PlanNotFoundError: No readable plan there.
    """
    stored = _stored_plan(fspath(dataset_dir).rstrip("/"))
    if stored is None:
        raise PlanNotFoundError(f"no sharding plan at {dataset_dir}")
    return stored


def check_args(num_shards: int, compression: str) -> None:
    if not isinstance(num_shards, int) or not 1 <= num_shards <= MAX_SHARDS:
        raise ValueError(f"num_shards must be 1..{MAX_SHARDS}. Received: num_shards={num_shards}")
    check_compression(compression)


def _make_plan(
    source_path: str, dataset_dir: str, num_shards: int, compression: str, seed: int, label: str
) -> Plan:
    with scan_source(Path(source_path)) as source:
        splits = {split: items for split, items in source.splits.items() if items}
        n_train = len(splits.get("train", []))
        if n_train == 0:
            raise SourceError(f"source {label} has no training images")
        train_shards = min(num_shards, n_train)
        shards: dict[str, list[list[tuple[str, int]]]] = {}
        for number, (split, items) in enumerate(splits.items()):
            if split == "train":
                count = train_shards
            else:
                count = math.ceil(len(items) * train_shards / n_train)
                count = max(1, min(count, num_shards, len(items)))
            rng = np.random.default_rng([seed, number])
            labels = np.array([item.label_index for item in items], dtype=np.int64)
            shards[split] = [
                [(items[i].key, int(labels[i])) for i in members]
                for members in deal(labels, count, rng)
            ]
        new = Plan(
            name=Path(dataset_dir).name,
            dataset_dir=dataset_dir,
            source=label,
            source_path=source_path,
            layout=source.layout,
            root=source.root,
            num_shards=num_shards,
            compression=compression,
            seed=seed,
            classes=source.classes,
            shards=shards,
        )
    new.plan_id = hashlib.sha256(new.model_dump_json().encode()).hexdigest()[:16]
    return new


def deal(labels: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Split item indices into ``count`` shards: stratified by label, random order.

    Items are ranked by a random permutation, grouped by label (in rank order within a
    label), and dealt round-robin, so every shard gets ``floor`` or ``ceil`` of
    ``n_label / count`` of every label. Each shard lists its items in rank order.
    """
    rank = np.empty(len(labels), dtype=np.int64)
    rank[rng.permutation(len(labels))] = np.arange(len(labels))
    by_label = np.lexsort((rank, labels))
    shard_of = np.empty(len(labels), dtype=np.int64)
    shard_of[by_label] = np.arange(len(labels)) % count
    shards = []
    for index in range(count):
        members = np.flatnonzero(shard_of == index)
        shards.append(members[np.argsort(rank[members], kind="stable")])
    return shards


def _stored_plan(dataset_dir: str) -> Plan | None:
    try:
        stored = Plan.model_validate_json(plan_path(dataset_dir).read_bytes())
    except FileNotFoundError:
        return None
    except ValidationError:
        return None  # unreadable or from another version: plan afresh
    return stored if stored.version == PLAN_VERSION else None


def _discard_shards(old: Plan) -> None:
    for split, index in old.all_shards():
        name = old.shard_file(split, index)
        (Path(old.dataset_dir) / name).unlink(missing_ok=True)
        sidecar_path(old.dataset_dir, name).unlink(missing_ok=True)
