"""Training speed of the write-up's network on a GPU machine, in one short run.

    python -m bench.gpu_train                 # on the GPU machine, from the repository root
    python -m bench.gpu_train --smoke         # tiny sizes, a few steps: proves it runs (CPU)

The ``seed`` preset (width 64, levels [4, 6, 3, 2], 200 classes) at batch 128 on synthetic
Tiny-ImageNet-sized data, set up as a train job sets up its devices:
``worker.devices.configure_devices(Settings())`` (MirroredStrategy over every GPU, memory
growth, ``mixed_bfloat16`` on Ampere or newer) and the job's compile (SGD with momentum,
sparse cross-entropy on logits, accuracy, ``jit_compile=use_xla(settings)``: XLA on when a
GPU is present).

Input (``--source``):

* ``memory`` (default): random uint8 64x64x3 images held in memory, through the pipeline a
  cached split takes in ``worker.reader``: shuffle decoded images -> batch -> random flips +
  ``preprocess`` fused in one XLA-compiled function (stateless seed per batch) -> prefetch.
* ``sharded``: smooth random JPEGs written as a class-per-folder source, sharded with
  ``worker.sharding.shard_dataset`` and read by the real ``worker.reader.make_datasets``
  (decode, hold-out, cache, flips, preprocess), epochs back to back as the job reads them.
  The warm-up then covers one whole epoch so that the last, smaller batch is compiled too.

Measured: a warm-up of ``--warmup-steps`` steps (tracing, XLA compilation), then training
steps until ``--steps`` or ``--seconds`` runs out (whichever comes first); ms/step is that
wall time over the steps, images/s is batch / step time, and an epoch is
``--epoch-images`` (100,000, Tiny ImageNet's train split) / batch steps, extrapolated.
Validation is not run. The input pipeline alone is timed first, so an input-bound run shows.
Compared with the write-up's run: 924 ms/step, 686 s/epoch. The whole run is kept under
``--deadline`` seconds (default 390) by shrinking the measurement. Destroying a tf.data
iterator can block until tf.data's autotuning thread next wakes up (seen on TensorFlow 2.21:
seconds, once 30 s), so the deadline leaves a minute of room, and the pipeline's own
iterator is kept until the report is out.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WRITEUP_MS_PER_STEP = 924.0
WRITEUP_SECONDS_PER_EPOCH = 686.0
STARTED = time.monotonic()
KEEP: list[Any] = []  # objects whose teardown must wait until the report is printed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny network, data and step counts: a check that it runs",
    )
    parser.add_argument("--preset", default="seed", help="model.config.PRESETS name")
    parser.add_argument("--width", type=int, help="overrides the preset's width")
    parser.add_argument("--levels", type=int, nargs="+", help="overrides the preset's levels")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--source", choices=("memory", "sharded"), default="memory")
    parser.add_argument(
        "--images",
        type=int,
        help="distinct synthetic images (default: 20,000 in memory, 5,000 sharded)",
    )
    parser.add_argument(
        "--epoch-images",
        type=int,
        default=100_000,
        help="images per epoch for the extrapolation (Tiny ImageNet: 100,000)",
    )
    parser.add_argument("--warmup-steps", type=int, default=15)
    parser.add_argument("--steps", type=int, default=1000, help="most steps measured")
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="most seconds of measured training"
    )
    parser.add_argument(
        "--pipeline-seconds",
        type=float,
        default=8.0,
        help="time spent timing the input pipeline alone (0: skip)",
    )
    parser.add_argument(
        "--deadline", type=float, default=390.0, help="seconds the whole run should stay under"
    )
    parser.add_argument("--out", help="write the markdown table to this file too")
    args = parser.parse_args(argv)
    if args.smoke:
        args.width = args.width or 16
        args.levels = args.levels or [1, 1, 1, 1]
        args.batch_size = min(args.batch_size, 16)
        args.images = args.images or (256 if args.source == "memory" else 200)
        args.warmup_steps = min(args.warmup_steps, 2)
        args.steps = min(args.steps, 5)
        args.seconds = min(args.seconds, 30.0)
        args.pipeline_seconds = min(args.pipeline_seconds, 1.0)
    if args.images is None:
        args.images = 20_000 if args.source == "memory" else 5_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Devices first: memory growth must be set before anything touches a GPU.
    import keras
    import tensorflow as tf

    from core.config import Settings
    from model.config import ArchitectureConfig, get_preset
    from model.resnet import build_resnet
    from worker.devices import configure_devices, gpus, use_xla

    settings = Settings()
    strategy = configure_devices(settings)
    xla = use_xla(settings)
    policy = keras.mixed_precision.global_policy().name
    devices = describe_devices(tf, gpus())
    log(
        f"devices: {devices}; policy {policy}; XLA {'on' if xla else 'off'}; "
        f"{strategy.num_replicas_in_sync} replica(s)"
    )

    preset = get_preset(args.preset)
    arch = ArchitectureConfig(
        width=args.width or preset.width, levels=args.levels or list(preset.levels)
    )
    workdir = Path(tempfile.mkdtemp(prefix="gpu_train-"))
    try:
        dataset, steps_per_epoch, input_note = make_input(args, workdir)
        pipeline_rate = time_pipeline(dataset, args.batch_size, args.pipeline_seconds, KEEP)

        with strategy.scope():
            model = build_resnet(args.classes, arch, l2=0.01)
            # As worker.training._compile does for a train job (the API's defaults).
            model.compile(
                optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                jit_compile=xla,
            )
        params = model.count_params()
        warmup_steps = args.warmup_steps
        if steps_per_epoch is not None:  # sharded: compile the epoch's last batch too
            warmup_steps = max(warmup_steps, steps_per_epoch + 2)
        log(
            f"warm-up: {warmup_steps} steps (tracing, compilation), then up to "
            f"{args.steps} steps or {args.seconds:.0f} s measured"
        )
        # One fit call: warm-up and measurement share the iterator, so no iterator start
        # (shuffle buffer fill, a new epoch) falls into the timing.
        timer = StepTimer(max(1, warmup_steps), args.steps, args.seconds, args.deadline)
        start = time.perf_counter()
        model.fit(
            dataset,
            epochs=1,
            steps_per_epoch=warmup_steps + args.steps,
            verbose=0,
            shuffle=False,
            callbacks=[timer.callback()],
        )
        if timer.measured_steps == 0:
            raise SystemExit("no step was measured")
        warmup_seconds = timer.measure_start - start
        seconds = timer.measure_end - timer.measure_start
        steps = timer.measured_steps
        loss = timer.last_loss
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    ms_per_step = 1000.0 * seconds / max(steps, 1)
    rate = args.batch_size * steps / seconds
    epoch_steps = math.ceil(args.epoch_images / args.batch_size)
    epoch_seconds = epoch_steps * ms_per_step / 1000.0
    rows = [
        ("devices", devices),
        ("replicas (MirroredStrategy)", str(strategy.num_replicas_in_sync)),
        ("precision policy", policy),
        ("XLA (jit_compile)", "on" if xla else "off"),
        (
            "network",
            f"width {arch.width}, levels {list(arch.levels)}, {args.classes} classes, "
            f"{params:,} parameters" + (" (smoke sizes)" if args.smoke else ""),
        ),
        ("batch (global)", str(args.batch_size)),
        ("input", input_note),
        ("input pipeline alone", f"{pipeline_rate:,.0f} img/s" if pipeline_rate else "skipped"),
        ("warm-up (tracing + compilation)", f"{warmup_steps} steps in {warmup_seconds:.1f} s"),
        ("measured", f"{steps} steps in {seconds:.1f} s (loss at the end {loss:.3f})"),
        ("ms/step", f"{ms_per_step:,.1f}"),
        ("images/s", f"{rate:,.0f}"),
        (
            f"s/epoch ({args.epoch_images:,} images = {epoch_steps} steps, extrapolated)",
            f"{epoch_seconds:,.1f}",
        ),
        ("write-up", f"{WRITEUP_MS_PER_STEP:.0f} ms/step, {WRITEUP_SECONDS_PER_EPOCH:.0f} s/epoch"),
        ("speed-up vs write-up, per step", f"{WRITEUP_MS_PER_STEP / ms_per_step:,.2f}x"),
        ("speed-up vs write-up, per epoch", f"{WRITEUP_SECONDS_PER_EPOCH / epoch_seconds:,.2f}x"),
    ]
    if pipeline_rate and pipeline_rate < 1.2 * rate:
        rows.append(
            (
                "note",
                "the input pipeline alone is under 1.2x the training rate: "
                "training is probably input-bound",
            )
        )
    if args.smoke:
        rows.append(("note", "smoke mode: sizes are not the benchmark's, figures mean nothing"))
    rows.append(("whole run", f"{time.monotonic() - STARTED:.0f} s"))
    table = render(rows, args)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
    return 0


def describe_devices(tf: Any, physical: list[Any]) -> str:
    if not physical:
        import platform

        return f"CPU only ({os.cpu_count()} cores, {platform.machine()})"
    names = []
    for device in physical:
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        cc = f", compute capability {capability[0]}.{capability[1]}" if capability else ""
        names.append(f"{device.name}: {details.get('device_name', '?')}{cc}")
    return "; ".join(names)


# ---------------------------------------------------------------------------------- input


def make_input(args: argparse.Namespace, workdir: Path) -> tuple[Any, int | None, str]:
    """(an endless dataset of (float32 images, int32 labels) batches, steps per epoch when
    the dataset has epochs that matter, a description)."""
    if args.source == "sharded":
        return sharded_input(args, workdir)
    return (
        memory_input(args),
        None,
        (
            f"{args.images:,} random uint8 images in memory: shuffle -> batch -> flip + "
            "preprocess (one XLA function) -> prefetch, as a cached split in worker.reader"
        ),
    )


def memory_input(args: argparse.Namespace) -> Any:
    import numpy as np
    import tensorflow as tf

    from model.preprocessing import augment, preprocess

    rng = np.random.default_rng(0)
    log(f"making {args.images:,} random images")
    images = rng.integers(0, 256, (args.images, 64, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, args.classes, args.images).astype(np.int32)

    @tf.function(jit_compile=True)
    def transform(batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return preprocess(augment(batch, seed=seed))

    parallel = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": False}
    batches = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(min(args.images, 5000), seed=0, reshuffle_each_iteration=True)
        .repeat()
        .batch(args.batch_size, drop_remainder=True)
    )
    salt = tf.constant(0, tf.int64)
    flips = tf.data.Dataset.random(seed=0)
    return (
        tf.data.Dataset.zip(batches, flips)
        .map(
            lambda batch, draw: (transform(batch[0], tf.stack([draw, salt])), batch[1]), **parallel
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def sharded_input(args: argparse.Namespace, workdir: Path) -> tuple[Any, int, str]:
    import numpy as np
    from PIL import Image

    from core.config import Settings
    from worker.reader import make_datasets
    from worker.sharding import shard_dataset

    source = workdir / "source"
    rng = np.random.default_rng(0)
    log(f"writing {args.images:,} synthetic JPEGs in {args.classes} classes")
    start = time.perf_counter()
    for i in range(args.images):
        # Smooth colour fields plus grain: JPEG sizes and decode costs near a photo's.
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((64, 64), Image.Resampling.BICUBIC)
        grain = rng.integers(-12, 13, (64, 64, 3))
        pixels = np.clip(np.asarray(image, np.int16) + grain, 0, 255).astype(np.uint8)
        folder = source / f"class_{i % args.classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"img_{i:06d}.jpg", quality=90)
    dataset_dir = workdir / "datasets" / "synthetic"
    shard_dataset(source, dataset_dir, num_shards=16, seed=0)
    log(f"source written and sharded in {time.perf_counter() - start:.1f} s")
    settings = Settings()
    data = make_datasets(dataset_dir, args.batch_size, cache_bytes=settings.reader_cache_bytes)
    total_steps = args.warmup_steps + data.steps_per_epoch + 2 + args.steps
    epochs = math.ceil(total_steps / data.steps_per_epoch) + 1
    note = (
        f"{data.train_count:,} synthetic JPEGs ({data.val_count:,} held out), 16 shards, read "
        f"by worker.reader.make_datasets (cache {'on' if data.train_cached else 'off'}), "
        f"{data.steps_per_epoch} steps/epoch, last batch smaller"
    )
    return data.train_epochs(0, epochs), data.steps_per_epoch, note


def time_pipeline(dataset: Any, batch_size: int, seconds: float, keep: list[Any]) -> float | None:
    """Images per second of the input pipeline alone, on a fresh iterator (for a sharded
    input that is its first epoch: reading, decoding and filling the cache)."""
    if seconds <= 0:
        return None
    iterator = iter(dataset)
    next(iterator)  # start-up: threads, the first XLA compilation of the transform
    next(iterator)
    count, start = 0, time.perf_counter()
    for images, _ in iterator:  # a sharded dataset ends: its epochs are finite
        count += int(images.shape[0])
        if time.perf_counter() - start >= seconds:
            break
    rate = count / (time.perf_counter() - start)
    keep.append(iterator)  # destroyed after the report: its teardown may block for seconds
    log(f"input pipeline alone: {rate:,.0f} img/s (batch {batch_size})")
    return rate


# ------------------------------------------------------------------------------- timing


class StepTimer:
    """Lets ``warmup`` steps pass, then times training steps until ``steps`` were done or
    ``budget`` seconds passed, and stops training. The loss is read (which waits for the
    device) at both ends of the timed span, so queued work is not missed."""

    def __init__(self, warmup: int, steps: int, seconds: float, deadline: float) -> None:
        self.warmup = warmup
        self.steps = steps
        self.budget = seconds
        self.deadline = deadline
        self.done = 0
        self.measured_steps = 0
        self.measure_start = 0.0
        self.measure_end = 0.0
        self.last_loss = math.nan

    def callback(self) -> Any:
        import keras

        timer = self

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
                timer.done += 1
                if timer.done < timer.warmup:
                    return
                if timer.done == timer.warmup:
                    timer.last_loss = _wait(logs)
                    # What is left before the deadline, less a margin for the report.
                    left = timer.deadline - (time.monotonic() - STARTED) - 15.0
                    timer.budget = max(5.0, min(timer.budget, left))
                    log(f"warm-up done; measuring for up to {timer.budget:.0f} s")
                    timer.measure_start = time.perf_counter()
                    return
                timer.measured_steps += 1
                now = time.perf_counter()
                if timer.measured_steps >= timer.steps or now - timer.measure_start >= timer.budget:
                    timer.last_loss = _wait(logs)
                    timer.measure_end = time.perf_counter()
                    self.model.stop_training = True

            def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
                if timer.measured_steps and not timer.measure_end:
                    timer.last_loss = _wait(logs)
                    timer.measure_end = time.perf_counter()

        return _Callback()


def _wait(logs: dict[str, Any] | None) -> float:
    """The loss as a float: waits until the device has finished the step."""
    value = (logs or {}).get("loss")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def render(rows: list[tuple[str, str]], args: argparse.Namespace) -> str:
    lines = [
        f"### gpu_train: {'smoke run' if args.smoke else f'{args.preset} preset'}, "
        f"batch {args.batch_size}, {args.source} input",
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[gpu_train {time.monotonic() - STARTED:5.0f}s] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
