"""Benchmark of POST /predict: latency, throughput with and without batching, memory.

Run from the repository root: ``python -m bench.predict_bench`` (see ``--help``). Not part
of the tests. Everything is measured in one run, on the ``writeup`` preset (untrained weights,
200 classes) and 64x64 JPEGs:

1. In-process latency of one image through the serving path (``decode_upload``, the
   serving ``tf.function`` of ``model.serving``, ``top_k``) against a bare ``tf.function``
   of the same network on already decoded pixels. Target: at most 1.5x.
2. Real uvicorn servers, one after the other, each in its own process: the API with
   batching on, the API with batching off, and a naive app (``naive_app`` below) that calls
   ``model.predict`` per request. A load generator in another process (``load``
   subcommand: asyncio, keep-alive HTTP/1.1 connections, bounded by a request count and a
   time limit) measures p50/p99 with 1 client and throughput and p99 with 32 clients.
   Targets: batching on at least 3x batching off and 10x naive.
3. Memory of the batching-on API: RSS with the model cache full, and its growth over
   ``--requests`` requests spread over the cached models. Target: below ``--rss-bound-mb``
   and growth below 5%. The issue asks for 10,000 requests; the default of 2,000 keeps the
   run short: pass ``--requests 10000`` for the full check.

It prints a markdown table, one row per target with PASS/FAIL.

The load generator speaks raw HTTP/1.1 on asyncio streams instead of using httpx: on a
small machine the client shares the CPU with the server, and httpx would spend more of it
per request than the server does, so the numbers would measure the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Form, UploadFile

from bench.harness import (
    CHECK_HEADER,
    check_row,
    make_images,
    multipart_body,
    post_request,
    register_model,
    rss_mb,
    server,
)
from tools.processes import REPO

CLASSES = 200


# ---------------------------------------------------------------------------- the naive app


def naive_app() -> Any:
    """The naive way: FastAPI's ``UploadFile`` and ``model.predict`` on each request.

    Run by uvicorn with ``--factory``; serves the newest model of ``TINYRES_DATA_ROOT``.
    """
    from core import layout
    from core.config import get_settings
    from core.jobs import JobStore

    settings = get_settings()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        import keras

        import model.resnet  # noqa: F401  (registers the layers)

        store = JobStore(settings.effective_database_url)
        job = store.list_jobs(kind="train", state="succeeded", limit=1)[0]
        state["id"] = job.id
        state["model"] = keras.saving.load_model(layout.model_path(settings, job.id))
        yield
        store.engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(image: UploadFile = File(...), top_k: int = Form(5)) -> dict[str, Any]:
        from core.tf_decode import decode_image

        network = state["model"]
        logits = network.predict(decode_image(image.file.read())[None], verbose=0)
        exp = np.exp(logits[0] - logits[0].max())
        probs = exp / exp.sum()
        best = np.argsort(-probs)[:top_k]
        names = network.class_names
        return {
            "model": state["id"],
            "predictions": [
                {
                    "class_index": int(i),
                    "wnid": names[i]["wnid"],
                    "label": names[i]["label"],
                    "probability": float(probs[i]),
                }
                for i in best
            ],
        }

    return app


# --------------------------------------------------------------------- the load generator


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status code, and whether the server closes the connection."""
    status = int((await reader.readline()).split()[1])
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    await reader.readexactly(length)
    return status, close


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    images = [p.read_bytes() for p in sorted(Path(args.images).glob("*.jpg"))]
    models = args.models.split(",") if args.models else [None]
    requests = [
        post_request(args.host, args.port, args.path, multipart_body(images[i % len(images)], m))
        for i, m in ((i, models[i % len(models)]) for i in range(len(images) * len(models)))
    ]
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    issued = 0
    deadline = time.monotonic() + args.seconds

    async def client() -> None:
        nonlocal issued
        reader, writer = await asyncio.open_connection(args.host, args.port)
        try:
            while issued < args.requests and time.monotonic() < deadline:
                data = requests[issued % len(requests)]
                issued += 1
                start = time.perf_counter()
                writer.write(data)
                await writer.drain()
                status, close = await _read_response(reader)
                latencies.append(time.perf_counter() - start)
                codes[status] += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(args.host, args.port)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    elapsed = time.perf_counter() - start
    quantiles = np.quantile(latencies, [0.5, 0.99]) if latencies else [float("nan")] * 2
    return {
        "requests": len(latencies),
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "seconds": elapsed,
        "throughput": codes[200] / elapsed,
        "p50_ms": float(quantiles[0]) * 1000,
        "p99_ms": float(quantiles[1]) * 1000,
    }


