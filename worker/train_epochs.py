"""The train pipeline as a function of the epoch: ``Datasets.train_epochs``.

``Dataset.range(first, last).flat_map(one_epoch)``: one epoch's file order, shuffle and
flips are stateless functions of ``(seed, epoch)`` (``tf.random.experimental`` stateless
ops), so the graph is the same size for 1 or 10,000 epochs, and epoch ``e`` is the same
whichever epoch a run started at (exact resume). Stateless ops also take the epoch as a
tensor whatever the global seed is, which seeded ``Dataset.shuffle`` cannot.

Shuffling is by windows: each run of ``shuffle_buffer`` consecutive elements is permuted
at random (serialized records when streaming, decoded images when cached), which mixes
about as far as a shuffle buffer of that size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from model.preprocessing import augment, preprocess
from worker.shard_reader import AUTOTUNE, HoldOut, decode_batches, records

EPOCH_SALT = 0x7E0C
_FILES, _RECORDS, _FLIPS = 0, 1, 2  # what each sub-seed of an epoch's key draws


@dataclass(frozen=True)
class PipelineOptions:
    """How the pipelines of a dataset are built (see ``worker.reader.make_datasets``)."""

    batch_size: int
    seed: int
    deterministic: bool
    shuffle_buffer: int = 1
    augment_train: bool = True
    jit_compile: bool = True

    @property
    def parallel(self) -> dict[str, Any]:
        return {"num_parallel_calls": AUTOTUNE, "deterministic": self.deterministic}


def _augment_preprocess(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return preprocess(augment(images, seed=seed))


# XLA fuses the flip, the cast and the standardization into about one pass over the batch:
# about 3x faster on a CPU than the same ops run one by one.
_FUSED = {
    "augment": tf.function(_augment_preprocess, jit_compile=True),
    "preprocess": tf.function(preprocess, jit_compile=True),
}


def preprocessor(options: PipelineOptions) -> Callable[[tf.Tensor], tf.Tensor]:
    """``preprocess``, XLA-fused unless ``jit_compile`` is off."""
    return _FUSED["preprocess"] if options.jit_compile else preprocess


def train_epochs(
    files: Sequence[str],
    compression: str,
    holdout: HoldOut | None,
    cache: bool,
    options: PipelineOptions,
) -> Callable[[int, int], tf.data.Dataset]:
    """The train pipeline as a function ``(first, last) -> epochs first .. last - 1``."""
    parallel = options.parallel
    paths = tf.constant(list(files), tf.string)
    window = max(options.shuffle_buffer, 1)
    transform = _FUSED["augment"] if options.jit_compile else _augment_preprocess
    only_preprocess = preprocessor(options)
    cached = None
    if cache:
        stream = records(paths, compression, deterministic=options.deterministic)
        cached = decode_batches(stream, holdout, options.batch_size, parallel).unbatch().cache()

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        key = fold(tf.constant([options.seed, EPOCH_SALT], tf.int64), epoch)
        if cached is not None:
            batches = window_shuffle(cached, window, fold(key, _RECORDS)).batch(options.batch_size)
        else:
            order = tf.random.experimental.stateless_shuffle(paths, seed=fold(key, _FILES))
            stream = records(order, compression, deterministic=options.deterministic)
            stream = window_shuffle(stream, window, fold(key, _RECORDS))
            batches = decode_batches(stream, holdout, options.batch_size, parallel)
        if not options.augment_train:
            return batches.map(lambda images, labels: (only_preprocess(images), labels), **parallel)
        flips = fold(key, _FLIPS)
        return batches.enumerate().map(
            lambda step, batch: (transform(batch[0], fold(flips, step)), batch[1]), **parallel
        )

    tf_options = tf.data.Options()
    tf_options.deterministic = options.deterministic

    def epochs(first: int, last: int) -> tf.data.Dataset:
        dataset = tf.data.Dataset.range(first, last).flat_map(one_epoch)
        return dataset.prefetch(AUTOTUNE).with_options(tf_options)

    return epochs


def fold(key: tf.Tensor, data: int | tf.Tensor) -> tf.Tensor:
    """A new stateless seed from ``key`` and ``data``."""
    return tf.random.experimental.stateless_fold_in(key, tf.cast(data, tf.int64))


def window_shuffle(dataset: tf.data.Dataset, window: int, key: tf.Tensor) -> tf.data.Dataset:
    """Permute each run of ``window`` consecutive elements at random, from ``key`` alone."""

    def permute(number: tf.Tensor, chunk: Any) -> Any:
        size = tf.shape(tf.nest.flatten(chunk)[0])[0]
        order = tf.random.experimental.stateless_shuffle(tf.range(size), seed=fold(key, number))
        return tf.nest.map_structure(lambda values: tf.gather(values, order), chunk)

    return dataset.batch(window).enumerate().map(permute).unbatch()
