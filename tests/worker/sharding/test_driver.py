"""shard_dataset: the shard job's steps in one process, on every source layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.worker.sharding.conftest import assert_same_as_reference, pillow_rgb, read_records
from tools.datasets import make_class_folders, zip_dir
from worker.sharding import DatasetExistsError, shard_dataset


def test_zip_with_top_folder_gives_the_same_dataset(tiny, reference, tmp_path) -> None:
    archive = zip_dir(tiny[0], tmp_path / "tiny-imagenet-200.zip", top_folder="tiny-imagenet-200")
    dataset = tmp_path / "zipped" / "reference"
    progress: list[tuple[int, int]] = []
    shard_dataset(
        archive,
        dataset,
        num_shards=3,
        seed=7,
        source_label="tiny",
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert_same_as_reference(dataset, reference)
    assert progress[-1][0] == progress[-1][1]  # counted over all shards, to the end
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_class_folders_without_compression(tmp_path: Path) -> None:
    source = make_class_folders(tmp_path / "src", classes=("b", "a"), per_class=6)
    dataset = tmp_path / "folders"
    manifest = shard_dataset(source, dataset, num_shards=2, compression="NONE")
    assert [c.wnid for c in manifest.classes] == ["a", "b"]
    assert list(manifest.splits) == ["train"]
    assert manifest.splits["train"].per_class == {"a": 6, "b": 6}
    records = [r for shard in read_records(dataset, "train") for r in shard]
    formats = Counter(
        Path(r["filename"].decode()).suffix + ":" + r["format"].decode() for r in records
    )
    # One RGB PNG and one grayscale JPEG per class are stored as PNG.
    assert formats == {".jpg:jpeg": 2 * 5 - 2, ".png:png": 2, ".jpg:png": 2}
    for record in records:
        decoded = tf.io.decode_image(record["image"], channels=0).numpy()
        assert decoded.shape == (64, 64, 3)
        if record["format"] == b"png":
            source_bytes = (source / record["filename"].decode()).read_bytes()
            np.testing.assert_array_equal(decoded, pillow_rgb(source_bytes))


def test_a_finished_dataset_is_refused(tiny, reference: Path) -> None:
    with pytest.raises(DatasetExistsError):
        shard_dataset(tiny[0], reference, num_shards=3, seed=7, source_label="tiny")