def load_main(args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(_load(args))))


# ------------------------------------------------------------------------ the benchmark


def register_models(settings: Any, count: int) -> list[str]:
    """``count`` untrained writeup-preset models as succeeded train jobs; oldest first."""
    from core.train_config import preset_architecture

    ids = []
    for seed in range(count):
        ids.append(register_model(settings, CLASSES, preset_architecture("writeup"), seed))
        time.sleep(0.01)  # distinct creation times: the newest is the last
    return ids


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def in_process(settings: Any, model_id: str, images: list[bytes], rounds: int) -> dict[str, Any]:
    """Serving path vs bare tf.function, interleaved so both see the same machine load."""
    import tensorflow as tf

    from app.batching import Predictor
    from core import layout
    from core.tf_decode import decode_image
    from model.config import INPUT_SHAPE
    from model.serving import decode_upload, load_model, top_k

    loaded = load_model(model_id, layout.model_path(settings, model_id))
    network = loaded.network
    bare = tf.function(
        lambda x: network(x, training=False),
        input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.uint8)],
    )
    inputs = [decode_image(data)[None] for data in images]

    def serving(data: bytes) -> list[Any]:
        pixels = decode_upload(data, settings.max_image_pixels)[None]
        return top_k(loaded.probabilities(pixels)[0], 5, loaded.class_names)

    for i in range(10):  # warm-up
        serving(images[i % len(images)])
        bare(inputs[i % len(inputs)])
    serve_t, bare_t = [], []
    for i in range(rounds):
        start = time.perf_counter()
        serving(images[i % len(images)])
        serve_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare(inputs[i % len(inputs)]).numpy()
        bare_t.append(time.perf_counter() - start)

    async def through_batcher() -> list[float]:
        predictor = Predictor.from_settings(settings)
        times = []
        for i in range(rounds // 2):
            start = time.perf_counter()
            pixels = decode_upload(images[i % len(images)], settings.max_image_pixels)[None]
            probs = await predictor.predict(loaded, pixels)
            top_k(probs[0], 5, loaded.class_names)
            times.append(time.perf_counter() - start)
        await predictor.close()
        return times

    async def pipeline(batching: bool, clients: int, each: int) -> float:
        """Throughput of ``clients`` concurrent callers of decode + predictor, no HTTP."""
        predictor = Predictor(
            batching=batching, max_batch=settings.batch_max_size, timeout_ms=timeout_ms
        )

        async def client(offset: int) -> None:
            for i in range(each):
                data = images[(offset + i) % len(images)]
                pixels = await asyncio.to_thread(decode_upload, data, settings.max_image_pixels)
                await predictor.predict(loaded, pixels[None])

        await client(0)
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - start
        await predictor.close()
        return clients * each / elapsed

    timeout_ms = settings.batch_timeout_ms
    batcher_t = asyncio.run(through_batcher())
    each = max(2, rounds // 25)
    return {
        "serving_ms": _median_ms(serve_t),
        "bare_ms": _median_ms(bare_t),
        "batcher_ms": _median_ms(batcher_t),
        "pipeline_on": asyncio.run(pipeline(True, 32, each)),
        "pipeline_off": asyncio.run(pipeline(False, 32, each)),
    }


def run_load(
    port: int, images: Path, clients: int, requests: int, seconds: float, models: str = ""
) -> dict[str, Any]:
    """The load generator, in its own process."""
    command = [sys.executable, "-m", "bench.predict_bench", "load", "--port", str(port)]
    command += ["--images", str(images), "--clients", str(clients), "--models", models]
    command += ["--requests", str(requests), "--seconds", str(seconds)]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, check=True, timeout=seconds + 120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stats(port: int) -> dict[str, Any]:
    import httpx

    answer = httpx.get(f"http://127.0.0.1:{port}/predict/stats", timeout=10)
    return answer.json()


def _warm(port: int, images: Path, models: list[str]) -> None:
    """One request per model (loads it), in order."""
    for model_id in models:
        result = run_load(port, images, 1, 1, 120, model_id)
        if result["codes"] != {"200": 1}:
            raise RuntimeError(f"warm-up of model {model_id} failed: {result}")


def measure_api(
    args: argparse.Namespace, data_root: Path, images: Path, ids: list[str], batching: bool
) -> dict[str, Any]:
    name = "on" if batching else "off"
    out: dict[str, Any] = {}
    env = {
        "TINYRES_BATCHING": str(batching).lower(),
        "TINYRES_BATCH_TIMEOUT_MS": str(args.batch_timeout_ms),
        "TINYRES_MODEL_CACHE_SIZE": str(args.cache_size),
    }
    with server(data_root, data_root / f"api-{name}.log", **env) as (port, pid):
        _warm(port, images, [ids[-1]])
        out["one"] = run_load(port, images, 1, args.latency_requests, args.seconds)
        run_load(port, images, args.clients, args.clients * 4, args.seconds)  # warm-up
        before = _stats(port)
        out["many"] = run_load(port, images, args.clients, args.throughput_requests, args.seconds)
        after = _stats(port)
        # Batch sizes of the throughput run alone (the counters are cumulative).
        batches = after["batches"] - before["batches"]
        out["stats"] = {
            "mean_batch": (after["images"] - before["images"]) / max(batches, 1),
            "max_batch": max(after["recent_batch_sizes"][-batches:] or [0]),
        }
        if batching:
            out["memory"] = measure_memory(args, port, pid, images, ids)
    return out


def measure_memory(
    args: argparse.Namespace, port: int, pid: int, images: Path, ids: list[str]
) -> dict[str, Any]:
    cached = ids[-args.cache_size :]
    _warm(port, images, ids)  # every model once: the cache ends full, having evicted
    models = ",".join(cached)
    # Settle allocator pools at full batch sizes before the baseline.
    run_load(port, images, args.clients, 400, args.seconds, models)
    full = rss_mb(pid)
    seconds = max(args.seconds, args.requests / 20)
    result = run_load(port, images, args.clients, args.requests, seconds, models)
    after = rss_mb(pid)
    return {
        "cached": _stats(port)["cached_models"],
        "rss_full_mb": full,
        "rss_after_mb": after,
        "requests": result["requests"],
        "codes": result["codes"],
        "growth": (after - full) / full,
    }


def measure_naive(args: argparse.Namespace, data_root: Path, images: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with server(data_root, data_root / "naive.log", "bench.predict_bench:naive_app") as (port, _):
        run_load(port, images, 1, 5, args.seconds)  # warm-up
        out["one"] = run_load(port, images, 1, args.latency_requests // 2, args.seconds)
        out["many"] = run_load(port, images, args.clients, args.throughput_requests, args.seconds)
    return out


def report(args: argparse.Namespace, local: dict[str, Any], runs: dict[str, Any]) -> str:
    """The markdown table; ``runs`` maps on, off and naive to their measurements."""
    on, off, naive = runs["on"], runs["off"], runs["naive"]
    ratio = local["serving_ms"] / local["bare_ms"]
    tp = {k: v["many"]["throughput"] for k, v in (("on", on), ("off", off), ("naive", naive))}
    memory = on["memory"]
    stats = on["stats"]
    codes = {k: v["many"]["codes"] for k, v in (("on", on), ("off", off), ("naive", naive))}
    rows = [
        *CHECK_HEADER,
        check_row(
            "in-process: serving path / bare tf.function <= 1.5x",
            f"{local['serving_ms']:.2f} ms / {local['bare_ms']:.2f} ms = {ratio:.2f}x",
            ratio <= 1.5,
        ),
        check_row(
            f"in-process: through the batcher ({args.batch_timeout_ms:g} ms window), info",
            f"{local['batcher_ms']:.2f} ms",
            None,
        ),
        check_row(
            "in-process, no HTTP, 32 concurrent callers: batching on / off, info",
            f"{local['pipeline_on']:.1f} / {local['pipeline_off']:.1f} images/s = "
            f"{local['pipeline_on'] / local['pipeline_off']:.2f}x",
            None,
        ),
    ]
    for key, label in (("on", "batching on"), ("off", "batching off"), ("naive", "naive")):
        one = {"on": on, "off": off, "naive": naive}[key]["one"]
        rows.append(
            check_row(
                f"/predict, 1 client, {label}: p50 / p99",
                f"{one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms ({one['requests']} requests)",
                None,
            )
        )
    for key, label in (("on", "batching on"), ("off", "batching off"), ("naive", "naive")):
        many = {"on": on, "off": off, "naive": naive}[key]["many"]
        rows.append(
            check_row(
                f"/predict, {args.clients} clients, {label}: throughput, p99",
                f"{many['throughput']:.1f} req/s, p99 {many['p99_ms']:.1f} ms "
                f"({many['requests']} requests, codes {codes[key]})",
                None,
            )
        )
    rows += [
        check_row(
            "throughput: batching on >= 3x batching off",
            f"{tp['on'] / tp['off']:.2f}x (batches of {stats['mean_batch']:.1f} images on "
            f"average, at most {stats['max_batch']})",
            tp["on"] >= 3 * tp["off"],
        ),
        check_row(
            "throughput: batching on >= 10x naive",
            f"{tp['on'] / tp['naive']:.2f}x",
            tp["on"] >= 10 * tp["naive"],
        ),
        check_row(
            f"API RSS with the cache full ({len(memory['cached'])} models) <= "
            f"{args.rss_bound_mb} MB",
            f"{memory['rss_full_mb']:.0f} MB",
            memory["rss_full_mb"] <= args.rss_bound_mb,
        ),
        check_row(
            f"RSS growth over {memory['requests']} requests < 5% (issue: 10,000; --requests)",
            f"{memory['rss_full_mb']:.0f} -> {memory['rss_after_mb']:.0f} MB "
            f"({memory['growth'] * 100:+.2f}%), codes {memory['codes']}",
            memory["growth"] < 0.05,
        ),
    ]
    return "\n".join(rows)


def bench_main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    root = Path(args.data_root) if args.data_root else Path(tempfile.mkdtemp(prefix="tinyres-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["TINYRES_DATA_ROOT"] = str(root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from core.config import Settings

    settings = Settings(data_root=root, batch_timeout_ms=args.batch_timeout_ms)
    try:
        images_dir = root / "bench-images"
        images = make_images(images_dir, 64)
        print(f"# registering {args.cache_size + 1} writeup-preset models under {root}", flush=True)
        ids = register_models(settings, args.cache_size + 1)
        print("# in-process latency", flush=True)
        local = in_process(settings, ids[-1], images, args.latency_requests)
        print("# API, batching on", flush=True)
        on = measure_api(args, root, images_dir, ids, batching=True)
        print("# API, batching off", flush=True)
        off = measure_api(args, root, images_dir, ids, batching=False)
        print("# naive app", flush=True)
        naive = measure_naive(args, root, images_dir)
        print()
        print(report(args, local, {"on": on, "off": off, "naive": naive}))
        print(f"\n{os.cpu_count()} CPUs; total {time.monotonic() - started:.0f} s")
        if args.json:
            Path(args.json).write_text(
                json.dumps({"local": local, "on": on, "off": off, "naive": naive}, indent=2)
            )
    finally:
        if not args.data_root and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.predict_bench", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests of the memory check (issue: 10000)"
    )
    parser.add_argument("--latency-requests", type=int, default=200)
    parser.add_argument("--throughput-requests", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=20, help="time limit of each load run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--cache-size", type=int, default=4, help="TINYRES_MODEL_CACHE_SIZE")
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    parser.add_argument("--rss-bound-mb", type=float, default=2048)
    parser.add_argument("--data-root", help="default: a temporary folder, removed at the end")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data root")
    parser.add_argument("--json", help="also write the raw measurements here")
    load = sub.add_parser("load", help="the load generator (run by the benchmark)")
    load.add_argument("--host", default="127.0.0.1")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--path", default="/predict")
    load.add_argument("--images", required=True)
    load.add_argument("--clients", type=int, default=1)
    load.add_argument("--requests", type=int, default=100)
    load.add_argument("--seconds", type=float, default=30)
    load.add_argument("--models", default="", help="comma-separated model ids to cycle through")
    parser.add_argument(
        "--quick", action="store_true", help="proves it runs: few requests, short runs (noisy)"
    )
    args = parser.parse_args(argv)
    if args.command == "load":
        load_main(args)
        return
    if args.quick:
        args.requests, args.latency_requests, args.throughput_requests = 200, 40, 300
        args.seconds, args.cache_size = 5.0, 1
    bench_main(args)


if __name__ == "__main__":
    main()
