"""Benchmark of sharding and reading, against the write-up's method, in one run.

    python -m bench.shard_bench --images 10000 [--out bench/out/shard_bench.md]

On N realistic 64x64 JPEG crops of real photos (``tools.datasets.iter_photo_crops``,
written as a class-per-folder source), measures:

a. bytes on disk per image: our shards vs the source JPEGs (target <= 1.15x) and vs the
   write-up's shards of preprocessed float32 tensors (``tf.io.serialize_tensor`` in a
   ``tf.train.Example``, GZIP; target <= 1/6);
b. shard-writing throughput, ours vs the write-up's (target >= 10x);
c. reader throughput: decoded uint8 batches of the pipeline training
   reads (``make_datasets(...).train_epochs(0, 1)``: one epoch, cache off) vs a bare
   decode-only tf.data loop over the same JPEG bytes held in memory (target >= 0.8x);
d. peak RSS of sharding 10,000 vs ``--memory-images`` images, each in a fresh process
   (target ratio <= 1.2), unless ``--no-memory``.

The write-up's method is given its best case: one pass over the images (its code ran the
whole input pipeline once per shard), TensorFlow's C++ JPEG decoder instead of Keras's
PIL-based loader, and the same shard count and compression. The machine may be shared:
each timing is the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.harness import Row, best_of, emit, logger, render_table, verdict
from tools.processes import REPO

if TYPE_CHECKING:
    from core.manifest import Manifest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NUM_SHARDS = 10
BATCH_SIZE = 128
MEMORY_BASE_IMAGES = 10_000


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        return memory_child(Path(args.memory_child[0]), Path(args.memory_child[1]))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="shard_bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rows = run(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    emit(render(rows, args), args.out, append=args.append)
    return 1 if any(row.failed for row in rows) else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.shard_bench", description=__doc__)
    parser.add_argument("--images", type=int, default=10_000, help="images for (a)-(c)")
    parser.add_argument("--out", help="write the markdown table to this file too")
    parser.add_argument("--append", action="store_true", help="append to --out")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--memory-images", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3, help="timings keep the best run")
    parser.add_argument("--workdir", help="where sources and shards go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="proves it runs: 500 images, one repeat, no memory runs (figures are noisy)",
    )
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("SOURCE", "DATASET"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeats, args.memory = 500, 1, False
    return args


def run(args: argparse.Namespace, workdir: Path) -> list[Row]:
    # Imported before any timing: TensorFlow takes seconds to import.
    import worker.reader
    import worker.sharding  # noqa: F401
    from tools.datasets import make_photo_class_folders

    source = workdir / "source"
    log(f"writing {args.images} photo crops to {source}")
    make_photo_class_folders(source, args.images, seed=0)
    files = sorted(source.rglob("*.jpg"))
    source_bytes = sum(path.stat().st_size for path in files)

    ours_dir = workdir / "datasets" / "ours"
    ours_seconds, manifest = best_of(args.repeats, lambda: shard_ours(source, ours_dir))
    seed_dir = workdir / "datasets" / "seed"
    seed_seconds, seed_bytes = best_of(
        args.repeats, lambda: shard_like_the_writeup(files, seed_dir)
    )
    n = len(files)
    ours_per_image = manifest.bytes / n
    rows = [
        Row(
            "(a) bytes/image: ours vs source JPEG",
            f"{ours_per_image:,.0f} B",
            f"{source_bytes / n:,.0f} B",
            ours_per_image / (source_bytes / n),
            "<= 1.15x",
            verdict(ours_per_image <= 1.15 * source_bytes / n),
        ),
        Row(
            "(a) bytes/image: ours vs write-up float32 (GZIP)",
            f"{ours_per_image:,.0f} B",
            f"{seed_bytes / n:,.0f} B",
            ours_per_image / (seed_bytes / n),
            "<= 0.167x (1/6)",
            verdict(ours_per_image * 6 <= seed_bytes / n),
        ),
        Row(
            "(b) shard writing: ours vs write-up",
            f"{n / ours_seconds:,.0f} img/s",
            f"{n / seed_seconds:,.0f} img/s",
            seed_seconds / ours_seconds,
            ">= 10x",
            verdict(seed_seconds / ours_seconds >= 10),
        ),
    ]
    rows.append(reader_row(ours_dir, files, args.repeats))
    if args.memory:
        rows.append(memory_row(workdir, args.memory_images))
    return rows


def shard_ours(source: Path, dataset: Path) -> Manifest:
    from worker.sharding import shard_dataset

    shutil.rmtree(dataset, ignore_errors=True)
    return shard_dataset(source, dataset, num_shards=NUM_SHARDS, compression="GZIP")


def shard_like_the_writeup(files: list[Path], dataset: Path) -> int:
    """The write-up's "Writing .tfrecord files": float32 preprocessed images through
    ``serialize_tensor`` into Examples, GZIP. Returns the bytes written."""
    import tensorflow as tf

    from model.config import IMAGE_SIZE

    shutil.rmtree(dataset, ignore_errors=True)
    dataset.mkdir(parents=True)
    labels = [int(path.parent.name.rsplit("_", 1)[1]) for path in files]

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # ImageDataGenerator(rescale=1/255, samplewise_center, samplewise_std_normalization)
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, (IMAGE_SIZE, IMAGE_SIZE)) / 255.0
        image = image - tf.reduce_mean(image)
        image = image / (tf.math.reduce_std(image) + 1e-6)
        return tf.io.serialize_tensor(image), tf.io.serialize_tensor(tf.cast(label, tf.uint8))

    serialized = (
        tf.data.Dataset.from_tensor_slices(([str(p) for p in files], labels))
        .map(load, num_parallel_calls=8)
        .prefetch(tf.data.AUTOTUNE)
    )
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    paths = [str(dataset / f"tin_{i}.tfrecord") for i in range(NUM_SHARDS)]
    writers = [tf.io.TFRecordWriter(path, options=options) for path in paths]
    for i, (image, label) in enumerate(serialized.as_numpy_iterator()):
        feature = {
            "img": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
            "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[label])),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[i % NUM_SHARDS].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return sum(os.path.getsize(path) for path in paths)


def reader_row(dataset: Path, files: list[Path], repeats: int) -> Row:
    import tensorflow as tf

    from core.tf_decode import decode_image
    from worker.reader import make_datasets

    data = make_datasets(dataset, BATCH_SIZE, cache_bytes=0, seed=0)
    blobs = [path.read_bytes() for path in files]
    bare = (
        tf.data.Dataset.from_tensor_slices(blobs)
        .map(decode_image, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(BATCH_SIZE)
        .prefetch(tf.data.AUTOTUNE)
    )
    # One epoch of the pipeline training consumes (Datasets.train_epochs).
    drain(data.train_epochs(0, 1).take(2))  # traces and compiles outside the timings
    drain(bare.take(2))
    # Alternate the two, so that load from others on the machine hits both alike.
    ours_seconds = bare_seconds = math.inf
    for _ in range(max(1, repeats)):
        ours_seconds = min(ours_seconds, best_of(1, lambda: drain(data.train_epochs(0, 1)))[0])
        bare_seconds = min(bare_seconds, best_of(1, lambda: drain(bare))[0])
    ours_rate, bare_rate = data.train_count / ours_seconds, len(blobs) / bare_seconds
    return Row(
        "(c) reader: one epoch of train_epochs (cache off) vs bare decode",
        f"{ours_rate:,.0f} img/s",
        f"{bare_rate:,.0f} img/s",
        ours_rate / bare_rate,
        ">= 0.8x",
        verdict(ours_rate >= 0.8 * bare_rate),
    )


def drain(dataset: Any) -> int:
    return sum(1 for _ in dataset)


def memory_row(workdir: Path, big: int) -> Row:
    from tools.datasets import make_photo_class_folders

    peaks = {}
    for count in (MEMORY_BASE_IMAGES, big):
        source = workdir / f"memory-source-{count}"
        log(f"writing {count} photo crops for the memory run")
        make_photo_class_folders(source, count, seed=1)
        peaks[count] = measure_peak_rss(source, workdir / "datasets" / f"memory-{count}")
        shutil.rmtree(source, ignore_errors=True)
    ratio = peaks[big] / peaks[MEMORY_BASE_IMAGES]
    return Row(
        f"(d) peak RSS sharding {big:,} vs {MEMORY_BASE_IMAGES:,} images",
        f"{peaks[big] / 2**20:,.1f} MiB",
        f"{peaks[MEMORY_BASE_IMAGES] / 2**20:,.1f} MiB",
        ratio,
        "<= 1.2x",
        verdict(ratio <= 1.2),
    )


def measure_peak_rss(source: Path, dataset: Path) -> int:
    """Peak resident memory, in bytes, of a fresh process that shards ``source``."""
    command = [
        sys.executable,
        "-m",
        "bench.shard_bench",
        "--memory-child",
        str(source),
        str(dataset),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return int(json.loads(done.stdout.strip().splitlines()[-1])["max_rss_bytes"])


def memory_child(source: Path, dataset: Path) -> int:
    shard_ours(source, dataset)
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"max_rss_bytes": peak}))
    return 0


def render(rows: list[Row], args: argparse.Namespace) -> str:
    title = (
        f"shard_bench: {args.images:,} photo crops, {NUM_SHARDS} shards, GZIP, "
        f"batch {BATCH_SIZE}, {os.cpu_count()} CPUs"
    )
    return render_table(title, rows)


log = logger("shard_bench")


if __name__ == "__main__":
    sys.exit(main())
