"""Planning: seeded, idempotent, stratified, and refusing finished datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.manifest import load_manifest
from tests.worker.sharding.conftest import CLASSES, read_records
from worker.sharding import DatasetExistsError, plan, write_shard
from worker.sharding.planning import deal


def test_plan_is_idempotent_and_seeded(tiny, tmp_path: Path) -> None:
    first = plan(tiny[0], tmp_path / "a", num_shards=3, seed=1, source_label="t")
    again = plan(tiny[0], tmp_path / "a", num_shards=3, seed=1, source_label="t")
    elsewhere = plan(tiny[0], tmp_path / "b", num_shards=3, seed=1, source_label="t")
    other_seed = plan(tiny[0], tmp_path / "c", num_shards=3, seed=2, source_label="t")
    assert again == first
    assert elsewhere.shards == first.shards
    assert other_seed.shards != first.shards
    assert first.all_shards() == [("train", 0), ("train", 1), ("train", 2), ("val", 0)]
    assert first.shard_number("val", 0) == 3
    stored = json.loads((tmp_path / "a" / ".staging" / "plan.json").read_text())
    assert stored["plan_id"] == first.plan_id
    assert sorted(key for shard in first.shards["train"] for key, _ in shard) == sorted(
        str(p.relative_to(tiny[0])) for p in (tiny[0] / "train").glob("*/images/*")
    )


def test_replanning_with_other_arguments_discards_written_shards(tiny, tmp_path: Path) -> None:
    dataset = tmp_path / "d"
    old = plan(tiny[0], dataset, num_shards=2, seed=1)
    write_shard(old, "train", 0)
    new = plan(tiny[0], dataset, num_shards=2, seed=2)
    assert new.plan_id != old.plan_id
    assert not (dataset / new.shard_file("train", 0)).exists()
    assert write_shard(new, "train", 0).plan_id == new.plan_id


def test_every_shard_holds_every_class_in_shuffled_order(reference: Path) -> None:
    for shard in read_records(reference, "train"):
        labels = [int(r["label"]) for r in shard]
        assert set(labels) == set(range(CLASSES))
        assert labels != sorted(labels)
    sizes = [s.records for s in load_manifest(reference).splits["train"].shards]
    assert max(sizes) - min(sizes) <= 1 + 3  # dealt evenly, less the 3 skipped files


def test_deal_is_stratified() -> None:
    labels = np.repeat(np.arange(3), [7, 5, 9])
    shards = deal(labels, 4, np.random.default_rng(0))
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(labels)))
    for label, count in ((0, 7), (1, 5), (2, 9)):
        per_shard = [int((labels[s] == label).sum()) for s in shards]
        assert set(per_shard) <= {count // 4, -(-count // 4)}


def test_finished_datasets_are_not_overwritten(tiny, reference: Path) -> None:
    with pytest.raises(DatasetExistsError, match="reference"):
        plan(tiny[0], reference, num_shards=3, seed=8)


@pytest.mark.parametrize(("num_shards", "compression"), [(0, "GZIP"), (3, "ZLIB")])
def test_bad_arguments(tiny, tmp_path: Path, num_shards: int, compression: str) -> None:
    with pytest.raises(ValueError, match="Received"):
        plan(tiny[0], tmp_path / "d", num_shards=num_shards, compression=compression)
