"""``bench.gpu_train --smoke`` as the GPU machine runs it: Keras on JAX, TensorFlow unimportable.

The GPU machine has JAX but no TensorFlow, so the bench must never import it. Here TensorFlow
is installed; a ``sitecustomize`` put first on ``PYTHONPATH`` makes every process of the run
(the bench starts one child per row) refuse to import it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_train import speed_row, table_row

ROOT = Path(__file__).resolve().parents[2]

BLOCK_TENSORFLOW = '''
import sys


class _NoTensorFlow:
    """Refuses ``tensorflow`` and its submodules, as on a machine without it."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("tensorflow is blocked by the smoke test's sitecustomize")
        return None


sys.meta_path.insert(0, _NoTensorFlow())
'''


def _require_jax() -> None:
    if importlib.util.find_spec("jax") is not None:
        return
    reason = "jax is not installed: pip install 'jax[cpu]' (in the dev extra)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run this test")
    pytest.skip(reason)


def test_speed_row_and_table_row() -> None:
    row = speed_row(steps=100, seconds=2.0, batch=512)
    assert row["ms_per_step"] == pytest.approx(20.0)
    assert row["images_per_s"] == pytest.approx(25_600.0)
    assert row["epoch_seconds"] == pytest.approx(196 * 0.020)  # ceil(100,000 / 512) steps
    assert row["vs_step"] == pytest.approx(924.0 / 20.0)
    line = table_row({"row": "writeup", "precision": "bf16", "batch": 512, **row})
    assert line.startswith("| writeup | bf16 | 512 | 25,600 | 20.0 | 3.9 | 46.2x | 175.0x |")
    assert table_row({"row": "train", "notes": "a | b"}).count("|") == 11


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.timeout(420)
def test_smoke_runs_on_jax_without_tensorflow(tmp_path: Path) -> None:
    _require_jax()
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    out = tmp_path / "gpu.md"
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]),
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_train", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = out.read_text()
    assert "jax backend" in table
    assert "TensorFlow was not imported by the JAX rows" in table
    # The hook worked: the bench saw TensorFlow as unimportable and left the tf.data rows out.
    assert "tf.data rows: skipped (TensorFlow cannot be imported" in table
    assert re.search(r"^\| host pipeline \(NumPy\) \| — \| 8 \| [\d,]+ \|", table, re.M)
    for precision in ("bf16", "float32"):
        row = re.search(
            rf"^\| smoke net \(numpy\) \| {precision} \| 8 \| [\d,]+ \| [\d.,]+ \|", table, re.M
        )
        assert row, table
    assert "error" not in table, table
