"""Starting and stopping service processes: a free port, an HTTP server that answers
``/healthz``, and stopping a whole process group. Used by the benchmarks and the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM to the process's group, SIGKILL after `timeout` seconds; reaps it."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


@contextmanager
def http_server(
    command: list[str], env: dict[str, str], port: int, *, log: Path, timeout: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` (a server on `port`) in its own process group until it answers
    ``GET /healthz`` with 200; stop it at the end. Raises RuntimeError, with the end of
    `log`, if it exits or does not answer within `timeout` seconds."""
    import httpx

    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited early: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield process
    finally:
        stop_process_group(process)
