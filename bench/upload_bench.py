"""Upload throughput: a tus upload (tuspy) of a large archive to the real API over loopback,
against a plain streamed HTTP PUT of the same file to a minimal ASGI endpoint (uvicorn,
body streamed to disk), in the same run; and the API process's peak RSS growth.

    .venv/bin/python -m bench.upload_bench --size-mb 1024

The archive is a .tar of incompressible random "images" (so the archive check reads every
byte), written once under a temporary folder. Both servers write to the same disk.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx
import psutil

from bench.harness import server
from tools.processes import REPO, free_port

MEMBER_BYTES = 4 * 1024 * 1024

PUT_SERVER = """
import os, sys, uvicorn
target = sys.argv[2]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            message = await receive()
            if message.get("body"):
                os.write(fd, message["body"])
            if not message.get("more_body"):
                break
        os.fsync(fd)
    finally:
        os.close(fd)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def make_archive(path: Path, size_mb: int) -> Path:
    remaining = size_mb * 1024 * 1024
    with tarfile.open(path, "w") as archive:
        index = 0
        while remaining > 0:
            data = os.urandom(min(MEMBER_BYTES, remaining))
            info = tarfile.TarInfo(f"bench/class_{index % 10}/img_{index:06d}.jpg")
            info.size = len(data)
            archive.addfile(info, _Reader(data))
            remaining -= len(data)
            index += 1
    return path


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        chunk, self.pos = self.data[self.pos : end], min(end, len(self.data))
        return chunk


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread; `growth` is peak minus start."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.start


def api_pid(port: int) -> int:
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
            return conn.pid
    raise RuntimeError(f"no process listens on {port}")


def tus_upload(base: str, path: Path, chunk_mb: int) -> float:
    from tusclient import client

    uploader = client.TusClient(f"{base}/uploads").uploader(
        str(path),
        chunk_size=chunk_mb * 1024 * 1024,
        metadata={"name": f"bench{time.monotonic_ns()}", "filename": path.name},
    )
    started = time.perf_counter()
    uploader.upload()
    return time.perf_counter() - started


def put_upload(path: Path, folder: Path) -> float:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", PUT_SERVER, str(port), str(folder / "put.bin")], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if time.monotonic() > deadline:
                raise RuntimeError("the PUT server did not start")
            time.sleep(0.2)
        started = time.perf_counter()
        with path.open("rb") as body:
            answer = httpx.put(f"http://127.0.0.1:{port}/", content=_chunks(body), timeout=None)
        elapsed = time.perf_counter() - started
        answer.raise_for_status()
        return elapsed
    finally:
        server.terminate()
        server.wait(10)


def _chunks(body: BinaryIO) -> Iterator[bytes]:
    while chunk := body.read(1024 * 1024):
        yield chunk


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--chunk-mb", type=int, default=64, help="tus PATCH size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tinyres-upload-bench-") as temp:
        folder = Path(temp)
        archive = make_archive(folder / "bench.tar", args.size_mb)
        size_mb = archive.stat().st_size / 1e6
        put_seconds = put_upload(archive, folder)
        (folder / "put.bin").unlink()
        limit = str(10 * archive.stat().st_size)
        with server(
            folder / "data",
            folder / "api.log",
            TINYRES_MAX_ARCHIVE_BYTES=limit,
            TINYRES_MAX_UPLOAD_BYTES_DATASET=limit,
        ) as (port, _pid):
            base = f"http://127.0.0.1:{port}"
            rss = PeakRss(api_pid(port))
            tus_seconds = tus_upload(base, archive, args.chunk_mb)
            growth = rss.stop()
    put_rate, tus_rate = size_mb / put_seconds, size_mb / tus_seconds
    print(f"archive: {size_mb:.0f} MB (.tar), tus chunk {args.chunk_mb} MiB")
    print("| upload | seconds | MB/s | ratio to PUT |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| plain streamed PUT (minimal ASGI) | {put_seconds:.2f} | {put_rate:.0f} | 1.00 |")
    print(
        f"| tus (tuspy -> tinyres, incl. archive check) | {tus_seconds:.2f} | {tus_rate:.0f} "
        f"| {tus_rate / put_rate:.2f} |"
    )
    print(f"API peak RSS growth during the tus upload: {growth / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
