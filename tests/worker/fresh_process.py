"""Running a script in a fresh interpreter, for state that one process can set only once
(TensorFlow's logical devices, the worker's shutdown flag)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.utils.services import REPO, service_env


def run_script(script: str, data_root: Path, *args: str, timeout: float = 300) -> str:
    """Run `script` with `args` on `data_root`; return what it printed after ``RESULT ``."""
    run = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env=service_env(data_root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, run.stdout[-3000:] + run.stderr[-3000:]
    return lines[0].removeprefix("RESULT ")
