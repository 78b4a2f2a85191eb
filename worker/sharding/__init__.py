"""Sharding a source dataset into TFRecord files: plan, write each shard, finalize.

The work is split so that every step can be repeated safely (jobs may be redelivered or
killed at any moment); a shard job (``worker.shard_job``) runs each step as a task and
``shard_dataset`` runs them in a loop in this process:

1. ``plan`` (``planning.py``) deals the source's images into shards and stores the plan.
2. ``write_shard`` (``writer.py``) writes one shard and its sidecar (``WrittenShard``).
3. ``finalize`` (``manifest.py``) writes the manifest (``core.manifest.Manifest``) last.

What a record holds is ``records.py``; which files are images and what is stored of them
is ``core.images``; the staging folder and temporary files are ``staging.py``.

Storage choices:

* RGB JPEGs (nearly every image of Tiny ImageNet) are stored byte for byte: no re-encoding
  loss, shards no larger than the source (gzip even shrinks the repeated JPEG headers), and
  decoding a record gives exactly the source's pixels. The write-up's preprocessed float32
  tensors were ~10x larger even gzipped (``bench/shard_bench.py``), and slower to write;
  preprocessing runs in the reader instead. Shards only ever hold encoded images.
* Every other image is converted to 8-bit RGB and stored as lossless PNG
  (``core.images.to_stored``), so the reader only ever sees 3-channel images.
* Images are never resized here: the reader resizes with ``model.preprocessing``, the same
  code that resizes uploads for prediction. Tiny ImageNet is 64x64 already.
* A file that is empty, truncated, not an image, or over ``core.images.MAX_SOURCE_PIXELS``
  is skipped and listed with the reason, never fatal. Only a source where nothing is
  readable fails the job.

Everything here is on the local file system; a shard job moves the files to and from
the object store, when there is one (``worker/shard_store.py``).
"""

from core.manifest import DatasetNotFoundError
from worker.sharding.driver import shard_dataset
from worker.sharding.manifest import IncompleteDatasetError, build_manifest, finalize
from worker.sharding.planning import (
    DatasetExistsError,
    Plan,
    PlanNotFoundError,
    load_plan,
    plan,
    shard_file_name,
)
from worker.sharding.records import tf_compression
from worker.sharding.staging import cleanup_temp
from worker.sharding.writer import ShardingStopped, WrittenShard, write_shard

__all__ = [
    "DatasetExistsError",
    "DatasetNotFoundError",
    "IncompleteDatasetError",
    "Plan",
    "PlanNotFoundError",
    "ShardingStopped",
    "WrittenShard",
    "build_manifest",
    "cleanup_temp",
    "finalize",
    "load_plan",
    "plan",
    "shard_dataset",
    "shard_file_name",
    "tf_compression",
    "write_shard",
]
