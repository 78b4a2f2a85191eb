"""The train pipeline as a function of the epoch: ``Datasets.train_epochs``.

``Dataset.range(first, last).flat_map(one_epoch)``: one epoch's file order, shuffle and
flips are functions of ``(seed, epoch)`` alone, so the graph is the same size for 1 or
10,000 epochs, and epoch ``e`` is the same whichever epoch a run started at (exact
resume). File order and flips come from stateless ops (``tf.random.experimental``); the
records are shuffled by ``Dataset.shuffle`` (``shuffle_buffer`` elements: serialized
records when streaming, decoded images when cached) with the epoch's seed as a tensor and
the graph-level seed pinned, so the process's global seed (``tf.random.set_seed``) plays
no part. ``one_epoch`` is traced once: building ``train_epochs(first, last)`` is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from model.preprocessing import augment, preprocess
from worker.shard_reader import AUTOTUNE, HoldOut, decode_batches, records

EPOCH_SALT = 0x7E0C
_FILES, _FLIPS = 0, 2  # what each sub-seed of an epoch's key draws
SHUFFLE_SEED_STEP = 1_000_003  # the shuffle seed of an epoch: seed * step + epoch + 1


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
        # Dataset.shuffle seeds from (graph seed, op seed): pin the graph seed of this trace
        # so that the op seed, from (seed, epoch), alone decides the order.
        tf.compat.v1.get_default_graph().seed = EPOCH_SALT
        key = fold(tf.constant([options.seed, EPOCH_SALT], tf.int64), epoch)
        shuffle_seed = tf.constant(options.seed, tf.int64) * SHUFFLE_SEED_STEP + epoch + 1
        if cached is not None:
            batches = shuffled(cached, window, shuffle_seed).batch(options.batch_size)
        else:
            order = tf.random.experimental.stateless_shuffle(paths, seed=fold(key, _FILES))
            stream = records(order, compression, deterministic=options.deterministic)
            stream = shuffled(stream, window, shuffle_seed)
            batches = decode_batches(stream, holdout, options.batch_size, parallel)
        if not options.augment_train:
            return batches.map(lambda images, labels: (only_preprocess(images), labels), **parallel)
        flips = fold(key, _FLIPS)
        return batches.enumerate().map(
            lambda step, batch: (transform(batch[0], fold(flips, step)), batch[1]), **parallel
        )

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
