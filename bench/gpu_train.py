"""Training speed of the write-up's network on one GPU under Keras 3 on JAX, in one short run.

On the GPU machine (the ``device`` tool's nvidia-h200: JAX with CUDA, no TensorFlow, no
Keras), after ``bash bench/gpu_wheels.sh`` here, one call with ``carry: ["bench/wheels"]``::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/kdeps \\
        bench/wheels/*.whl && PYTHONPATH=/tmp/kdeps:. KERAS_BACKEND=jax PYTHONUNBUFFERED=1 \\
        python3 -m bench.gpu_train --out $OUT/gpu.md

Anywhere, in a venv with ``jax`` and ``keras`` (TensorFlow not needed)::

    KERAS_BACKEND=jax python -m bench.gpu_train --smoke --out /tmp/gpu.md   # tiny, CPU: runs?

Rows, each measured in a fresh child process (clean peak memory, dtype policy and compile
cache; a row that crashes or runs out of time leaves the others):

* the host pipeline: random uint8 images ``[N, 64, 64, 3]`` cached in memory, shuffled and
  batched with NumPy on one thread (images/s per core);
* the ``writeup`` network (width 64, levels [4, 6, 3, 2], 200 classes) at batch 512 and 128,
  in ``mixed_bfloat16`` and ``float32``: uint8 NumPy batches of a fixed shape (no remainder)
  through ``model.fit``, SGD with momentum 0.9, ``jit_compile=True``, ``steps_per_execution``,
  no per-batch callback; softmax (and the loss) in float32;
* when TensorFlow is importable: the same network fed by ``tf.data`` (bf16, batch 512), and
  that pipeline alone. TensorFlow is imported by that child only; the JAX rows assert that
  ``tensorflow`` was never imported.

Each train row: a warm-up fit (tracing and XLA compilation, reported), a short calibration
fit, then one timed fit of as many steps as ``--seconds`` allows (at most ``--steps``); the
wall time of that fit over its steps is ms/step. An epoch is 100,000 images (Tiny ImageNet's
train split) at that speed. Ratios are the write-up's 924 ms/step and 686 s/epoch over ours.
Peak device memory is JAX's ``peak_bytes_in_use`` ("n/a" where the device has no stats).
The markdown table is appended to ``--out`` row by row, so a run cut off still reports; the
whole run stays under ``--deadline`` seconds (default 330), compilation included.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WRITEUP_MS_PER_STEP = 924.0
WRITEUP_SECONDS_PER_EPOCH = 686.0
WRITEUP = {"width": 64, "levels": [4, 6, 3, 2], "classes": 200}  # the `writeup` preset
SMOKE = {"width": 8, "levels": [1], "classes": 10}
RESULT = "GPU_TRAIN_RESULT "  # prefix of the child's one JSON line on stdout
STARTED = time.monotonic()
COLUMNS = (
    "row",
    "precision",
    "batch",
    "images/s",
    "ms/step",
    "s/epoch (100k)",
    "vs 924 ms/step",
    "vs 686 s/epoch",
    "peak device memory",
    "notes",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--smoke", action="store_true", help="tiny network and steps on the CPU: does it run?")
    add("--out", help="markdown file the table is appended to, row by row")
    add("--batches", type=int, nargs="+", help="batch sizes (default 512 128; smoke 8)")
    add("--precisions", nargs="+", choices=("bf16", "float32"), default=["bf16", "float32"])
    add("--images", type=int, help="distinct images held in memory (default 8192; smoke 256)")
    add("--steps-per-execution", type=int, help="Keras steps_per_execution (default 16)")
    add("--steps", type=int, help="most steps in the timed fit (default 2000; smoke 8)")
    add("--seconds", type=float, help="target length of the timed fit (default 12; smoke 1)")
    add("--deadline", type=float, help="seconds the whole run stays under (default 330)")
    add("--no-tf", action="store_true", help="skip the tf.data rows even if TF is importable")
    add("--child", help=argparse.SUPPRESS)  # internal: probe | train:PREC:BATCH | tfdata:...
    add("--until", type=float, help=argparse.SUPPRESS)  # internal: time.time() to finish by
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.net = SMOKE if smoke else WRITEUP
    args.batches = args.batches or ([8] if smoke else [512, 128])
    args.images = args.images or (256 if smoke else 8192)
    args.steps_per_execution = args.steps_per_execution or (2 if smoke else 16)
    args.steps = args.steps or (8 if smoke else 2000)
    args.seconds = args.seconds if args.seconds is not None else (1.0 if smoke else 12.0)
    args.deadline = args.deadline or (240.0 if smoke else 330.0)
    return args


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    if args.child:
        return child_main(args)
    return parent_main(args, raw)


# ------------------------------------------------------------------------------ parent


def parent_main(args: argparse.Namespace, argv: list[str]) -> int:
    """Runs the rows in child processes; JAX's compilation cache is shared between them (the
    variable initializers' many small programs), not kept: compile times stay honest."""
    cache = None
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        cache = tempfile.mkdtemp(prefix="gpu_train-jax-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    try:
        return run_rows(args, argv)
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)


