"""The tf.data input pipelines that training reads a sharded dataset through.

One function, ``make_datasets``, builds both the train and the validation pipeline. Work
is done a batch at a time wherever possible, since a dataset element costs more than
decoding a 64x64 JPEG:

    shard files (shuffled, train) -> parallel interleave of TFRecord readers
    -> [shuffle serialized records (train, streaming)] -> batch -> parse + hold-out mask
    -> decode each image to uint8 64x64x3 (``model.preprocessing.decode_image``)
    -> [unbatch -> cache -> shuffle (train) -> batch]   (cached splits only)
    -> augment (train) + preprocess, fused by XLA -> prefetch

Choices:

* Decoding and preprocessing happen here, not at write time: shards stay as small as the
  source JPEGs, and the work runs in parallel with training. Augmentation and
  preprocessing run on whole batches in one XLA-compiled function (about 3x faster on a
  CPU than the same TensorFlow ops one by one).
* Shuffling: a streaming train split shuffles serialized records (a few KB each) before
  decoding, so the buffer is cheap; a cached one shuffles its decoded images. Shard order is
  shuffled too, and shards were shuffled when written.
* Cache rule: decoded uint8 images of a split are cached in memory (after the first epoch
  nothing is read or decoded again) only when ``count * 64 * 64 * 3 <= cache_bytes`` (the
  train split first, the val split from what is left); otherwise the split streams from the
  shards every epoch, so memory stays flat however large the dataset.
* Hold-out rule: a dataset without a val split (a class-per-folder source) keeps as
  validation every train record whose ``filename`` hashes (``tf.strings.to_hash_bucket_fast``,
  ``HOLDOUT_BUCKETS`` buckets) below ``val_fraction * HOLDOUT_BUCKETS``. The hash is of the
  image's path in the source, so the same images are held out on every run and machine,
  whatever the shard count or seed, and train and validation never share an image.
* Each pipeline is finite: one iteration is one epoch, so Keras ``fit`` needs no
  ``steps_per_epoch`` (it is given anyway). The train pipeline reshuffles and draws fresh
  flips on every iteration, reproducibly from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike, fspath
from typing import Any

import tensorflow as tf

from model.config import IMAGE_SIZE
from model.preprocessing import augment, decode_image, preprocess
from worker.sharding import load_manifest, tf_compression

AUTOTUNE = tf.data.AUTOTUNE
HOLDOUT_BUCKETS = 1000
DEFAULT_SHUFFLE_BUFFER = 5000  # the write-up's FLAGS.shuffle
MAX_CYCLE_LENGTH = 16
DECODED_IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * 3

_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "filename": tf.io.FixedLenFeature([], tf.string),
}


@dataclass
class Datasets:
    """What training needs to know about its input.

    ``train`` and ``val`` yield ``(images float32 [B, 64, 64, 3], labels int32 [B])``; each
    iteration is one pass over the split (the last batch may be smaller).
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    classes: list[dict[str, Any]]
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

        Epoch ``e`` is shuffled and flipped from ``(seed, e)`` alone, never from how many
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
    augment_train: bool = True,
    jit_compile: bool = True,
) -> Datasets:
    """Build the train and validation pipelines of a sharded dataset.

    Args:
        dataset_dir: The dataset's folder (holding ``manifest.json``).
        batch_size: Images per batch.
        cache_bytes: Memory allowed for caching decoded images (``Settings.reader_cache_bytes``).
        seed: Seeds file order, shuffling and flips.
        val_fraction: Share of train records held out when the dataset has no val split.
        shuffle_buffer: Size of the train shuffle buffer, in images.
        deterministic: Keep the element order reproducible (slower parallel stages).
        augment_train: Apply random flips to train batches.
        jit_compile: Fuse augmentation and preprocessing with XLA; False runs the plain ops
            (identical results up to float rounding, except which images get flipped).

    Raises:
        DatasetNotFoundError: No finished dataset at ``dataset_dir``.
        ValueError: Bad ``batch_size`` or ``val_fraction``, or an empty split.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1). Received: val_fraction={val_fraction}")
    if shuffle_buffer < 1:
        raise ValueError(
            f"shuffle_buffer must be positive. Received: shuffle_buffer={shuffle_buffer}"
        )
    folder = fspath(dataset_dir).rstrip("/")
    manifest = load_manifest(folder)
    compression = tf_compression(manifest["compression"])
    train_files = shard_paths(folder, manifest, "train")
    val_split = manifest["splits"].get("val")
    holdout = val_split is None or val_split["count"] == 0
    threshold = holdout_threshold(val_fraction)
    if holdout:
        val_files = train_files
        val_count = count_held_out(train_files, compression, threshold)
        train_count = manifest["splits"]["train"]["count"] - val_count
    else:
        val_files = shard_paths(folder, manifest, "val")
        val_count = val_split["count"]
        train_count = manifest["splits"]["train"]["count"]
    if train_count == 0:
        raise ValueError(f"dataset {manifest['name']} has no training images left")
    train_cached = train_count * DECODED_IMAGE_BYTES <= cache_bytes
    val_budget = cache_bytes - (train_count * DECODED_IMAGE_BYTES if train_cached else 0)
    val_cached = val_count * DECODED_IMAGE_BYTES <= val_budget

    train = _split_pipeline(
        train_files,
        compression,
        holdout=HoldOut(threshold, validation=False) if holdout else None,
        cache=train_cached,
        training=True,
        batch_size=batch_size,
        seed=seed,
        shuffle_buffer=min(shuffle_buffer, train_count),
        deterministic=deterministic,
        augment_train=augment_train,
        jit_compile=jit_compile,
    )
    val = _split_pipeline(
        val_files,
        compression,
        holdout=HoldOut(threshold, validation=True) if holdout else None,
        cache=val_cached,
        training=False,
        batch_size=batch_size,
        seed=seed,
        deterministic=deterministic,
        jit_compile=jit_compile,
    )
    epochs_pipeline = _train_epochs(
        train_files,
        compression,
        holdout=HoldOut(threshold, validation=False) if holdout else None,
        cache=train_cached,
        batch_size=batch_size,
        seed=seed,
        shuffle_buffer=min(shuffle_buffer, train_count),
        deterministic=deterministic,
        augment_train=augment_train,
        jit_compile=jit_compile,
    )
    return Datasets(
        epochs_pipeline=epochs_pipeline,
        train=train,
        val=val,
        classes=manifest["classes"],
        train_count=train_count,
        val_count=val_count,
        steps_per_epoch=math.ceil(train_count / batch_size),
        val_steps=math.ceil(val_count / batch_size),
        train_cached=train_cached,
        val_cached=val_cached,
        val_from_holdout=holdout,
    )


def shard_paths(folder: str, manifest: dict[str, Any], split: str) -> list[str]:
    return [f"{folder}/{shard['file']}" for shard in manifest["splits"][split]["shards"]]


def holdout_threshold(val_fraction: float) -> int:
    return max(1, round(val_fraction * HOLDOUT_BUCKETS))


def is_held_out(filenames: tf.Tensor, threshold: int) -> tf.Tensor:
    """True for the records kept for validation when a dataset has no val split."""
    return tf.strings.to_hash_bucket_fast(filenames, HOLDOUT_BUCKETS) < threshold


def records(
    files: Sequence[str],
    compression: str,
    *,
    shuffle_files: bool = False,
    seed: int | tf.Tensor = 0,
    deterministic: bool = True,
    reshuffle_each_iteration: bool = True,
) -> tf.data.Dataset:
    """Serialized records of ``files``, read in parallel (interleaved, one at a time each).

    Args:
        compression: A TFRecord ``compression_type`` ("" or "GZIP"), see
            ``worker.sharding.tf_compression``.
    """
    dataset = tf.data.Dataset.from_tensor_slices(list(files))
    if shuffle_files:
        dataset = dataset.shuffle(
            len(files), seed=seed, reshuffle_each_iteration=reshuffle_each_iteration
        )
    return dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
        cycle_length=max(1, min(len(files), MAX_CYCLE_LENGTH)),
        block_length=1,
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """The fields of one record that reading needs: image bytes, label, filename."""
    return tf.io.parse_single_example(serialized, _FEATURES)


def decoded(
    files: Sequence[str], compression: str, *, deterministic: bool = True
) -> tf.data.Dataset:
    """``(uint8 [64, 64, 3] image, int32 label)`` of every record, in file order.

    No hold-out, shuffling or preprocessing: for previews and benchmarks.
    """
    dataset = records(files, compression, deterministic=deterministic).map(
        parse, num_parallel_calls=AUTOTUNE, deterministic=deterministic
    )
    return dataset.map(_decode, num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def count_held_out(files: Sequence[str], compression: str, threshold: int) -> int:
    """How many records of ``files`` the hold-out rule keeps for validation.

    Reads the shards once but decodes nothing: only the filename of each record is parsed.
    """
    filename_only = {"filename": _FEATURES["filename"]}
    dataset = (
        records(files, compression, deterministic=False)
        .batch(1024)
        .map(
            lambda batch: tf.io.parse_example(batch, filename_only)["filename"],
            num_parallel_calls=AUTOTUNE,
        )
        .map(lambda names: tf.reduce_sum(tf.cast(is_held_out(names, threshold), tf.int64)))
    )
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda total, n: total + n))


def _decode(example: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    return decode_image(example["image"]), tf.cast(example["label"], tf.int32)


_IMAGE_SPEC = tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8)


def _parse_batch(serialized: tf.Tensor, holdout: HoldOut | None) -> dict[str, tf.Tensor]:
    """Parse a batch of records at once, dropping those ``holdout`` does not keep."""
    batch = tf.io.parse_example(serialized, _FEATURES)
    if holdout is None:
        return batch
    keep = holdout.keep(batch["filename"])
    return {name: tf.boolean_mask(values, keep) for name, values in batch.items()}


def _decode_batch(batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    # map_fn in one dataset element: far less per-image overhead than one element per image.
    images = tf.map_fn(decode_image, batch["image"], fn_output_signature=_IMAGE_SPEC)
    return images, tf.cast(batch["label"], tf.int32)


def _augment_preprocess(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return preprocess(augment(images, seed=seed))


# XLA fuses the flip, the cast and the standardization into about one pass over the batch:
# about 3x faster on a CPU than the same ops run one by one.
_FUSED = {
    "augment": tf.function(_augment_preprocess, jit_compile=True),
    "preprocess": tf.function(preprocess, jit_compile=True),
}


@dataclass(frozen=True)
class HoldOut:
    """Which records a pipeline keeps under the hold-out rule."""

    threshold: int
    validation: bool  # keep the held-out records (validation) or the others (training)

    def keep(self, filenames: tf.Tensor) -> tf.Tensor:
        held = is_held_out(filenames, self.threshold)
        return held if self.validation else tf.logical_not(held)


def _split_pipeline(
    files: Sequence[str],
    compression: str,
    *,
    holdout: HoldOut | None,
    cache: bool,
    training: bool,
    batch_size: int,
    seed: int,
    deterministic: bool,
    shuffle_buffer: int = 1,
    augment_train: bool = False,
    jit_compile: bool = True,
) -> tf.data.Dataset:
    """Records -> batches of preprocessed images. Work is done a batch at a time (parse,
    hold-out, decode, augment, preprocess): per-image dataset elements cost more than a
    64x64 decode. Streaming shuffles the small serialized records; a cached split shuffles
    its decoded images."""
    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": deterministic}
    dataset = records(
        files, compression, shuffle_files=training, seed=seed, deterministic=deterministic
    )
    if training and not cache:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda b: _parse_batch(b, holdout), **parallel)
    if holdout is not None and not cache:
        dataset = dataset.rebatch(batch_size)  # the hold-out left batches short
    dataset = dataset.map(_decode_batch, **parallel)
    if cache:
        dataset = dataset.unbatch().cache()
        if training:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size)
    transform = _FUSED["augment"] if jit_compile else _augment_preprocess
    only_preprocess = _FUSED["preprocess"] if jit_compile else preprocess
    if training and augment_train:
        # One stateless seed per batch, drawn afresh each epoch yet reproducible from `seed`.
        flip_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        salt = tf.constant(seed, tf.int64)
        dataset = tf.data.Dataset.zip(dataset, flip_seeds).map(
            lambda batch, draw: (transform(batch[0], tf.stack([draw, salt])), batch[1]),
            **parallel,
        )
    else:
        dataset = dataset.map(lambda images, labels: (only_preprocess(images), labels), **parallel)
    options = tf.data.Options()
    options.deterministic = deterministic
    if not training:
        # Keras drops the validation iterator after every pass; with autotuning on, its
        # destruction waits on tf.data's autotune thread, which stalled validation for 1 to
        # 30 s per epoch here (seen with gdb). Without it each pass took at most 0.3 s.
        options.autotune.enabled = False
    return dataset.prefetch(AUTOTUNE).with_options(options)


EPOCH_SEED_STRIDE = 1_000_003


def _train_epochs(
    files: Sequence[str],
    compression: str,
    *,
    holdout: HoldOut | None,
    cache: bool,
    batch_size: int,
    seed: int,
    deterministic: bool,
    shuffle_buffer: int,
    augment_train: bool,
    jit_compile: bool,
) -> Callable[[int, int], tf.data.Dataset]:
    """The train pipeline as a function of the epoch: see ``Datasets.train_epochs``."""
    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": deterministic}
    transform = _FUSED["augment"] if jit_compile else _augment_preprocess
    only_preprocess = _FUSED["preprocess"] if jit_compile else preprocess

    def decode(serialized: tf.data.Dataset) -> tf.data.Dataset:
        dataset = serialized.batch(batch_size).map(lambda b: _parse_batch(b, holdout), **parallel)
        if holdout is not None:
            dataset = dataset.rebatch(batch_size)  # the hold-out left batches short
        return dataset.map(_decode_batch, **parallel)

    cached = None
    if cache:
        cached = decode(records(files, compression, deterministic=deterministic))
        cached = cached.unbatch().cache()

    def one_epoch(epoch: int) -> tf.data.Dataset:
        # A Python int: tf.data's seed handling cannot take a tensor once a global seed is set.
        epoch_seed = seed * EPOCH_SEED_STRIDE + epoch
        if cached is not None:
            batches = cached.shuffle(
                max(shuffle_buffer, 1), seed=epoch_seed, reshuffle_each_iteration=False
            ).batch(batch_size)
        else:
            serialized = records(
                files,
                compression,
                shuffle_files=True,
                seed=epoch_seed,
                deterministic=deterministic,
                reshuffle_each_iteration=False,
            ).shuffle(max(shuffle_buffer, 1), seed=epoch_seed, reshuffle_each_iteration=False)
            batches = decode(serialized)
        if not augment_train:
            return batches.map(lambda images, labels: (only_preprocess(images), labels), **parallel)
        flip_seeds = tf.data.Dataset.random(seed=epoch_seed)
        return tf.data.Dataset.zip(batches, flip_seeds).map(
            lambda batch, draw: (
                transform(batch[0], tf.stack([draw, tf.constant(epoch_seed, tf.int64)])),
                batch[1],
            ),
            **parallel,
        )

    options = tf.data.Options()
    options.deterministic = deterministic

    def epochs(first: int, last: int) -> tf.data.Dataset:
        dataset = one_epoch(first)
        for epoch in range(first + 1, last):
            dataset = dataset.concatenate(one_epoch(epoch))
        return dataset.prefetch(AUTOTUNE).with_options(options)

    return epochs
