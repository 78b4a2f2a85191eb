"""The record format of a shard: one ``tf.train.Example`` per image, from one feature spec.

``Record`` is the whole format and ``FEATURES`` its spec, derived from it; ``make_example``
writes exactly those fields and the parse functions read them (all, or the subset a
reader needs), so writer and readers cannot drift apart. The fields:

* ``image``: the encoded image (``core.images.StoredImage.data``);
* ``label``: int64 class index into the manifest's ``classes``;
* ``wnid``: the class id;
* ``filename``: the image's path relative to the source layout's root (a stable identity
  of the image: the hold-out rule hashes it);
* ``format``: ``b"jpeg"`` or ``b"png"``.

Shard files are TFRecord files, compressed as the manifest's ``compression`` says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import tensorflow as tf

COMPRESSIONS = ("GZIP", "NONE")


@dataclass(frozen=True)
class Record:
    """One image of a shard, as written."""

    image: bytes
    label: int
    wnid: str
    filename: str
    format: str


# The feature spec, derived from ``Record``: int fields are int64 lists, the others bytes.
_DTYPES: dict[str, tf.DType] = {
    field.name: tf.int64 if field.type in (int, "int") else tf.string for field in fields(Record)
}
FEATURES: dict[str, tf.io.FixedLenFeature] = {
    name: tf.io.FixedLenFeature([], dtype) for name, dtype in _DTYPES.items()
}


def make_example(record: Record) -> bytes:
    """One serialized ``tf.train.Example`` holding every field of ``FEATURES``."""
    # Filling an empty message is ~3x faster than building it from nested constructors.
    example = tf.train.Example()
    feature = example.features.feature
    for name, dtype in _DTYPES.items():
        value = getattr(record, name)
        if dtype == tf.int64:
            feature[name].int64_list.value.append(value)
        else:
            feature[name].bytes_list.value.append(
                value if isinstance(value, bytes) else value.encode()
            )
    return example.SerializeToString()


def spec(names: Iterable[str] | None = None) -> dict[str, tf.io.FixedLenFeature]:
    """The features called ``names`` (default: all), for parsing only what is needed."""
    return dict(FEATURES) if names is None else {name: FEATURES[name] for name in names}


def parse_record(serialized: tf.Tensor, names: Iterable[str] | None = None) -> dict[str, tf.Tensor]:
    """The fields ``names`` (default: all) of one serialized record."""
    return tf.io.parse_single_example(serialized, spec(names))


def parse_records(
    serialized: tf.Tensor, names: Iterable[str] | None = None
) -> dict[str, tf.Tensor]:
    """The fields ``names`` (default: all) of a batch of serialized records."""
    return tf.io.parse_example(serialized, spec(names))


def check_compression(compression: str) -> None:
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"compression must be one of {COMPRESSIONS}. Received: compression={compression!r}"
        )


def tf_compression(compression: str) -> str:
    """The ``compression_type`` string TFRecord readers and writers take."""
    return "" if compression == "NONE" else compression
