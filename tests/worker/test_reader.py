"""The training input pipelines, and the dataset preview that shares their reading code."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core.manifest import DatasetNotFoundError
from core.tf_decode import decode_image
from tools.datasets import make_class_folders, make_digits_tiny_imagenet
from worker.preview import render_preview
from worker.reader import HOLDOUT_BUCKETS, Datasets, make_datasets
from worker.sharding import shard_dataset

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 10, 20, 5
BIG = 1 << 30


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    return {
        "tiny": make_digits_tiny_imagenet(
            root / "tiny", CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, seed=3
        ),
        "folders": make_class_folders(root / "folders", ("w", "x", "y", "z"), per_class=25),
    }


@pytest.fixture(scope="module")
def tiny(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = tmp_path_factory.mktemp("datasets") / "tiny"
    shard_dataset(sources["tiny"], dataset, num_shards=3, seed=1)
    return dataset


@pytest.fixture(scope="module")
def folders(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = tmp_path_factory.mktemp("datasets") / "folders"
    shard_dataset(sources["folders"], dataset, num_shards=2, compression="NONE", seed=1)
    return dataset


def collect(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """All images and labels of one pass, and the batch sizes."""
    images, labels, sizes = [], [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
        sizes.append(int(x.shape[0]))
    return np.concatenate(images), np.concatenate(labels), sizes


def matching(a: np.ndarray, b: np.ndarray, tolerance: float = 1e-4) -> np.ndarray:
    """For each image of ``a``, the index of the equal image of ``b`` (-1 if none)."""
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    found = np.full(len(a), -1)
    for i, image in enumerate(flat_a):
        distances = np.abs(flat_b - image).max(axis=1)
        best = int(distances.argmin())
        if distances[best] <= tolerance:
            found[i] = best
    return found


def assert_same_images(a: np.ndarray, b: np.ndarray) -> None:
    found = matching(a, b)
    assert len(a) == len(b) and (found >= 0).all()
    assert len(set(found.tolist())) == len(a)  # one to one


def test_batches_are_uint8_with_every_label_and_full_train_batches(tiny: Path) -> None:
    data = make_datasets(tiny, 32, cache_bytes=BIG, seed=1)
    assert isinstance(data, Datasets)
    assert [c.label for c in data.classes][:2] == ["digit zero", "digit one"]
    assert (data.train_count, data.val_count) == (
        CLASSES * TRAIN_PER_CLASS,
        CLASSES * VAL_PER_CLASS,
    )
    # Train: the write-up's floor, every batch full; validation: every image.
    assert (data.steps_per_epoch, data.val_steps) == (200 // 32, math.ceil(50 / 32))
    assert data.train_cached and data.val_cached and not data.val_from_holdout
    train = data.train_epochs(0, 1)
    assert train.element_spec[0].shape.as_list() == [32, 64, 64, 3]
    assert data.val.element_spec[0].shape.as_list() == [None, 64, 64, 3]
    for dataset, count, steps in ((train, 6 * 32, data.steps_per_epoch), (data.val, 50, 2)):
        assert dataset.element_spec[0].dtype == tf.uint8
        assert dataset.element_spec[1].dtype == tf.int32
        images, labels, sizes = collect(dataset)
        assert len(sizes) == steps and sum(sizes) == count and max(sizes) == 32
        assert set(labels.tolist()) == set(range(CLASSES))
        # Raw pixels, not standardized: the network preprocesses them.
        assert images.dtype == np.uint8 and images.max() > 200


def test_val_images_are_the_decoded_source_images(tiny: Path, sources) -> None:
    images, labels, _ = collect(make_datasets(tiny, 16, cache_bytes=BIG).val)
    root = sources["tiny"]
    annotations = [line.split("\t") for line in (root / "val" / "val_annotations.txt").open()]
    paths = [root / "val" / "images" / name for name, *_ in annotations]
    expected_labels = [int(wnid[1:], 16) for _, wnid, *_ in annotations]  # see fake_wnid
    expected = np.stack([decode_image(p.read_bytes()).numpy() for p in paths])
    found = matching(expected.astype(np.float32), images.astype(np.float32), tolerance=0)
    assert (found >= 0).all() and len(set(found.tolist())) == len(paths)
    assert labels[found].tolist() == expected_labels


def test_cache_on_and_off_give_the_same_images(tiny: Path) -> None:
    # 40 divides the 200 train images: no batch dropped, so both passes hold every image.
    cached = make_datasets(tiny, 40, cache_bytes=BIG)
    streamed = make_datasets(tiny, 40, cache_bytes=0)
    assert cached.train_cached and not streamed.train_cached and not streamed.val_cached
    # Exactly the train split fits: cached; the val split has no budget left.
    exact = make_datasets(tiny, 64, cache_bytes=200 * 64 * 64 * 3)
    assert exact.train_cached and not exact.val_cached
    for a, b in (
        (cached.train_epochs(0, 1), streamed.train_epochs(0, 1)),
        (cached.val, streamed.val),
    ):
        a_images, a_labels, _ = collect(a)
        b_images, b_labels, _ = collect(b)
        assert_same_images(a_images, b_images)
        assert sorted(a_labels.tolist()) == sorted(b_labels.tolist())
    # A cached train pipeline reshuffles every epoch, from the cache.
    first, second = collect(cached.train_epochs(0, 1)), collect(cached.train_epochs(1, 2))
    assert_same_images(first[0], second[0])
    assert first[1].tolist() != second[1].tolist()


def test_deterministic_pipelines_repeat_exactly(tiny: Path) -> None:
    runs = []
    for _ in range(2):
        data = make_datasets(tiny, 50, cache_bytes=0, seed=5, deterministic=True)
        runs.append([collect(data.train_epochs(e, e + 1)) for e in range(2)])  # two epochs
    (a1, a2), (b1, b2) = runs
    for a, b in ((a1, b1), (a2, b2)):
        np.testing.assert_array_equal(a[0], b[0])  # flips included
        np.testing.assert_array_equal(a[1], b[1])
    assert a1[1].tolist() != a2[1].tolist()  # each epoch in a new order


def held_out_names(source: Path, fraction: float) -> set[str]:
    names = sorted(p.relative_to(source).as_posix() for p in source.glob("*/*_*.*"))
    buckets = tf.strings.to_hash_bucket_fast(names, HOLDOUT_BUCKETS).numpy()
    return {n for n, b in zip(names, buckets, strict=True) if b < fraction * HOLDOUT_BUCKETS}


def test_holdout_is_deterministic_and_disjoint_from_train(folders: Path, sources) -> None:
    total = 4 * 25
    first = make_datasets(folders, 16, cache_bytes=BIG, val_fraction=0.3)
    assert first.val_from_holdout
    assert first.val_count == len(held_out_names(sources["folders"], 0.3))
    assert 10 < first.val_count < 50 and first.train_count == total - first.val_count
    train_images, train_labels, _ = collect(first.train_epochs(0, 1))
    val_images, val_labels, _ = collect(first.val)
    assert first.steps_per_epoch == first.train_count // 16
    assert len(train_images) == 16 * first.steps_per_epoch and len(val_images) == first.val_count
    assert set(train_labels.tolist()) == set(val_labels.tolist()) == {0, 1, 2, 3}
    assert (matching(val_images, train_images) == -1).all()
    again = make_datasets(folders, 16, cache_bytes=0, val_fraction=0.3, seed=9)
    assert (again.train_count, again.val_count) == (first.train_count, first.val_count)
    # Streamed through the hold-out: still only full batches, the floor of them.
    assert collect(again.train_epochs(0, 1))[2] == [16] * first.steps_per_epoch
    assert_same_images(collect(again.val)[0], val_images)


def test_bad_arguments_and_missing_datasets(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        make_datasets(tiny, 0, cache_bytes=0)
    with pytest.raises(ValueError, match="val_fraction"):
        make_datasets(tiny, 8, cache_bytes=0, val_fraction=1.0)
    with pytest.raises(DatasetNotFoundError):
        make_datasets(tmp_path / "nothing", 8, cache_bytes=0)
    # Fewer train images than one batch: no full batch to train on.
    with pytest.raises(ValueError, match="larger than the 200 training images"):
        make_datasets(tiny, 201, cache_bytes=0)


@pytest.mark.parametrize("cache_bytes", [0, BIG])
def test_train_batches_are_full_and_the_rest_dropped(tiny: Path, cache_bytes: int) -> None:
    """200 images at batch 64: 3 full batches (the write-up's floor), 8 images left out;
    no smaller last batch to compile the train step for."""
    data = make_datasets(tiny, 64, cache_bytes=cache_bytes, seed=2, deterministic=True)
    assert data.steps_per_epoch == 3
    epochs = [collect(data.train_epochs(e, e + 1)) for e in range(2)]
    for _images, labels, sizes in epochs:
        assert sizes == [64, 64, 64] and len(labels) == 192
    assert epochs[0][1].tolist() != epochs[1][1].tolist()  # each epoch in a new order


def test_preview_is_a_png_grid(tiny: Path) -> None:
    png = render_preview(tiny, count=6)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.width >= 3 * 64 and image.height >= 2 * 64
    with pytest.raises(ValueError, match="count"):
        render_preview(tiny, count=0)


@pytest.mark.parametrize("cache_bytes", [0, BIG])
def test_each_epoch_depends_on_its_number_only(tiny: Path, cache_bytes: int) -> None:
    """What resuming at epoch e needs: epoch e's batches do not depend on epochs before."""
    data = make_datasets(tiny, 50, cache_bytes=cache_bytes, seed=3, deterministic=True)
    steps = data.steps_per_epoch
    straight = list(data.train_epochs(0, 3).as_numpy_iterator())
    assert len(straight) == 3 * steps
    resumed = list(data.train_epochs(2, 3).as_numpy_iterator())
    for (a_images, a_labels), (b_images, b_labels) in zip(
        straight[2 * steps :], resumed, strict=True
    ):
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)
    first = np.concatenate([labels for _, labels in straight[:steps]])
    second = np.concatenate([labels for _, labels in straight[steps : 2 * steps]])
    assert sorted(first.tolist()) == sorted(second.tolist())  # every image once per epoch
    assert first.tolist() != second.tolist()  # in a new order


