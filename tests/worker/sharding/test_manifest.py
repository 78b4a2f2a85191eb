"""Finalizing: the manifest counts exactly, lists skipped files, and is written last."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.manifest import ClassEntry, dataset_finished, list_manifests, load_manifest
from tests.worker.sharding.conftest import CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS
from tools.datasets import fake_wnid
from worker.sharding import IncompleteDatasetError, finalize, plan, shard_dataset, write_shard
from worker.sources import SourceError


def test_manifest_counts_every_class_and_split_exactly(tiny, reference: Path) -> None:
    manifest = load_manifest(reference)
    assert (manifest.name, manifest.source) == ("reference", "tiny")
    assert (manifest.seed, manifest.compression, manifest.image_size) == (7, "GZIP", 64)
    assert [c.wnid for c in manifest.classes] == [fake_wnid(i) for i in range(CLASSES)]
    assert manifest.classes[2] == ClassEntry(index=2, wnid=fake_wnid(2), label="digit two")
    train, val = manifest.splits["train"], manifest.splits["val"]
    expected = {fake_wnid(i): TRAIN_PER_CLASS for i in range(CLASSES)}
    expected[fake_wnid(0)] += len(tiny[1].converted)  # CMYK and grayscale are kept
    assert train.per_class == expected
    assert train.count == sum(expected.values())
    assert val.per_class == {fake_wnid(i): VAL_PER_CLASS for i in range(CLASSES)}
    assert val.count == CLASSES * VAL_PER_CLASS
    assert len(train.shards) == 3 and len(val.shards) == 1  # val: ceil(50 * 3 / 202)
    for split in (train, val):
        assert sum(s.records for s in split.shards) == split.count
        assert split.bytes == sum(s.bytes for s in split.shards)
        for shard in split.shards:
            assert (reference / shard.file).stat().st_size == shard.bytes
    assert sorted(os.listdir(reference)) == sorted(
        ["manifest.json"] + [s.file for s in train.shards + val.shards]
    )  # no staging folder and no temporary files left


def test_bad_files_are_skipped_with_reasons(tiny, reference: Path) -> None:
    manifest = load_manifest(reference)
    skipped = {Path(e.file).name: e.reason for e in manifest.splits["train"].skipped}
    assert set(skipped) == set(tiny[1].skipped)
    assert skipped["bad_empty.JPEG"] == "empty file"
    assert skipped["bad_text.JPEG"].startswith("not an image")
    assert "truncated" in skipped["bad_truncated.JPEG"].lower()
    assert manifest.skipped_total == 3
    assert manifest.splits["val"].skipped == []


def test_manifest_is_written_last(tiny, tmp_path: Path) -> None:
    dataset = tmp_path / "late"
    the_plan = plan(tiny[0], dataset, num_shards=3, seed=7)
    written = [write_shard(the_plan, split, index) for split, index in the_plan.all_shards()[:-1]]
    with pytest.raises(IncompleteDatasetError, match="val-00000-of-00001"):
        finalize(the_plan, written)
    assert not dataset_finished(dataset)
    assert list_manifests(tmp_path) == []
    write_shard(the_plan, "val", 0)
    manifest = finalize(the_plan)  # the earlier shards come from their sidecars
    assert manifest.splits["val"].count == CLASSES * VAL_PER_CLASS
    assert not (dataset / ".staging").exists()
    assert [m.name for m in list_manifests(tmp_path)] == ["late"]
    # A second finalizer (the last shards of a job race) gets the same manifest back.
    assert finalize(the_plan) == manifest


def test_a_source_without_readable_images_fails(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "a" / "x.jpg").write_bytes(b"")
    (source / "a" / "y.png").write_bytes(b"nope")
    with pytest.raises(SourceError, match="no readable training images"):
        shard_dataset(source, tmp_path / "ds")
    assert not dataset_finished(tmp_path / "ds")
    with pytest.raises(SourceError, match="not found"):
        shard_dataset(tmp_path / "missing", tmp_path / "ds2")