def run_rows(args: argparse.Namespace, argv: list[str]) -> int:
    """Runs the rows in child processes, appending each row to the table as it comes."""
    until = time.time() + args.deadline
    probe = run_child(argv, "probe", until)
    if "error" in probe:
        emit(args, f"\nprobe failed: {probe['error']}\n")
        return 1
    emit(args, header(args, probe))
    emit(args, table_row(host_pipeline_row(args)))
    failures, tf_seen = 0, False
    for precision in args.precisions:
        for batch in args.batches:
            left = until - time.time()
            spec = f"train:{precision}:{batch}"
            if left < (20.0 if args.smoke else 45.0):
                emit(args, table_row(skipped(spec, f"skipped: {left:.0f} s left")))
                continue
            result = run_child(argv, spec, until)
            failures += "error" in result
            tf_seen = tf_seen or bool(result.get("tensorflow_imported"))
            emit(args, table_row(result))
    if tf_seen:
        emit(args, "\nFAILED: TensorFlow was imported on the JAX path.\n")
        return 1
    footer = ["", "TensorFlow was not imported by the JAX rows (checked in each child)."]
    if args.no_tf:
        footer.append("tf.data rows: skipped (--no-tf).")
    elif not probe["tensorflow"]:
        footer.append(f"tf.data rows: skipped ({probe['tensorflow_why']}).")
    elif until - time.time() < (20.0 if args.smoke else 45.0):
        footer.append("tf.data rows: skipped (no time left).")
    else:
        result = run_child(argv, f"tfdata:bf16:{args.batches[0]}", until)
        for row in result.get("rows", [result]):
            emit(args, table_row(row))
    footer.append(f"Whole run: {time.monotonic() - STARTED:.0f} s.")
    emit(args, "\n".join(footer) + "\n")
    return 1 if failures else 0


def run_child(argv: list[str], spec: str, until: float) -> dict[str, Any]:
    """Runs ``spec`` in ``python -m bench.gpu_train`` and returns its result (or an error)."""
    command = [sys.executable, "-m", "bench.gpu_train", *argv, "--child", spec]
    command += ["--until", str(until)]
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log(f"{spec}: starting ({until - time.time():.0f} s left)")
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            timeout=max(30.0, until - time.time() + 20.0),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return skipped(spec, "error: timed out")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT):
            result: dict[str, Any] = json.loads(line[len(RESULT) :])
            return result
    return skipped(spec, f"error: exit status {done.returncode}, no result (see stderr)")


def skipped(spec: str, why: str) -> dict[str, Any]:
    kind, _, rest = spec.partition(":")
    precision, _, batch = rest.partition(":")
    result = {"row": kind, "precision": precision, "batch": batch, "notes": why}
    if why.startswith("error"):
        result["error"] = why
    return result


def host_pipeline_row(args: argparse.Namespace) -> dict[str, Any]:
    """The host's whole share of the work: shuffle and batch cached uint8 images, 1 thread."""
    images, labels = random_data(args.images, args.net["classes"])
    batch = max(args.batches)
    count, seconds = 0, 0.5 if args.smoke else 3.0
    start = time.perf_counter()
    for x, _ in batches(images, labels, batch, seed=1):
        count += len(x)
        if time.perf_counter() - start >= seconds:
            break
    rate = count / (time.perf_counter() - start)
    log(f"host pipeline: {rate:,.0f} images/s on one thread")
    return {
        "row": "host pipeline (NumPy)",
        "batch": batch,
        "images_per_s": rate,
        "notes": f"per core: 1 thread; cached uint8 {images.shape}, shuffled and batched"
        + ("" if args.smoke else f"; target >= 5,000/s per core: {verdict(rate >= 5000)}"),
    }


# ------------------------------------------------------------------------------- child