@pytest.mark.parametrize("cache_bytes", [0, BIG])
def test_ten_thousand_epochs_build_a_constant_size_graph(tiny: Path, cache_bytes: int) -> None:
    """Epochs are mapped from a range, not chained: the graph does not grow with them."""
    data = make_datasets(tiny, 64, cache_bytes=cache_bytes, seed=3)
    start = time.monotonic()
    many = data.train_epochs(0, 10_000)
    assert time.monotonic() - start < 10
    # The serialized dataset graph: what tf.data builds and optimizes for an iterator.
    one_size = len(data.train_epochs(0, 1)._as_serialized_graph().numpy())
    assert abs(len(many._as_serialized_graph().numpy()) - one_size) < 100
    images, labels = next(iter(many))
    assert images.shape[1:] == (64, 64, 3) and labels.shape[0] == images.shape[0]


@pytest.mark.parametrize("cache_bytes", [0, BIG])
def test_epoch_order_ignores_the_global_seed(tiny: Path, cache_bytes: int) -> None:
    """The shuffle comes from (seed, epoch) alone, whatever ``tf.random.set_seed`` said."""
    orders = []
    for global_seed in (0, 1, None):
        tf.random.set_seed(global_seed)
        data = make_datasets(tiny, 50, cache_bytes=cache_bytes, seed=3, deterministic=True)
        orders.append([collect(data.train_epochs(e, e + 1))[1].tolist() for e in (0, 1)])
    assert orders[0] == orders[1] == orders[2]
    assert orders[0][0] != orders[0][1]
    assert sorted(orders[0][0]) == sorted(orders[0][1])


def test_classes_are_mixed_across_the_epoch(tiny: Path) -> None:
    """Shard order and records are shuffled: no batch is only one or two classes."""
    data = make_datasets(tiny, 20, cache_bytes=0, seed=4, shuffle_buffer=100, deterministic=True)
    _, labels, _ = collect(data.train_epochs(0, 1))
    assert all(len(set(labels[i : i + 20].tolist())) >= 4 for i in range(0, len(labels), 20))
