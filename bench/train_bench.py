"""Benchmark of a real train job against a plain ``model.fit`` on in-memory tensors.

    python -m bench.train_bench [--images 3000] [--epochs 3] [--out bench/out/train_bench.md]

On N realistic 64x64 JPEG crops of real photos (``tools.datasets``, a class-per-folder
source sharded with ``worker.sharding.shard_dataset``), the same network (``build_resnet``,
default width 16, levels [2, 2]) at the same batch size is trained twice, each in a fresh
process, one after the other:

a. the job: a ``train`` job in a ``JobStore`` (SQLite under a temporary data root, default
   ``Settings``: progress every 2 s, a checkpoint after every epoch, TensorBoard) run by
   ``worker.runner.run_job(store, settings, job.id, worker.training.train)``. Its speed is
   the train images divided by the per-epoch ``seconds`` of the job's history. Those
   seconds run from ``JobProgress.on_epoch_begin`` to its ``on_epoch_end``: the training
   steps and the validation pass, but not the epoch's checkpoint (written by
   ``EpochCheckpoint.on_epoch_end``, which runs after). A second row times the whole
   cycle, checkpoint included: the interval between the modification times of consecutive
   checkpoint files.
b. the baseline: the same train images (the hold-out rule's train side) decoded to one
   uint8 array (the network preprocesses and flips inside itself, as in the job), the same
   model built and compiled by the job's recipe (``worker.recipes``), and ``fit(x, y,
   batch_size, epochs, shuffle=True, validation_data=(the held-out images), verbose=0)``
   with a callback timing each epoch (training and validation, as the job's seconds).
   The job reads through tf.data and reports progress; the baseline does not.

Target: (a) / (b) >= 0.9, on the steady-state epochs 2..N (epoch 1 of each side traces
the functions, and the job's decodes and caches the dataset). Also reported:

c. peak RSS of the job's process and of the baseline's process, next to the decoded size
   of the dataset (images * 64 * 64 * 3 bytes). Reported, no target.

Both children also time each ``model.evaluate`` call (``fit`` runs one per epoch for the
validation pass) by wrapping ``keras.Model.evaluate``; a diagnostic row compares the two
sides with that time subtracted, so a slow validation pass shows as such. It does not
decide the exit status.

The machine may be shared: the table notes the load average around each side and whether
a pytest run was seen. With ``--repeats`` the two sides alternate and each keeps its best.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import Row, emit, logger, render_table, verdict
from model.config import INPUT_SHAPE
from tools.processes import REPO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATASET = "bench"
IMAGE_BYTES = math.prod(INPUT_SHAPE)  # one decoded uint8 image
TARGET_RATIO = 0.9
OTHERS_CPU_WARNING = 0.15  # cores' worth of other processes' CPU time that taints a run


@dataclass
class Side:
    """What one child process measured."""

    epoch_seconds: list[float]  # per epoch, training + validation
    cycle_seconds: list[float] = field(default_factory=list)  # epochs 2..N, all included
    peak_rss: int = 0
    wall: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before, after
    pytest_seen: bool = False
    others_cpu: float = 0.0  # CPU-seconds other processes used while this side ran, per second
    validation_seconds: list[float] = field(default_factory=list)  # per epoch (evaluate)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args.child, json.loads(args.child_config))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="train_bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        table, passed = run(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    emit(table, args.out, append=args.append)
    return 0 if passed else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=3000, help="photo crops in the source")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="at least 2")
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow")
    parser.add_argument("--repeats", type=int, default=1, help="alternate runs; keep the best")
    parser.add_argument("--out", help="write the markdown table to this file too")
    parser.add_argument("--append", action="store_true", help="append to --out")
    parser.add_argument("--workdir", help="where the source and data root go (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    parser.add_argument("--child", choices=("job", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--child-config", help=argparse.SUPPRESS)
    parser.add_argument(
        "--quick", action="store_true", help="proves it runs: 600 images, 2 epochs (noisy)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.epochs, args.repeats = 600, 2, 1
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: epoch 1 is warm-up")
    return args


# ------------------------------------------------------------------------------ the parent


def run(args: argparse.Namespace, workdir: Path) -> tuple[str, bool]:
    from core.train_config import TrainConfig
    from tools.datasets import make_photo_class_folders
    from worker.reader import count_held_out, holdout_threshold, shard_paths
    from worker.sharding import shard_dataset, tf_compression

    data_root = workdir / "data"
    source = workdir / "source"
    log(f"writing {args.images} photo crops in {args.classes} classes to {source}")
    make_photo_class_folders(source, args.images, classes=args.classes, seed=0)
    dataset_dir = data_root / "datasets" / DATASET
    log(f"sharding into {args.shards} shards")
    manifest = shard_dataset(source, dataset_dir, num_shards=args.shards, seed=0)
    shutil.rmtree(source, ignore_errors=True)
    files = shard_paths(str(dataset_dir), manifest, "train")
    compression = tf_compression(manifest.compression)
    val_count = count_held_out(files, compression, holdout_threshold(0.1))
    train_count = manifest.splits["train"].count - val_count

    # The params exactly as the API would store them: the request's defaults, validated.
    params = TrainConfig(
        dataset=DATASET,
        width=args.width,
        levels=args.levels,
        epochs=args.epochs,
        batch_size=args.batch_size,
    ).model_dump()
    config = {"data_root": str(data_root), "params": params, "backend": args.backend}
    jobs: list[Side] = []
    baselines: list[Side] = []
    for attempt in range(max(1, args.repeats)):
        log(f"run {attempt + 1}/{args.repeats}: train job")
        jobs.append(run_child("job", config))
        log(f"run {attempt + 1}/{args.repeats}: baseline model.fit")
        baselines.append(run_child("baseline", config))
    job = max(jobs, key=lambda s: steady_rate(train_count, s.epoch_seconds))
    base = max(baselines, key=lambda s: steady_rate(train_count, s.epoch_seconds))
    if base.info.get("train_count") != train_count or base.info.get("val_count") != val_count:
        raise SystemExit(
            f"the sides disagree on the split: job {train_count}/{val_count}, "
            f"baseline {base.info.get('train_count')}/{base.info.get('val_count')}"
        )

    job_rate = steady_rate(train_count, job.epoch_seconds)
    cycle_rate = steady_rate(train_count, [0.0, *job.cycle_seconds])
    base_rate = steady_rate(train_count, base.epoch_seconds)
    job_train_rate = steady_rate(train_count, training_only(job))
    base_train_rate = steady_rate(train_count, training_only(base))
    decoded = (train_count + val_count) * IMAGE_BYTES
    mib = 2**20
    rows = [
        ratio_row(
            f"(a)/(b) images/s, epochs 2..{args.epochs}: job (history seconds: train + "
            "validation) vs model.fit (train + same validation)",
            job_rate,
            base_rate,
        ),
        ratio_row(
            f"(a)/(b) images/s, epochs 2..{args.epochs}: job whole cycle (checkpoint to "
            "checkpoint: + checkpoint save, TensorBoard, store writes) vs model.fit",
            cycle_rate,
            base_rate,
        ),
        ratio_row(
            f"diagnostic: (a)/(b) images/s, epochs 2..{args.epochs}, validation time "
            "subtracted on both sides (training steps only)",
            job_train_rate,
            base_train_rate,
            diagnostic=True,
        ),
        Row(
            "(c) peak RSS: job process vs baseline process",
            f"{job.peak_rss / mib:,.0f} MiB",
            f"{base.peak_rss / mib:,.0f} MiB",
            job.peak_rss / base.peak_rss,
            "report only",
            "-",
        ),
        Row(
            "(c) peak RSS of the job vs the decoded dataset "
            f"({train_count + val_count:,} x 64x64x3 uint8)",
            f"{job.peak_rss / mib:,.0f} MiB",
            f"{decoded / mib:,.1f} MiB",
            job.peak_rss / decoded,
            "report only",
            "-",
        ),
    ]
    passed = not any(row.failed for row in rows)
    table = render(args, rows, train_count, val_count, job, base, jobs, baselines)
    return table, passed


def training_only(side: Side) -> list[float]:
    """Epoch seconds less the validation pass of each epoch (model.evaluate)."""
    # The last evaluate calls are the epochs' (a sanity check before fit may add some).
    validation = side.validation_seconds[-len(side.epoch_seconds) :]
    if len(validation) != len(side.epoch_seconds):
        return []
    return [e - v for e, v in zip(side.epoch_seconds, validation, strict=True)]


def steady_rate(images: int, epoch_seconds: list[float]) -> float:
    """Images per second over epochs 2..N."""
    steady = epoch_seconds[1:]
    return images * len(steady) / sum(steady) if steady and sum(steady) > 0 else 0.0


def ratio_row(figure: str, ours: float, baseline: float, *, diagnostic: bool = False) -> Row:
    ratio = ours / baseline if baseline else 0.0
    return Row(
        figure,
        f"{ours:,.0f} img/s",
        f"{baseline:,.0f} img/s",
        ratio,
        f"(>= {TARGET_RATIO}x)" if diagnostic else f">= {TARGET_RATIO}x",
        # A diagnostic row explains the others; it does not decide the exit status.
        verdict(ratio >= TARGET_RATIO, diagnostic=diagnostic),
    )


def run_child(kind: str, config: dict[str, Any]) -> Side:
    # Default Settings in the child: no TINYRES_* from this environment leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYRES_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    # Both sides on the same Keras backend (the job's worker would set it from this).
    env["KERAS_BACKEND"] = env["TINYRES_KERAS_BACKEND"] = config.get("backend", "tensorflow")
    command = [
        sys.executable,
        "-m",
        "bench.train_bench",
        "--child",
        kind,
        "--child-config",
        json.dumps(config),
    ]
    load_before = os.getloadavg()[0]
    seen = pytest_running()
    busy_before, children_before = busy_cpu_seconds(), children_cpu_seconds()
    start = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    busy = busy_cpu_seconds() - busy_before
    others = max(0.0, busy - (children_cpu_seconds() - children_before)) / wall
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-6000:])
        raise SystemExit(f"the {kind} process failed with exit status {done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    side = Side(
        epoch_seconds=result["epoch_seconds"],
        cycle_seconds=result.get("cycle_seconds", []),
        validation_seconds=result.get("validation_seconds", []),
        peak_rss=result["peak_rss"],
        wall=wall,
        info=result.get("info", {}),
        load=(load_before, os.getloadavg()[0]),
        pytest_seen=seen or pytest_running(),
        others_cpu=others,
    )
    log(
        f"{kind}: epochs {fmt_seconds(side.epoch_seconds)}, peak RSS "
        f"{side.peak_rss / 2**20:,.0f} MiB, {wall:.0f} s in all"
    )
    return side


def busy_cpu_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (/proc/stat), 0 if unknown."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # guest time is already inside user time
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pytest_running() -> bool:
    try:
        found = subprocess.run(["pgrep", "-f", "python -m pytest"], capture_output=True)
    except OSError:
        return False
    return found.returncode == 0


def render(
    args: argparse.Namespace,
    rows: list[Row],
    train_count: int,
    val_count: int,
    job: Side,
    base: Side,
    jobs: list[Side],
    baselines: list[Side],
) -> str:
    levels = ", ".join(str(n) for n in args.levels)
    train_cached = train_count * IMAGE_BYTES <= job.info.get("reader_cache_bytes", 0)
    title = (
        f"train_bench: {train_count:,} train + {val_count:,} validation photo crops "
        f"(hold-out), {args.classes} classes, width {args.width}, levels [{levels}], "
        f"batch {args.batch_size}, {args.epochs} epochs, Keras on {args.backend}"
    )
    lines = [
        f"machine: {machine()}; ours = the job (a), baseline = model.fit (b)",
        f"job epochs (history seconds, train + validation): {fmt_seconds(job.epoch_seconds)};"
        f" checkpoint-to-checkpoint: {fmt_seconds(job.cycle_seconds)} (epochs 2..N); "
        f"{train_count // args.batch_size} steps/epoch (full batches), reader cache "
        f"{'on' if train_cached else 'off'}, replicas "
        f"{job.info.get('replicas', '?')}, job process {job.wall:.0f} s in all "
        "(imports, sanity check, final evaluation included)",
        f"baseline epochs (train + validation): {fmt_seconds(base.epoch_seconds)}; "
        f"baseline process {base.wall:.0f} s in all",
        f"validation pass (model.evaluate inside fit) per epoch: job "
        f"{fmt_seconds(job.validation_seconds)}, baseline {fmt_seconds(base.validation_seconds)}",
        f"both sides validate on the same {val_count:,} held-out images every epoch; the "
        "job also flips its train images at random (tf.data), the baseline does not",
    ]
    if len(jobs) > 1:
        per_run = "; ".join(
            f"run {i + 1}: job {steady_rate(train_count, j.epoch_seconds):,.0f}, baseline "
            f"{steady_rate(train_count, b.epoch_seconds):,.0f} img/s"
            for i, (j, b) in enumerate(zip(jobs, baselines, strict=True))
        )
        lines.append(f"best of {len(jobs)} alternating runs each ({per_run})")
    sides = [s for pair in zip(jobs, baselines, strict=True) for s in pair]
    loads = ", ".join(f"{s.load[0]:.2f}->{s.load[1]:.2f}" for s in sides)
    others = ", ".join(f"{s.others_cpu:.2f}" for s in sides)
    pytest_seen = any(s.pytest_seen for s in sides)
    crowded = max(s.others_cpu for s in sides) > OTHERS_CPU_WARNING
    lines.append(
        f"machine share, job/baseline alternating: CPU cores used by other "
        f"processes during each run {others}; load average (1 min) {loads}"
        + ("; a pytest run was seen" if pytest_seen else "; no pytest run seen")
    )
    if crowded or pytest_seen:
        lines.append(
            "WARNING: other work ran during the measurement: the figures are "
            "distorted; rerun on a quiet machine"
        )
    return render_table(title, rows, lines)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{cpus} CPU cores ({model}), {len(gpus)} GPU, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, TensorFlow "
        f"{tf.__version__}"
    )


def fmt_seconds(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "] s"


log = logger("train_bench")


# ------------------------------------------------------------------------------ the children


def child(kind: str, config: dict[str, Any]) -> int:
    validation = time_validation()
    result = job_child(config) if kind == "job" else baseline_child(config)
    result["validation_seconds"] = validation
    # ru_maxrss is in KiB on Linux.
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))
    return 0


def time_validation() -> list[float]:
    """Wrap ``keras.Model.evaluate`` (which ``fit`` calls for each epoch's validation) to
    record how long each call takes, in both children alike. Behaviour is unchanged."""
    import keras

    seconds: list[float] = []
    evaluate = keras.Model.evaluate

    @functools.wraps(evaluate)
    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return evaluate(self, *args, **kwargs)
        finally:
            seconds.append(round(time.monotonic() - start, 3))

    keras.Model.evaluate = timed
    return seconds


def job_child(config: dict[str, Any]) -> dict[str, Any]:
    from core import layout
    from core.config import Settings
    from core.jobs import JobState, JobStore
    from worker.runner import run_job
    from worker.training import train

    settings = Settings(data_root=Path(config["data_root"]))
    store = JobStore(settings.effective_database_url)
    store.create_schema()
    job = store.create("train", config["params"])
    finished = run_job(store, settings, job.id, train)
    if finished is None or finished.state != JobState.SUCCEEDED:
        raise SystemExit(f"the train job did not succeed: {finished and finished.error}")
    folder = layout.checkpoints_dir(settings, job.id)
    epochs = layout.checkpoint_epochs(settings, job.id)
    mtimes = [(folder / layout.checkpoint_name(e)).stat().st_mtime for e in epochs]
    # Consecutive kept checkpoints (older ones may have been pruned): epoch b's whole cycle.
    cycles = [
        mtimes[i + 1] - mtimes[i] for i in range(len(epochs) - 1) if epochs[i + 1] == epochs[i] + 1
    ]
    return {
        "epoch_seconds": [entry["seconds"] for entry in finished.history],
        "cycle_seconds": cycles,
        "info": {
            "reader_cache_bytes": settings.reader_cache_bytes,
            "replicas": (finished.result or {}).get("replicas", "?"),
            "history": finished.history,
        },
    }


def baseline_child(config: dict[str, Any]) -> dict[str, Any]:
    import keras
    import numpy as np
    import tensorflow as tf

    from core.config import Settings
    from core.manifest import load_manifest
    from core.tf_decode import decode_image
    from core.train_config import TrainConfig
    from worker.devices import configure_devices
    from worker.reader import holdout_threshold, is_held_out, parse, records, shard_paths
    from worker.recipes import build_model, compile_model
    from worker.sharding import tf_compression

    settings = Settings(data_root=Path(config["data_root"]))
    params = TrainConfig.model_validate(config["params"])
    keras.utils.set_random_seed(params.seed)
    strategy = configure_devices(settings)  # the job's precision policy and devices
    folder = settings.resolved_data_root / "datasets" / params.dataset
    manifest = load_manifest(folder)
    threshold = holdout_threshold(0.1)
    records_ds = records(
        shard_paths(str(folder), manifest, "train"), tf_compression(manifest.compression)
    )
    examples = (
        records_ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .map(
            lambda e: (
                decode_image(e["image"]),
                tf.cast(e["label"], tf.int32),
                is_held_out(e["filename"], threshold),
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .batch(256)
    )
    parts: dict[bool, tuple[list[np.ndarray], list[np.ndarray]]] = {True: ([], []), False: ([], [])}
    for images, labels, held in examples.as_numpy_iterator():
        for side in (True, False):
            parts[side][0].append(images[held == side])
            parts[side][1].append(labels[held == side])
    x_u8, y = np.concatenate(parts[False][0]), np.concatenate(parts[False][1])
    xv_u8, yv = np.concatenate(parts[True][0]), np.concatenate(parts[True][1])
    # uint8, as the job's reader ships them: the network preprocesses inside itself.
    x, xv = x_u8, xv_u8
    del parts

    with strategy.scope():
        model = build_model(params, [c.model_dump() for c in manifest.classes])
        compile_model(model, params, settings)
    timer = epoch_timer()
    model.fit(
        x,
        y,
        batch_size=params.batch_size,
        epochs=params.epochs,
        shuffle=True,
        validation_data=(xv, yv),
        callbacks=[timer],
        verbose=0,
    )
    return {
        "epoch_seconds": timer.seconds,
        "info": {
            "train_count": len(y),
            "val_count": len(yv),
            "array_bytes": int(x.nbytes + xv.nbytes),
        },
    }


def epoch_timer() -> Any:
    """A Keras callback whose ``seconds`` lists each epoch's length, validation included.
    Defined here so that only the children import Keras."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.started = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.seconds.append(round(time.monotonic() - self.started, 3))

    return EpochTimer()


if __name__ == "__main__":
    sys.exit(main())
