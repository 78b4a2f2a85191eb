"""SIGTERM to the real API process (`python -m app`): it stops accepting connections, lets
the requests in flight finish, then exits, within uvicorn's `timeout_graceful_shutdown`
(set in app/__main__.py)."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.config import Settings
from tests.app.conftest import random_image, register_model
from tests.utils.services import REPO, free_port, service_env, stop_process_group, wait_for

pytestmark = pytest.mark.slow

# app/__main__.py: uvicorn.run(..., timeout_graceful_shutdown=10)
GRACEFUL_TIMEOUT = 10
# Each waiting /predict request waits this long for others to join its batch.
BATCH_TIMEOUT_MS = 1000


@dataclass
class Api:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def terminate(self) -> float:
        """Sends SIGTERM to the server process alone; returns when it was sent."""
        self.process.send_signal(signal.SIGTERM)
        return time.monotonic()


@contextmanager
def api(data_root: Path, log: Path, **extra: str) -> Iterator[Api]:
    """`python -m app` (the real entry point, with its shutdown settings) on a free port."""
    port = free_port()
    env = service_env(data_root, TINYRES_PORT=str(port), **extra)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Api(process, port, log)

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"API exited early: {log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60)
        yield server
    finally:
        stop_process_group(process)


def refused(port: int) -> bool:
    """Whether a new connection to `port` is refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def multipart(image: bytes) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x", files={"image": ("x.jpg", image)})
    return request.read(), request.headers["Content-Type"]


class SlowUpload:
    """A POST /predict whose body arrives in two halves, with a pause between them."""

    def __init__(self, port: int, image: bytes) -> None:
        self.body, content_type = multipart(image)
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.putrequest("POST", "/predict")
        self.connection.putheader("Content-Type", content_type)
        self.connection.putheader("Content-Length", str(len(self.body)))
        self.connection.endheaders()
        self.half = len(self.body) // 2
        self.connection.send(self.body[: self.half])

    def finish(self) -> tuple[int, dict[str, Any] | str]:
        self.connection.send(self.body[self.half :])
        answer = self.connection.getresponse()
        data = answer.read()
        self.connection.close()
        try:
            return answer.status, json.loads(data)
        except ValueError:
            return answer.status, data.decode(errors="replace")


def test_sigterm_drains_in_flight_requests_then_exits(
    data_root: Path, model_file: Path, tmp_path: Path
) -> None:
    model_id = register_model(Settings(data_root=data_root), model_file)
    log = tmp_path / "api.log"
    with api(data_root, log, TINYRES_BATCH_TIMEOUT_MS=str(BATCH_TIMEOUT_MS)) as server:
        with httpx.Client(base_url=server.base, timeout=120) as http:
            warm = http.post("/predict", files={"image": ("x.jpg", random_image(0))})
            assert warm.status_code == 200, warm.text  # TensorFlow and the model are loaded

        # In flight 1: an upload half sent. In flight 2: a request waiting in the batcher.
        upload = SlowUpload(server.port, random_image(1))
        waiting: dict[str, httpx.Response] = {}

        def predict() -> None:
            with httpx.Client(base_url=server.base, timeout=60) as http:
                waiting["answer"] = http.post("/predict", files={"image": ("y", random_image(2))})

        thread = threading.Thread(target=predict)
        thread.start()

        def batcher_has_it() -> bool:
            with httpx.Client(base_url=server.base, timeout=5) as http:
                return bool(http.get("/predict/stats").json()["waiting"] >= 1)

        wait_for(batcher_has_it, timeout=10, interval=0.05)
        sent = server.terminate()

        # New connections are refused while the two requests are still in flight.
        wait_for(lambda: refused(server.port), timeout=3, interval=0.05)
        assert server.process.poll() is None, "exited before draining"
        thread.join(30)
        assert waiting["answer"].status_code == 200, waiting["answer"].text
        assert waiting["answer"].json()["model"] == model_id
        assert server.process.poll() is None, "exited with an upload in flight"

        status, body = upload.finish()  # the rest of the body, seconds after SIGTERM
        assert status == 200, body
        assert isinstance(body, dict) and body["model"] == model_id
        assert len(body["predictions"]) == 3

        server.process.wait(GRACEFUL_TIMEOUT + 5)
        exited = time.monotonic() - sent
        assert refused(server.port)
    assert exited < GRACEFUL_TIMEOUT, exited
    # uvicorn re-raises the SIGTERM it handled once it has shut down.
    assert server.process.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]
    text = log.read_text()
    assert "Waiting for connections to close" in text
    assert "Application shutdown complete" in text
    assert "timeout graceful shutdown exceeded" not in text


def test_a_request_that_never_finishes_does_not_hold_the_exit(
    data_root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "api.log"
    with api(data_root, log) as server:
        stuck = SlowUpload(server.port, random_image(0))  # never sends the rest
        time.sleep(0.3)
        sent = server.terminate()
        wait_for(lambda: refused(server.port), timeout=3, interval=0.05)
        server.process.wait(GRACEFUL_TIMEOUT + 10)
        exited = time.monotonic() - sent
        stuck.connection.close()
    assert GRACEFUL_TIMEOUT - 1 < exited < GRACEFUL_TIMEOUT + 5, exited
    text = log.read_text()
    assert "timeout graceful shutdown exceeded" in text
    assert "Application shutdown complete" in text
