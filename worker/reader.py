"""The tf.data input pipelines that training reads a sharded dataset through.

``make_datasets`` builds the one train pipeline (``Datasets.train_epochs``) and the
validation pipeline. Work is done a batch at a time wherever possible, since a dataset
element costs more than decoding a 64x64 JPEG:

    shard files (shuffled, train) -> parallel interleave of TFRecord readers
    -> [shuffle serialized records (train, streaming)] -> batch -> parse + hold-out mask
    -> decode each image to uint8 64x64x3 (``core.tf_decode.decode_image``)
    -> [unbatch -> cache -> shuffle (train) -> batch]   (cached splits only)
    -> prefetch: batches of (uint8 images, int32 labels)

Choices:

* The host only decodes, shuffles and batches; it ships uint8 pixels, a quarter of the
  bytes of float32. Flips, crops, rescaling and standardization are layers of the network
  (``model.augment``, ``model.preprocessing``) and run on the device. Decoding happens
  here, not at write time: shards stay as small as the source JPEGs, and the work runs in
  parallel with training.
* Epochs: ``train_epochs(first, last)`` is ``Dataset.range(first, last).flat_map(epoch)``,
  where an epoch's file order and shuffle are functions of ``(seed, epoch)``: the graph is
  the same size for 1 or 10,000 epochs, and a run resumed at epoch ``e`` sees exactly the
  batches an uninterrupted run would have seen (the network's flips follow from its saved
  random state, see ``model.augment``).
* Train batches are all full (``drop_remainder``): an epoch is
  ``steps_per_epoch = floor(train_count / batch_size)`` steps, the write-up's, and a
  different last batch shape never makes the train step compile a second time. The up to
  ``batch_size - 1`` images left out differ from epoch to epoch (the shuffle differs). A
  split smaller than one batch is refused (``ValueError``).
* Shuffling: ``Dataset.shuffle`` through a ``shuffle_buffer``-element buffer, seeded by
  ``(seed, epoch)`` alone (``worker.train_epochs``); a streaming train split shuffles
  serialized records (a few KB each) before decoding, so the buffer is cheap; a cached one
  shuffles its decoded images. Shard order is shuffled every epoch too, and shards were
  shuffled when written.
* Cache rule: decoded uint8 images of a split are cached in memory (after the first epoch
  nothing is read or decoded again) only when ``count * 64 * 64 * 3 <= cache_bytes`` (the
  train split first, the val split from what is left); otherwise the split streams from the
  shards every epoch, so memory stays flat however large the dataset.
* Hold-out rule: a dataset without a val split (a class-per-folder source) keeps as
  validation every train record whose ``filename`` hashes (``tf.strings.to_hash_bucket_fast``,
  ``HOLDOUT_BUCKETS`` buckets) below ``val_fraction * HOLDOUT_BUCKETS``. The hash is of the
  image's path in the source, so the same images are held out on every run and machine,
  whatever the shard count or seed, and train and validation never share an image.
* The validation pipeline is finite: one iteration is one pass over every image (its last
  batch may be smaller).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike, fspath

import tensorflow as tf

from core.manifest import ClassEntry, Manifest, load_manifest
from model.config import IMAGE_SIZE
from worker.shard_reader import (
    AUTOTUNE,
    HOLDOUT_BUCKETS,
    HoldOut,
    count_held_out,
    decode_batches,
    decoded,
    holdout_threshold,
    is_held_out,
    parse,
    records,
)
from worker.sharding.records import tf_compression
from worker.train_epochs import PipelineOptions, train_epochs

DEFAULT_SHUFFLE_BUFFER = 5000  # the write-up's FLAGS.shuffle
DECODED_IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * 3


@dataclass
class Datasets:
    """What training needs to know about its input.

    ``train_epochs`` and ``val`` yield ``(images uint8 [B, 64, 64, 3], labels int32 [B])``.
    A train epoch is ``steps_per_epoch`` full batches; ``val`` is one pass over every
    validation image (its last batch may be smaller).
    """

    val: tf.data.Dataset
    classes: list[ClassEntry]
    train_count: int
    val_count: int
    steps_per_epoch: int
    val_steps: int
    train_cached: bool
    val_cached: bool
    val_from_holdout: bool
    epochs_pipeline: Callable[[int, int], tf.data.Dataset]

    def train_epochs(self, first: int, last: int) -> tf.data.Dataset:
        """Epochs ``first`` .. ``last - 1`` of training, back to back.

        Epoch ``e`` is shuffled from ``(seed, e)`` alone, never from how many
        epochs ran before in this process: a run resumed at epoch ``e`` sees exactly the
        batches an uninterrupted run would have seen (with ``deterministic``). A cached
        split is decoded once and shared by every epoch.
        """
        return self.epochs_pipeline(first, last)


def make_datasets(
    dataset_dir: str | PathLike[str],
    batch_size: int,
    *,
    cache_bytes: int,
    seed: int = 0,
    val_fraction: float = 0.1,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    deterministic: bool = False,
) -> Datasets:
    """Build the train and validation pipelines of a sharded dataset.

    Args:
        dataset_dir: The dataset's folder (holding ``manifest.json``).
        batch_size: Images per batch.
        cache_bytes: Memory allowed for caching decoded images (``Settings.reader_cache_bytes``).
        seed: Seeds file order and shuffling.
        val_fraction: Share of train records held out when the dataset has no val split.
        shuffle_buffer: Size of the train shuffle buffer, in images.
        deterministic: Keep the element order reproducible (slower parallel stages).

    Raises:
        DatasetNotFoundError: No finished dataset at ``dataset_dir``.
        ValueError: Bad ``batch_size`` or ``val_fraction``, an empty split, or fewer
            training images than ``batch_size`` (not one full batch).
    """
    _check_args(batch_size, val_fraction, shuffle_buffer)
    folder = fspath(dataset_dir).rstrip("/")
    manifest = load_manifest(folder)
    compression = tf_compression(manifest.compression)
    train_files = shard_paths(folder, manifest, "train")
    val_split = manifest.split("val")
    holdout = val_split is None or val_split.count == 0
    threshold = holdout_threshold(val_fraction)
    if holdout:
        val_files = train_files
        val_count = count_held_out(train_files, compression, threshold)
        train_count = manifest.splits["train"].count - val_count
    else:
        assert val_split is not None
        val_files = shard_paths(folder, manifest, "val")
        val_count = val_split.count
        train_count = manifest.splits["train"].count
    if train_count == 0:
        raise ValueError(f"dataset {manifest.name} has no training images left")
    if train_count < batch_size:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {train_count} training images of "
            f"dataset {manifest.name}: an epoch would not have one full batch. "
            f"Use a batch_size of at most {train_count}"
        )
    train_cached = train_count * DECODED_IMAGE_BYTES <= cache_bytes
    val_budget = cache_bytes - (train_count * DECODED_IMAGE_BYTES if train_cached else 0)
    val_cached = val_count * DECODED_IMAGE_BYTES <= val_budget
    options = PipelineOptions(
        batch_size=batch_size,
        seed=seed,
        deterministic=deterministic,
        shuffle_buffer=min(shuffle_buffer, train_count),
    )
    train_holdout = HoldOut(threshold, validation=False) if holdout else None
    val_holdout = HoldOut(threshold, validation=True) if holdout else None
    return Datasets(
        epochs_pipeline=train_epochs(
            train_files, compression, train_holdout, train_cached, options
        ),
        val=_val_pipeline(val_files, compression, val_holdout, val_cached, options),
        classes=list(manifest.classes),
        train_count=train_count,
        val_count=val_count,
        steps_per_epoch=train_count // batch_size,
        val_steps=math.ceil(val_count / batch_size),
        train_cached=train_cached,
        val_cached=val_cached,
        val_from_holdout=holdout,
    )


def _check_args(batch_size: int, val_fraction: float, shuffle_buffer: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1). Received: val_fraction={val_fraction}")
    if shuffle_buffer < 1:
        raise ValueError(
            f"shuffle_buffer must be positive. Received: shuffle_buffer={shuffle_buffer}"
        )


def shard_paths(folder: str, manifest: Manifest, split: str) -> list[str]:
    return [f"{folder}/{shard.file}" for shard in manifest.splits[split].shards]


def _val_pipeline(
    files: Sequence[str],
    compression: str,
    holdout: HoldOut | None,
    cache: bool,
    options: PipelineOptions,
) -> tf.data.Dataset:
    """Batches of uint8 validation images, one pass over all of them per iteration."""
    stream = records(files, compression, deterministic=options.deterministic)
    dataset = decode_batches(stream, holdout, options.batch_size, options.parallel)
    if cache:
        dataset = dataset.unbatch().cache().batch(options.batch_size)
    tf_options = tf.data.Options()
    tf_options.deterministic = options.deterministic
    # Keras drops the validation iterator after every pass; with autotuning on, its
    # destruction waits on tf.data's autotune thread, which stalled validation for 1 to
    # 30 s per epoch here (seen with gdb). Without it each pass took at most 0.3 s.
    tf_options.autotune.enabled = False
    return dataset.prefetch(AUTOTUNE).with_options(tf_options)


__all__ = [
    "HOLDOUT_BUCKETS",
    "Datasets",
    "count_held_out",
    "decoded",
    "holdout_threshold",
    "is_held_out",
    "make_datasets",
    "parse",
    "records",
    "shard_paths",
]
