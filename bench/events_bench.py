"""Event fan-out: many `GET /jobs/{id}/events` streams on one running job, one API process.

A writer changes the job's progress in the store 4 times a second (each change carries its
wall-clock time); every stream measures the delay from that change to its event. The API
process counts its own store queries (a SQLAlchemy hook, written to a file) and its RSS is
read with psutil. Each row is compared with a baseline of 1 stream measured in the same run.

    .venv/bin/python -m bench.events_bench [--streams 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from httpx_sse import aconnect_sse

REPO = Path(__file__).resolve().parents[1]


def serve(port: int, counter: Path) -> None:
    """The API with a count of its store queries (the bench's API process)."""
    import uvicorn
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    count = [0]

    @event.listens_for(Engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        count[0] += 1

    def dump() -> None:
        while True:
            counter.write_text(str(count[0]))
            time.sleep(0.2)

    threading.Thread(target=dump, daemon=True).start()
    uvicorn.run("app.main:app", host="127.0.0.1", port=port, log_level="warning")


async def _stream(
    client: httpx.AsyncClient,
    job_id: str,
    delays: list[float],
    stop: asyncio.Event,
    connected: list[int],
) -> None:
    async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
        connected[0] += 1
        async for sse in source.aiter_sse():
            if sse.event == "progress" and sse.data:
                sent = json.loads(sse.data)["progress"].get("t")
                if sent is not None:
                    delays.append(time.time() - sent)
            if stop.is_set() or sse.event == "end":
                return


def _write(store: Any, job_id: str, seconds: float, stop: threading.Event) -> None:
    steps = int(seconds * 4)
    for step in range(1, steps + 1):
        store.update_job(job_id, progress={"fraction": step / (steps + 1), "t": time.time()})
        time.sleep(0.25)
    stop.set()


def _queries(counter: Path) -> int:
    return int(counter.read_text() or 0)


async def phase(
    base: str, store: Any, streams: int, seconds: float, counter: Path, api: psutil.Process
) -> dict[str, Any]:
    from core.jobs import JobState

    job = store.create("train", {"dataset": "bench"})
    store.claim(job.id, "bench", 600, 3)
    delays: list[float] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=streams + 10)
    client = httpx.AsyncClient(base_url=base, timeout=60, limits=limits)
    connected = [0]
    tasks = [
        asyncio.create_task(_stream(client, job.id, delays, stop, connected))
        for _ in range(streams)
    ]
    while connected[0] < streams:  # every stream open (and its first events read)
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)
    rss_before = api.memory_info().rss
    queries_before, started = _queries(counter), time.monotonic()
    done = threading.Event()
    writer = threading.Thread(target=_write, args=(store, job.id, seconds, done))
    writer.start()
    while not done.is_set():
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    elapsed = time.monotonic() - started
    queries = _queries(counter) - queries_before
    rss_after = api.memory_info().rss
    stop.set()
    store.finish(job.id, JobState.SUCCEEDED)
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await client.aclose()
    delays.sort()
    return {
        "streams": streams,
        "events": len(delays),
        "p50_ms": 1000 * delays[len(delays) // 2],
        "p99_ms": 1000 * delays[min(int(len(delays) * 0.99), len(delays) - 1)],
        "queries_per_s": queries / elapsed,
        "rss_mb": rss_after / 1e6,
        "rss_growth_mb": (rss_after - rss_before) / 1e6,
    }


def _print(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    print(
        "| streams | events | p50 delay ms | p99 delay ms | store queries/s (x baseline) "
        "| API RSS MB | RSS vs 1 stream MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        ratio = row["queries_per_s"] / base["queries_per_s"] if base["queries_per_s"] else 0
        growth = row["rss_mb"] - base["rss_mb"]
        print(
            f"| {row['streams']} | {row['events']} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | "
            f"{row['queries_per_s']:.1f} ({ratio:.2f}x) | {row['rss_mb']:.0f} | {growth:+.1f} |"
        )


async def main_async(streams: int, seconds: float) -> None:
    from core.jobs import JobStore
    from tools.processes import free_port

    root = Path(tempfile.mkdtemp(prefix="events-bench-"))
    counter = root / "queries.txt"
    counter.write_text("0")
    port = free_port()
    env = {**os.environ, "TINYRES_DATA_ROOT": str(root), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "bench.events_bench", "--serve", str(port), str(counter)]
    process = subprocess.Popen(command, cwd=REPO, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        store = JobStore(f"sqlite:///{root / 'tinyres.sqlite'}")
        api = psutil.Process(process.pid)
        rows = [await phase(base, store, n, seconds, counter, api) for n in (1, streams)]
        _print(rows)
    finally:
        process.terminate()
        process.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "COUNTER"))
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return
    asyncio.run(main_async(args.streams, args.seconds))


if __name__ == "__main__":
    main()
