"""The record format: what make_example writes is exactly what the spec parses."""

from __future__ import annotations

from dataclasses import fields

import pytest
import tensorflow as tf

from worker.sharding.records import (
    FEATURES,
    Record,
    check_compression,
    make_example,
    parse_record,
    parse_records,
    tf_compression,
)


def test_every_field_written_is_parsed_back() -> None:
    record = Record(b"\xff\xd8 bytes", 7, "n0000007", "train/a/b.JPEG", "jpeg")
    parsed = {k: v.numpy() for k, v in parse_record(make_example(record)).items()}
    assert set(FEATURES) == {field.name for field in fields(Record)}
    assert parsed == {
        "image": b"\xff\xd8 bytes",
        "label": 7,
        "wnid": b"n0000007",
        "filename": b"train/a/b.JPEG",
        "format": b"jpeg",
    }
    example = tf.train.Example.FromString(make_example(record))
    assert set(example.features.feature) == set(FEATURES)  # nothing written outside the spec


def test_a_batch_parses_only_the_fields_asked_for() -> None:
    serialized = [make_example(Record(b"x", i, "w", f"f{i}", "png")) for i in range(3)]
    batch = parse_records(tf.constant(serialized), ["label", "filename"])
    assert set(batch) == {"label", "filename"}
    assert batch["label"].numpy().tolist() == [0, 1, 2]


def test_compressions() -> None:
    assert (tf_compression("GZIP"), tf_compression("NONE")) == ("GZIP", "")
    with pytest.raises(ValueError, match="Received"):
        check_compression("ZLIB")
