"""Load test of the API: /predict mixed with job polling, below and beyond admission.

Run from the repository root: ``python -m bench.load_bench`` (see ``--help``). Not part of
the tests. About two minutes by default; ``--phase-seconds 120`` makes it a few minutes.

A real uvicorn API (``python -m app``) serves a small model (width 16, 10 classes; or
``--model writeup``: the write-up's network, 200 classes) with a
small ``TINYRES_PREDICT_QUEUE_SIZE`` (``--queue-size``). The job store holds a few dozen
jobs in every state. A load generator
in another process (``load`` subcommand: asyncio, keep-alive HTTP/1.1 connections, the
request builders of ``bench.harness``) runs closed-loop clients that send a mix of
``POST /predict``, ``GET /jobs`` and ``GET /jobs/{id}`` (``--mix``), each request with a
client timeout (``--timeout``). Meanwhile this process scrapes ``GET /metrics`` every few
seconds, as Prometheus would.

1. Phase 1, below the admission limit: ``--below-clients`` clients, fewer than the queue
   size, so no /predict can be refused. Target: no errors at all.
2. Phase 2, beyond it: ``--above-clients`` clients, several times the queue size, retrying
   at once when refused. Targets: some 503s (the limit was reached), every 503 with
   ``Retry-After``, no other error status (no other 5xx, no 4xx), no timeouts or broken
   connections; the server's ``tinyres_predict_rejected_total`` equals the 503s seen.
3. Resident memory of the API at start (after a warm-up, the model loaded) and at the end.
   Target: growth below 10%.

It prints a markdown table: p50/p99 per endpoint and phase, error counts by status, and one
row per target with PASS/FAIL; ``--out FILE`` also writes it there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

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

ENDPOINTS = {"predict": "POST /predict", "jobs": "GET /jobs", "job": "GET /jobs/{id}"}


def _models() -> dict[str, tuple[int, Any]]:
    from core.architecture import ArchitectureConfig
    from core.train_config import preset_architecture

    return {
        # A small ResNet (width 16, levels [1, 1]), 10 classes.
        "small": (10, ArchitectureConfig(width=16, levels=[1, 1])),
        # The write-up's network, 200 classes.
        "writeup": (200, preset_architecture("writeup")),
    }


MODELS = _models()


# --------------------------------------------------------------------- the load generator


def _get(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """Status code and headers (lower-case names) of one response; its body is skipped."""
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("the server closed the connection")
    status = int(line.split()[1])
    headers: dict[bytes, bytes] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers


def _parse_mix(mix: str) -> tuple[list[str], list[float]]:
    weights = dict(part.split("=") for part in mix.split(","))
    unknown = set(weights) - set(ENDPOINTS)
    if unknown:
        raise SystemExit(f"--mix: unknown endpoints {sorted(unknown)}; known: {list(ENDPOINTS)}")
    return list(weights), [float(w) for w in weights.values()]


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    host, port = args.host, args.port
    images = [p.read_bytes() for p in sorted(Path(args.images).glob("*.jpg"))]
    predicts = [
        post_request(host, port, "/predict", multipart_body(image, None)) for image in images
    ]
    job_ids = args.jobs.split(",")
    gets = {
        "jobs": [_get(host, port, "/jobs")],
        "job": [_get(host, port, f"/jobs/{job_id}") for job_id in job_ids],
    }
    kinds, weights = _parse_mix(args.mix)
    latencies: dict[tuple[str, int], list[float]] = defaultdict(list)
    failures: Counter[str] = Counter()
    no_retry_after = 0
    deadline = time.monotonic() + args.seconds

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    async def client(number: int) -> None:
        nonlocal no_retry_after
        rng = random.Random(number)
        reader, writer = await connect()
        try:
            while time.monotonic() < deadline:
                kind = rng.choices(kinds, weights)[0]
                options = predicts if kind == "predict" else gets[kind]
                data = options[rng.randrange(len(options))]
                start = time.perf_counter()
                try:
                    writer.write(data)
                    await writer.drain()
                    status, headers = await asyncio.wait_for(_read_answer(reader), args.timeout)
                except TimeoutError:
                    failures[f"{kind}: timeout"] += 1
                    writer.close()
                    reader, writer = await connect()
                    continue
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    failures[f"{kind}: {type(exc).__name__}"] += 1
                    writer.close()
                    reader, writer = await connect()
                    continue
                latencies[(kind, status)].append(time.perf_counter() - start)
                if status == 503 and not headers.get(b"retry-after", b"").isdigit():
                    no_retry_after += 1
                if headers.get(b"connection", b"").lower() == b"close":
                    writer.close()
                    reader, writer = await connect()
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(args.clients)))
    elapsed = time.perf_counter() - start
    endpoints: dict[str, Any] = {}
    for kind in kinds:
        codes = {status: len(v) for (k, status), v in sorted(latencies.items()) if k == kind}
        ok = latencies.get((kind, 200), [])
        p50, p99 = np.quantile(ok, [0.5, 0.99]) * 1000 if ok else (float("nan"),) * 2
        refused = latencies.get((kind, 503), [])
        endpoints[kind] = {
            "requests": sum(codes.values()),
            "codes": {str(k): v for k, v in codes.items()},
            "p50_ms": float(p50),
            "p99_ms": float(p99),
            "p99_503_ms": float(np.quantile(refused, 0.99) * 1000) if refused else None,
        }
    return {
        "clients": args.clients,
        "seconds": elapsed,
        "endpoints": endpoints,
        "failures": dict(failures),
        "no_retry_after": no_retry_after,
    }


def load_main(args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(_load(args))))


# ------------------------------------------------------------------------ the benchmark


def _make_jobs(settings: Any, count: int) -> list[str]:
    """``count`` jobs in every state (two running, holding leases) for the pollers."""
    from core.jobs import JobState, JobStore

    store = JobStore(settings.effective_database_url)
    ids = []
    for i in range(count):
        job = store.create("train" if i % 2 else "shard", {"dataset": f"bench{i}", "epochs": 3})
        ids.append(job.id)
        if i % 5 == 1:
            store.claim(job.id, "bench-worker", lease_seconds=3600, max_attempts=3)
        elif i % 5 == 2:
            store.finish(job.id, JobState.SUCCEEDED, result={"n": i})
        elif i % 5 == 3:
            store.finish(job.id, JobState.FAILED, error="bench")
        elif i % 5 == 4:
            store.request_cancel(job.id)
    store.engine.dispose()
    return ids


def _scrape(port: int) -> tuple[float, dict[str, float]]:
    """Seconds one GET /metrics took, and its tinyres_* and http_requests_total samples."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    start = time.perf_counter()
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    seconds = time.perf_counter() - start
    answer.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name.startswith(("tinyres_", "http_requests_total")):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
    return seconds, samples