def child_main(args: argparse.Namespace) -> int:
    kind, _, rest = args.child.partition(":")
    precision, _, batch = rest.partition(":")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    result: dict[str, Any]
    try:
        if kind == "probe":
            result = probe()
        elif kind == "train":
            result = train_row(args, precision, int(batch), feed="numpy")
        else:
            result = {"rows": tfdata_rows(args, precision, int(batch))}
    except Exception as exc:  # reported as the row (out of memory, say); traceback on stderr
        traceback.print_exc()
        result = skipped(args.child, f"error: {type(exc).__name__}: {exc}"[:400])
    print(RESULT + json.dumps(result), flush=True)
    return 0


def probe() -> dict[str, Any]:
    """What runs the rows: devices and versions; whether TensorFlow could be imported."""
    import importlib.util

    import jax
    import keras

    try:
        tensorflow = importlib.util.find_spec("tensorflow") is not None
        why = "" if tensorflow else "TensorFlow is not installed"
    except ImportError as exc:  # a blocking import hook, as the smoke test installs
        tensorflow, why = False, f"TensorFlow cannot be imported: {exc}"
    device = jax.devices()[0]
    return {
        "device": f"{len(jax.devices())} x {device.platform} {device.device_kind}",
        "versions": f"Python {sys.version.split()[0]}, JAX {jax.__version__}, "
        f"Keras {keras.__version__} ({keras.backend.backend()} backend)",
        "tensorflow": tensorflow,
        "tensorflow_why": why,
    }


def train_row(args: argparse.Namespace, precision: str, batch: int, feed: str) -> dict[str, Any]:
    """One train measurement; ``feed`` is ``numpy`` (a generator) or ``tfdata``."""
    images, labels = random_data(args.images, args.net["classes"])
    model, dense_dtype = build_model(args.net, precision, args.steps_per_execution)
    if feed == "numpy":

        def data() -> Any:
            return batches(images, labels, batch, seed=2)

    else:
        dataset = tf_dataset(images, labels, batch)

        def data() -> Any:
            return dataset

    budget = max(0.5, min(args.seconds, args.until - time.time() - 10.0))
    steps, seconds, compile_seconds, loss = measure(model, data, args, budget)
    result = speed_row(steps, seconds, batch)
    tensorflow_imported = "tensorflow" in sys.modules
    if feed == "numpy":
        assert not tensorflow_imported, "TensorFlow was imported on the JAX path"
    notes = [
        f"warm-up with compile {compile_seconds:.1f} s",
        f"timed {steps} steps in {seconds:.1f} s",
        f"loss {loss:.3f}",
        f"dense {dense_dtype}, softmax float32",
        f"steps_per_execution {args.steps_per_execution}",
    ]
    if precision == "bf16" and not args.smoke:
        notes.append(f"target >= 20,000 images/s: {verdict(result['images_per_s'] >= 20_000)}")
    result.update(
        row=f"{'smoke net' if args.smoke else 'writeup'} ({feed})",
        precision=precision,
        batch=batch,
        peak=peak_device_memory(),
        tensorflow_imported=tensorflow_imported,
        notes="; ".join(notes),
    )
    return result


def build_model(net: dict[str, Any], precision: str, steps_per_execution: int) -> Any:
    """``model.Resnet`` on uint8 input, softmax in float32, compiled as for the benchmark.

    Returns (model, compute dtype of the network's output Dense)."""
    import keras

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    from model import Resnet

    resnet = Resnet(net["classes"], width=net["width"], levels=net["levels"], l2=0.01)
    inputs = keras.Input((64, 64, 3), dtype="uint8", name="images")
    # uint8 crosses to the device; the cast (and scaling) runs there, in the compute dtype.
    x = keras.layers.Rescaling(1.0 / 255.0, name="to_float")(inputs)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="softmax")(resnet(x))
    model = keras.Model(inputs, probabilities, name="gpu_train")
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=True,
        steps_per_execution=steps_per_execution,
    )
    dense = [layer for layer in resnet._flatten_layers() if isinstance(layer, keras.layers.Dense)]
    return model, (dense[-1].compute_dtype if dense else "?")


