"""`make run` survives a dead process: each kind is SIGKILLed (as the OOM killer would) and
restarted by supervisord while the others and the API stay up; SIGTERM then stops all of
them, each within 10 s."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.utils.services import REPO, free_port, service_env, wait_for

pytestmark = pytest.mark.chaos

# How each program of deploy/supervisord.conf shows in `ps`.
KINDS = {
    "api": "-m app",
    "datasets": "--queues datasets",
    "training": "--queues training",
}


def _main_process(root: psutil.Process, marker: str) -> psutil.Process | None:
    """The program's own process: a direct child of supervisord."""
    for child in root.children():
        try:
            if marker in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _answers(base: str, path: str) -> bool:
    try:
        return httpx.get(f"{base}{path}", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _supervisord(make: subprocess.Popen[bytes]) -> psutil.Process:
    def find() -> psutil.Process | None:
        for child in psutil.Process(make.pid).children(recursive=True):
            if "supervisord" in " ".join(child.cmdline()):
                return child
        return None

    found = wait_for(find, timeout=30)
    assert isinstance(found, psutil.Process)
    return found


def test_each_process_kind_is_restarted_and_sigterm_stops_all(
    data_root: Path, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "make-run.log"
    with log.open("ab") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=REPO,
            env=service_env(data_root, TINYRES_PORT=str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _answers(base, "/readyz"), timeout=120)
        root = _supervisord(make)
        for kind, marker in KINDS.items():
            before = _main_process(root, marker)
            assert before is not None, f"no {kind} process under supervisord"
            before.send_signal(signal.SIGKILL)
            before.wait(timeout=10)

            def replaced(marker: str = marker, old: int = before.pid) -> bool:
                now = _main_process(root, marker)
                return now is not None and now.pid != old

            wait_for(replaced, timeout=60)
            if kind != "api":
                assert _answers(base, "/healthz"), f"API went down when {kind} was killed"
            wait_for(lambda: _answers(base, "/readyz"), timeout=60)
        assert make.poll() is None, "make run ended when a child died"
    finally:
        children = psutil.Process(make.pid).children(recursive=True)
        started = time.monotonic()
        make.send_signal(signal.SIGTERM)
        _gone, alive = psutil.wait_procs(children, timeout=15)
        took = time.monotonic() - started
        for leftover in alive:
            leftover.kill()
        make.wait(timeout=30)
    assert alive == [], f"still running 15 s after SIGTERM: {alive}\n{log.read_text()[-3000:]}"
    assert took < 12, f"stopping took {took:.1f} s"
