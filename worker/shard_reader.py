"""Reading shard files: serialized records, parsed and decoded a batch at a time.

The building blocks of ``worker.reader``'s pipelines (and of the dataset preview): the
record stream of a list of shard files, the hold-out rule, and decoding batches to uint8
pixels with ``core.tf_decode.decode_image`` (the decoder ``/predict`` uses too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from core.tf_decode import decode_image
from model.config import IMAGE_SIZE
from worker.sharding.records import parse_record, parse_records

AUTOTUNE = tf.data.AUTOTUNE
HOLDOUT_BUCKETS = 1000
MAX_CYCLE_LENGTH = 16
READ_FIELDS = ("image", "label", "filename")  # what reading needs of a record

_IMAGE_SPEC = tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8)


def holdout_threshold(val_fraction: float) -> int:
    return max(1, round(val_fraction * HOLDOUT_BUCKETS))


def is_held_out(filenames: tf.Tensor, threshold: int) -> tf.Tensor:
    """True for the records kept for validation when a dataset has no val split."""
    return tf.strings.to_hash_bucket_fast(filenames, HOLDOUT_BUCKETS) < threshold


@dataclass(frozen=True)
class HoldOut:
    """Which records a pipeline keeps under the hold-out rule."""

    threshold: int
    validation: bool  # keep the held-out records (validation) or the others (training)

    def keep(self, filenames: tf.Tensor) -> tf.Tensor:
        held = is_held_out(filenames, self.threshold)
        return held if self.validation else tf.logical_not(held)


def records(
    files: Sequence[str] | tf.Tensor, compression: str, *, deterministic: bool = True
) -> tf.data.Dataset:
    """Serialized records of ``files`` in that order, read in parallel (interleaved).

    Args:
        compression: A TFRecord ``compression_type`` ("" or "GZIP"), see
            ``worker.sharding.records.tf_compression``.
    """
    paths = files if isinstance(files, tf.Tensor) else tf.constant(list(files), tf.string)
    count = int(paths.shape[0])
    return tf.data.Dataset.from_tensor_slices(paths).interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
        cycle_length=max(1, min(count, MAX_CYCLE_LENGTH)),
        block_length=1,
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """The fields of one record that reading needs: image bytes, label, filename."""
    return parse_record(serialized, READ_FIELDS)


def decoded(
    files: Sequence[str], compression: str, *, deterministic: bool = True
) -> tf.data.Dataset:
    """``(uint8 [64, 64, 3] image, int32 label)`` of every record, in file order.

    No hold-out, shuffling or preprocessing: for previews and benchmarks.
    """
    dataset = records(files, compression, deterministic=deterministic).map(
        parse, num_parallel_calls=AUTOTUNE, deterministic=deterministic
    )
    return dataset.map(
        lambda r: (decode_image(r["image"]), tf.cast(r["label"], tf.int32)),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )


def count_held_out(files: Sequence[str], compression: str, threshold: int) -> int:
    """How many records of ``files`` the hold-out rule keeps for validation.

    Reads the shards once but decodes nothing: only the filename of each record is parsed.
    """
    dataset = (
        records(files, compression, deterministic=False)
        .batch(1024)
        .map(
            lambda batch: parse_records(batch, ["filename"])["filename"],
            num_parallel_calls=AUTOTUNE,
        )
        .map(lambda names: tf.reduce_sum(tf.cast(is_held_out(names, threshold), tf.int64)))
    )
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda total, n: total + n))


def decode_batches(
    serialized: tf.data.Dataset,
    holdout: HoldOut | None,
    batch_size: int,
    parallel: dict[str, Any],
    *,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Serialized records -> batches of ``(uint8 images, int32 labels)``, hold-out applied.

    With ``drop_remainder`` every batch is full: the last, short one of the pass is dropped
    (after the hold-out, so it drops fewer than ``batch_size`` of the kept records).
    """

    def parse_batch(batch: tf.Tensor) -> dict[str, tf.Tensor]:
        fields = parse_records(batch, READ_FIELDS)
        if holdout is None:
            return fields
        keep = holdout.keep(fields["filename"])
        return {name: tf.boolean_mask(values, keep) for name, values in fields.items()}

    def decode_batch(fields: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        # map_fn in one dataset element: far less per-image overhead than one per image.
        images = tf.map_fn(decode_image, fields["image"], fn_output_signature=_IMAGE_SPEC)
        return images, tf.cast(fields["label"], tf.int32)

    first_drop = drop_remainder and holdout is None
    dataset = serialized.batch(batch_size, drop_remainder=first_drop).map(parse_batch, **parallel)
    if holdout is not None:
        # The hold-out left batches short.
        dataset = dataset.rebatch(batch_size, drop_remainder=drop_remainder)
    return dataset.map(decode_batch, **parallel)
