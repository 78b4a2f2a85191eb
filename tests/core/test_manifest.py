"""Manifests on disk: written atomically, read only through Manifest, listed by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.manifest import (
    ClassEntry,
    DatasetNotFoundError,
    Manifest,
    ShardInfo,
    SkippedFile,
    SplitInfo,
    dataset_finished,
    list_manifests,
    load_manifest,
    write_manifest,
)


def _manifest(name: str) -> Manifest:
    split = SplitInfo(
        count=2,
        per_class={"a": 2},
        shards=[ShardInfo(file="train-00000-of-00001.tfrecord", records=2, bytes=10)],
        bytes=10,
        skipped=[SkippedFile(file="a/x.jpg", reason="empty file")],
    )
    return Manifest(
        name=name,
        source="src",
        layout="class-folders",
        seed=0,
        num_shards=1,
        compression="GZIP",
        created_at="2025-01-01T00:00:00+00:00",
        image_size=64,
        classes=[ClassEntry(index=0, wnid="a", label="a")],
        splits={"train": split},
        count=2,
        bytes=10,
        skipped_total=1,
    )


def test_written_manifests_read_back_equal(tmp_path: Path) -> None:
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
        write_manifest(tmp_path / name, _manifest(name))
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{")
    (tmp_path / "stray.txt").write_text("not a dataset")
    assert load_manifest(tmp_path / "a") == _manifest("a")
    assert load_manifest(tmp_path / "a").split("val") is None
    assert [m.name for m in list_manifests(tmp_path)] == ["a", "b"]
    assert dataset_finished(tmp_path / "a") and not dataset_finished(tmp_path / "unfinished")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["manifest.json"]


def test_missing_datasets(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        load_manifest(tmp_path / "nothing")
    assert list_manifests(tmp_path / "nothing") == []
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError):
        load_manifest(tmp_path / "broken")
