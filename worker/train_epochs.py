"""The train pipeline as a function of the epoch: ``Datasets.train_epochs``.

``Dataset.range(first, last).flat_map(one_epoch)``: one epoch's file order and shuffle are
functions of ``(seed, epoch)`` alone, so the graph is the same size for 1 or 10,000
epochs, and epoch ``e`` is the same whichever epoch a run started at (exact resume). File
order comes from a stateless op (``tf.random.experimental``); the records are shuffled by
``Dataset.shuffle`` (``shuffle_buffer`` elements: serialized records when streaming,
decoded images when cached) with the epoch's seed as a tensor and the graph-level seed
pinned, so the process's global seed (``tf.random.set_seed``) plays no part.
``one_epoch`` is traced once: building ``train_epochs(first, last)`` is cheap.

Batches are uint8 pixels and every one is full (``drop_remainder``: an epoch is
``floor(count / batch_size)`` steps, the write-up's, and no smaller last batch makes the
train step compile twice). Flips, crops and standardization happen in the network
(``model.augment``, ``model.preprocessing``), on the device, reproducible from the
checkpoint: the host only decodes, shuffles and batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from worker.shard_reader import AUTOTUNE, HoldOut, decode_batches, records

EPOCH_SALT = 0x7E0C
_FILES = 0  # what the sub-seed of an epoch's key draws
SHUFFLE_SEED_STEP = 1_000_003  # the shuffle seed of an epoch: seed * step + epoch + 1


@dataclass(frozen=True)
class PipelineOptions:
    """How the pipelines of a dataset are built (see ``worker.reader.make_datasets``)."""

    batch_size: int
    seed: int
    deterministic: bool
    shuffle_buffer: int = 1

    @property
    def parallel(self) -> dict[str, Any]:
        return {"num_parallel_calls": AUTOTUNE, "deterministic": self.deterministic}


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
    cached = None
    if cache:
        stream = records(paths, compression, deterministic=options.deterministic)
        cached = decode_batches(stream, holdout, options.batch_size, parallel).unbatch().cache()

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        # Dataset.shuffle seeds from (graph seed, op seed): pin the graph seed of this trace
        # so that the op seed, from (seed, epoch), alone decides the order.
        tf.compat.v1.get_default_graph().seed = EPOCH_SALT
        key = fold(tf.constant([options.seed, EPOCH_SALT], tf.int64), epoch)
        shuffle_seed = tf.constant(options.seed, tf.int64) * SHUFFLE_SEED_STEP + epoch + 1
        if cached is not None:
            shuffled_images = shuffled(cached, window, shuffle_seed)
            return shuffled_images.batch(options.batch_size, drop_remainder=True)
        order = tf.random.experimental.stateless_shuffle(paths, seed=fold(key, _FILES))
        stream = records(order, compression, deterministic=options.deterministic)
        stream = shuffled(stream, window, shuffle_seed)
        return decode_batches(stream, holdout, options.batch_size, parallel, drop_remainder=True)

    # Traced once, here: each epochs(first, last) then only calls it.
    traced = tf.function(one_epoch).get_concrete_function(tf.TensorSpec([], tf.int64))

    tf_options = tf.data.Options()
    tf_options.deterministic = options.deterministic
    # As for validation (worker.reader): without autotuning, dropping an iterator no longer
    # waits on tf.data's autotune thread (up to 1.2 s seen here per fresh epoch pipeline),
    # and AUTOTUNE stages run at one call per core. bench.shard_bench row (c), 2 CPUs: one
    # epoch 0.79x -> 0.82-0.90x of bare decoding; four epochs no slower (1.09-1.33x).
    tf_options.autotune.enabled = False

    def epochs(first: int, last: int) -> tf.data.Dataset:
        dataset = tf.data.Dataset.range(first, last).flat_map(traced)
        return dataset.prefetch(AUTOTUNE).with_options(tf_options)

    return epochs


def fold(key: tf.Tensor, data: int | tf.Tensor) -> tf.Tensor:
    """A new stateless seed from ``key`` and ``data``."""
    return tf.random.experimental.stateless_fold_in(key, tf.cast(data, tf.int64))


def shuffled(dataset: tf.data.Dataset, buffer: int, seed: tf.Tensor) -> tf.data.Dataset:
    """``dataset`` shuffled through a ``buffer``-element buffer, in the order ``seed`` gives.

    Built once per epoch, so the order never changes between iterations.
    """
    return dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