def measure(
    model: Any, data: Callable[[], Any], args: argparse.Namespace, budget: float
) -> tuple[int, float, float, float]:
    """(timed steps, their seconds, warm-up seconds with compilation, last loss)."""
    spe = args.steps_per_execution

    def fit(steps: int) -> tuple[float, float]:
        start = time.perf_counter()
        history = model.fit(data(), steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        # fit returns once the epoch's logs are read back: the device has finished.
        return time.perf_counter() - start, float(history.history["loss"][-1])

    compile_seconds, _ = fit(spe)
    log(f"warm-up (tracing, compilation): {compile_seconds:.1f} s")
    probe_seconds, _ = fit(2 * spe)
    per_step = probe_seconds / (2 * spe)
    steps = int(min(args.steps, max(2 * spe, budget / per_step)) // spe * spe)
    log(f"about {1000 * per_step:.1f} ms/step: timing {steps} steps")
    seconds, loss = fit(steps)
    return steps, seconds, compile_seconds, loss


def speed_row(steps: int, seconds: float, batch: int) -> dict[str, Any]:
    ms_per_step = 1000.0 * seconds / steps
    epoch_seconds = math.ceil(100_000 / batch) * ms_per_step / 1000.0
    return {
        "images_per_s": batch * steps / seconds,
        "ms_per_step": ms_per_step,
        "epoch_seconds": epoch_seconds,
        "vs_step": WRITEUP_MS_PER_STEP / ms_per_step,
        "vs_epoch": WRITEUP_SECONDS_PER_EPOCH / epoch_seconds,
    }


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def peak_device_memory() -> str:
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return "n/a" if peak is None else f"{peak / 2**30:.2f} GiB"


def tfdata_rows(args: argparse.Namespace, precision: str, batch: int) -> list[dict[str, Any]]:
    """The tf.data input (as the worker feeds a JAX model): that pipeline alone, then training."""
    images, labels = random_data(args.images, args.net["classes"])
    dataset = tf_dataset(images, labels, batch)
    count, start = 0, time.perf_counter()
    for x, _ in dataset.as_numpy_iterator():
        count += len(x)
        if time.perf_counter() - start >= (0.5 if args.smoke else 3.0):
            break
    rate = count / (time.perf_counter() - start)
    host = {"row": "host pipeline (tf.data)", "batch": batch, "images_per_s": rate}
    host["notes"] = "shuffle, batch (drop_remainder), prefetch; to NumPy; all cores"
    return [host, train_row(args, precision, batch, feed="tfdata")]


# ------------------------------------------------------------------------------- data


def random_data(count: int, classes: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 64, 64, 3), dtype=np.uint8)
    return images, rng.integers(0, classes, count).astype(np.int32)


def batches(images: Any, labels: Any, batch: int, seed: int) -> Iterator[tuple[Any, Any]]:
    """Endless shuffled batches of one fixed shape (the remainder of each pass is dropped)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(images))
        for start in range(0, len(order) - batch + 1, batch):
            index = np.sort(order[start : start + batch])  # sorted: faster gathers
            # Fresh arrays: device transfers are asynchronous, so no buffer is reused.
            yield np.take(images, index, axis=0), np.take(labels, index)


def tf_dataset(images: Any, labels: Any, batch: int) -> Any:
    import tensorflow as tf

    return (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=0, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


# ------------------------------------------------------------------------------ report


def header(args: argparse.Namespace, probe: dict[str, Any]) -> str:
    net = args.net
    title = "smoke run (sizes are not the benchmark's)" if args.smoke else "writeup preset"
    lines = [
        "",
        f"### bench.gpu_train: {title}",
        "",
        f"{probe['device']}; {probe['versions']}. Network: width {net['width']}, levels "
        f"{net['levels']}, {net['classes']} classes; {args.images:,} random uint8 images in "
        f"host memory; SGD momentum 0.9, jit_compile, steps_per_execution "
        f"{args.steps_per_execution}. Write-up: {WRITEUP_MS_PER_STEP:.0f} ms/step, "
        f"{WRITEUP_SECONDS_PER_EPOCH:.0f} s/epoch.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + " --- |" * len(COLUMNS),
    ]
    return "\n".join(lines) + "\n"


def table_row(result: dict[str, Any]) -> str:
    def number(key: str, form: str, suffix: str = "") -> str:
        value = result.get(key)
        return "—" if value is None else format(value, form) + suffix

    cells = [
        str(result.get("row", "?")),
        str(result.get("precision") or "—"),
        str(result.get("batch", "—")),
        number("images_per_s", ",.0f"),
        number("ms_per_step", ",.1f"),
        number("epoch_seconds", ",.1f"),
        number("vs_step", ",.1f", "x"),
        number("vs_epoch", ",.1f", "x"),
        str(result.get("peak", "—")),
        str(result.get("notes", "")).replace("|", "/"),
    ]
    return "| " + " | ".join(cells) + " |\n"


def emit(args: argparse.Namespace, text: str) -> None:
    """Prints ``text`` and appends it to ``--out`` at once (a cut-off run still reports)."""
    sys.stdout.write(text)
    sys.stdout.flush()
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as file:
            file.write(text)


def log(message: str) -> None:
    print(f"[gpu_train {time.monotonic() - STARTED:5.0f}s] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
