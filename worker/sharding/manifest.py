"""Finishing a shard job: the manifest, built from the shards' sidecars, written last.

``finalize`` writes ``manifest.json`` atomically once every shard is written, then removes
the staging folder. A dataset exists iff its manifest does, so a crashed job never leaves
anything that looks complete. Several last shards of a job may race here: every one of
them gets the same manifest back.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from core.manifest import Manifest, SplitInfo, dataset_finished, load_manifest, write_manifest
from model.config import IMAGE_SIZE
from worker.sharding.planning import Plan, ShardKey
from worker.sharding.staging import cleanup_temp, remove_staging
from worker.sharding.writer import WrittenShard, load_written
from worker.sources import SourceError


class IncompleteDatasetError(RuntimeError):
    """``finalize`` was called before every shard was written."""


ShardPresent = Callable[[WrittenShard], bool]


def finalize(
    plan: Plan, written: Sequence[WrittenShard] = (), *, present: ShardPresent | None = None
) -> Manifest:
    """Write ``manifest.json`` (last, atomically) and remove the staging folder.

    Args:
        plan: The dataset's plan.
        written: What ``write_shard`` returned; shards missing here are read from their
            sidecars.
        present: Whether a written shard's file is there whole (default: the file is in
            the dataset folder); a shard job on an object store checks the store instead
            (``worker/shard_store.py``), and may raise for an object of the wrong size.

    Returns:
        The manifest; the one already written when another finalizer got there first.

    Raises:
        IncompleteDatasetError: Some shard has not been written.
        SourceError: Not a single image of the train split was readable.
    """
    if dataset_finished(plan.dataset_dir):
        # plan() refuses finished datasets, so this manifest can only be this plan's.
        return load_manifest(plan.dataset_dir)
    found, missing = _written_shards(plan, written, present or _file_present(plan))
    if missing and dataset_finished(plan.dataset_dir):
        return load_manifest(plan.dataset_dir)  # finalized meanwhile; staging is gone
    if missing:
        raise IncompleteDatasetError(f"shards not written yet: {', '.join(missing)}")
    manifest = build_manifest(plan, [found[key] for key in plan.all_shards()])
    if manifest.splits["train"].count == 0:
        raise SourceError(_nothing_readable(plan, manifest))
    write_manifest(plan.dataset_dir, manifest)
    cleanup_temp(plan.dataset_dir)
    remove_staging(plan.dataset_dir)
    return manifest


def _file_present(plan: Plan) -> ShardPresent:
    return lambda shard: (Path(plan.dataset_dir) / shard.file).exists()


def _written_shards(
    plan: Plan, written: Sequence[WrittenShard], present: ShardPresent
) -> tuple[dict[ShardKey, WrittenShard], list[str]]:
    """The sidecar of every written shard, and the files of the shards not written yet."""
    given = {(w.split, w.index): w for w in written if w.plan_id == plan.plan_id}
    found: dict[ShardKey, WrittenShard] = {}
    missing = []
    for split, index in plan.all_shards():
        shard = given.get((split, index)) or load_written(plan, split, index)
        if shard is None or not present(shard):
            missing.append(plan.shard_file(split, index))
        else:
            found[(split, index)] = shard
    return found, missing


def build_manifest(plan: Plan, written: Sequence[WrittenShard]) -> Manifest:
    splits: dict[str, SplitInfo] = {}
    for split in plan.shards:
        shards = sorted((w for w in written if w.split == split), key=lambda w: w.index)
        per_class: Counter[str] = Counter()
        for shard in shards:
            per_class.update(shard.per_class)
        splits[split] = SplitInfo(
            count=sum(shard.records for shard in shards),
            per_class={c.wnid: per_class.get(c.wnid, 0) for c in plan.classes},
            shards=[shard.info() for shard in shards],
            bytes=sum(shard.bytes for shard in shards),
            skipped=[entry for shard in shards for entry in shard.skipped],
        )
    return Manifest(
        name=plan.name,
        source=plan.source,
        layout=plan.layout,
        seed=plan.seed,
        num_shards=plan.num_shards,
        compression=plan.compression,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        image_size=IMAGE_SIZE,
        classes=plan.classes,
        splits=splits,
        count=sum(s.count for s in splits.values()),
        bytes=sum(s.bytes for s in splits.values()),
        skipped_total=sum(len(s.skipped) for s in splits.values()),
    )


def _nothing_readable(plan: Plan, manifest: Manifest) -> str:
    skipped = [entry for s in manifest.splits.values() for entry in s.skipped]
    examples = "; ".join(f"{e.file}: {e.reason}" for e in skipped[:3])
    return (
        f"source {plan.source} has no readable training images "
        f"({len(skipped)} files skipped, e.g. {examples})"
    )
