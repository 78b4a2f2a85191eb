"""A small Tiny ImageNet source with bad files, sharded once: what every test compares to."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core.manifest import load_manifest
from tools.datasets import BadFiles, add_bad_files, fake_wnid, make_digits_tiny_imagenet
from worker.sharding import shard_dataset, tf_compression
from worker.sharding.records import parse_record

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 10, 20, 5


@pytest.fixture(scope="package")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BadFiles]:
    """Tiny ImageNet layout with five bad or odd files in class 0's train folder."""
    root = make_digits_tiny_imagenet(
        tmp_path_factory.mktemp("src") / "tiny",
        classes=CLASSES,
        train_per_class=TRAIN_PER_CLASS,
        val_per_class=VAL_PER_CLASS,
    )
    bad = add_bad_files(root / "train" / fake_wnid(0) / "images")
    return root, bad


@pytest.fixture(scope="package")
def reference(tiny: tuple[Path, BadFiles], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny source sharded in one uninterrupted go: what every restart must reproduce."""
    dataset = tmp_path_factory.mktemp("datasets") / "reference"
    shard_dataset(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
    return dataset


def read_records(dataset: Path, split: str) -> list[list[dict[str, Any]]]:
    """Every record of every shard of ``split``, every field parsed, shard by shard."""
    manifest = load_manifest(dataset)
    compression = tf_compression(manifest.compression)
    shards = []
    for shard in manifest.splits[split].shards:
        records = tf.data.TFRecordDataset(str(dataset / shard.file), compression)
        shards.append([{k: v.numpy() for k, v in parse_record(r).items()} for r in records])
    return shards


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def assert_same_as_reference(dataset: Path, reference: Path) -> None:
    manifest, expected = load_manifest(dataset), load_manifest(reference)
    assert manifest.classes == expected.classes
    assert manifest.splits == expected.splits
    assert manifest.skipped_total == expected.skipped_total
    for split in ("train", "val"):
        assert read_records(dataset, split) == read_records(reference, split)