def run_phase(
    args: argparse.Namespace, port: int, images: Path, jobs: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    """The load generator in its own process for ``seconds``, scraped meanwhile."""
    command = [sys.executable, "-m", "bench.load_bench", "load", "--port", str(port)]
    command += ["--images", str(images), "--clients", str(clients), "--seconds", str(seconds)]
    command += ["--jobs", ",".join(jobs), "--mix", args.mix, "--timeout", str(args.timeout)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    scrapes: list[float] = []
    waiting_max = 0.0
    while process.poll() is None:
        time.sleep(args.scrape_interval)
        if process.poll() is not None:
            break
        took, samples = _scrape(port)
        scrapes.append(took)
        waiting_max = max(waiting_max, samples.get("tinyres_predict_waiting{}", 0.0))
    out, _ = process.communicate(timeout=seconds + 120)
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed ({process.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["scrape_ms_max"] = max(scrapes) * 1000 if scrapes else float("nan")
    result["scrapes"] = len(scrapes)
    result["waiting_max"] = waiting_max
    return result


def _errors(phase: dict[str, Any]) -> Counter[str]:
    """Non-200 answers and failures, by status (``503``) or kind (``timeout``)."""
    errors: Counter[str] = Counter()
    for endpoint in phase["endpoints"].values():
        for code, count in endpoint["codes"].items():
            if code != "200":
                errors[code] += count
    for name, count in phase["failures"].items():
        errors[name.split(": ", 1)[1]] += count
    return errors


def _fmt_errors(errors: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none"


def report(args: argparse.Namespace, result: dict[str, Any]) -> str:
    below, above = result["below"], result["above"]
    rows = [*CHECK_HEADER]
    for name, phase in (("phase 1", below), ("phase 2", above)):
        total = sum(e["requests"] for e in phase["endpoints"].values())
        rows.append(
            check_row(
                f"{name}: {phase['clients']} clients, {phase['seconds']:.0f} s, info",
                f"{total} requests ({total / phase['seconds']:.0f}/s); at most "
                f"{phase['waiting_max']:.0f} /predict waiting (limit {args.queue_size}); "
                f"{phase['scrapes']} scrapes of /metrics, slowest "
                f"{phase['scrape_ms_max']:.0f} ms",
                None,
            )
        )
        for kind, endpoint in phase["endpoints"].items():
            codes = ", ".join(f"{c}: {n}" for c, n in endpoint["codes"].items())
            refused = f"; 503 p99 {endpoint['p99_503_ms']:.1f} ms" if endpoint["p99_503_ms"] else ""
            rows.append(
                check_row(
                    f"{name}: {ENDPOINTS[kind]} p50 / p99 (of 200s), info",
                    f"{endpoint['p50_ms']:.1f} / {endpoint['p99_ms']:.1f} ms ({codes}){refused}",
                    None,
                )
            )
    below_errors, above_errors = _errors(below), _errors(above)
    other = {k: v for k, v in above_errors.items() if k != "503"}
    predict_503 = above["endpoints"].get("predict", {}).get("codes", {}).get("503", 0)
    rejected = result["rejected_total"]
    growth = (result["rss_end_mb"] - result["rss_start_mb"]) / result["rss_start_mb"]
    rows += [
        check_row(
            f"phase 1 ({below['clients']} clients < queue size {args.queue_size}): error rate 0",
            f"errors: {_fmt_errors(below_errors)}",
            not below_errors,
        ),
        check_row(
            f"phase 2 ({above['clients']} clients > queue size {args.queue_size}): "
            "the limit is reached (some 503s)",
            f"{predict_503} answers 503 to /predict",
            predict_503 > 0,
        ),
        check_row(
            "phase 2: the only errors are 503s (no other 5xx or 4xx, no timeouts, "
            "no broken connections)",
            f"errors: {_fmt_errors(above_errors)}",
            not other,
        ),
        check_row(
            "phase 2: every 503 has Retry-After",
            f"{above['no_retry_after']} of {above_errors['503']} without",
            above["no_retry_after"] == 0,
        ),
        check_row(
            "phase 2: server's tinyres_predict_rejected_total == 503s the clients saw",
            f"{rejected:.0f} == {predict_503}",
            rejected == predict_503,
        ),
        check_row(
            f"API resident memory growth < 10% (start: after warm-up; launch "
            f"{result['rss_launch_mb']:.0f} MB, info)",
            f"{result['rss_start_mb']:.0f} -> {result['rss_end_mb']:.0f} MB ({growth * 100:+.1f}%)",
            growth < 0.10,
        ),
    ]
    return "\n".join(rows)


def bench_main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    root = Path(args.data_root) if args.data_root else Path(tempfile.mkdtemp(prefix="tinyres-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from core.config import Settings

    settings = Settings(data_root=root)
    try:
        images = root / "bench-images"
        make_images(images, 32)
        print(f"# a {args.model} model and {args.jobs} jobs under {root}", flush=True)
        register_model(settings, *MODELS[args.model])
        jobs = _make_jobs(settings, args.jobs)
        env = {
            "TINYRES_PREDICT_QUEUE_SIZE": str(args.queue_size),
            "TINYRES_BATCH_TIMEOUT_MS": str(args.batch_timeout_ms),
        }
        result: dict[str, Any] = {}
        with server(root, root / "api.log", **env) as (port, pid):
            result["rss_launch_mb"] = rss_mb(pid)
            print("# warm-up", flush=True)
            run_phase(args, port, images, jobs, args.below_clients, args.warmup_seconds)
            run_phase(args, port, images, jobs, args.above_clients, args.warmup_seconds)
            result["rss_start_mb"] = rss_mb(pid)
            _, before = _scrape(port)
            print(f"# phase 1: {args.below_clients} clients, {args.phase_seconds:g} s", flush=True)
            result["below"] = run_phase(
                args, port, images, jobs, args.below_clients, args.phase_seconds
            )
            _, between = _scrape(port)
            print(f"# phase 2: {args.above_clients} clients, {args.phase_seconds:g} s", flush=True)
            result["above"] = run_phase(
                args, port, images, jobs, args.above_clients, args.phase_seconds
            )
            _, after = _scrape(port)
            result["rss_end_mb"] = rss_mb(pid)
        key = "tinyres_predict_rejected_total{}"
        result["rejected_total"] = after[key] - between[key]  # refusals of phase 2
        result["below"]["rejected_total"] = between[key] - before[key]
        table = report(args, result)
        print()
        print(table)
        footer = (
            f"\n{os.cpu_count()} CPUs; {args.model} model; queue size {args.queue_size}; "
            f"mix {args.mix}; total {time.monotonic() - started:.0f} s"
        )
        print(footer)
        if args.out:
            Path(args.out).write_text(table + "\n" + footer + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
    finally:
        if not args.data_root and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--phase-seconds", type=float, default=50, help="length of each phase")
    parser.add_argument("--warmup-seconds", type=float, default=5, help="each warm-up run")
    parser.add_argument("--queue-size", type=int, default=8, help="TINYRES_PREDICT_QUEUE_SIZE")
    parser.add_argument("--below-clients", type=int, default=4, help="phase 1 clients")
    parser.add_argument("--above-clients", type=int, default=32, help="phase 2 clients")
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    parser.add_argument("--model", choices=sorted(MODELS), default="small")
    parser.add_argument("--jobs", type=int, default=40, help="jobs in the store to poll")
    parser.add_argument("--mix", default="predict=2,jobs=1,job=1", help="request weights")
    parser.add_argument("--timeout", type=float, default=10, help="client timeout, seconds")
    parser.add_argument("--scrape-interval", type=float, default=5, help="seconds")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--json", help="also write the raw measurements here")
    parser.add_argument("--data-root", help="default: a temporary folder, removed at the end")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data root")
    load = sub.add_parser("load", help="the load generator (run by the benchmark)")
    load.add_argument("--host", default="127.0.0.1")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--images", required=True)
    load.add_argument("--clients", type=int, default=1)
    load.add_argument("--seconds", type=float, default=30)
    load.add_argument("--jobs", required=True, help="comma-separated job ids to poll")
    load.add_argument("--mix", default="predict=2,jobs=1,job=1")
    load.add_argument("--timeout", type=float, default=10)
    parser.add_argument(
        "--quick", action="store_true", help="proves it runs: 5 s phases, 10 jobs (noisy)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.phase_seconds, args.warmup_seconds, args.jobs, args.scrape_interval = 5, 2, 10, 2
    if args.command == "load":
        load_main(args)
    else:
        if args.below_clients >= args.queue_size:
            parser.error("--below-clients must be below --queue-size (phase 1 is below it)")
        if args.above_clients <= args.queue_size:
            parser.error("--above-clients must exceed --queue-size (phase 2 is beyond it)")
        bench_main(args)


if __name__ == "__main__":
    main()
