"""The network under both Keras backends: train, save, load, and swap backends.

Keras fixes its backend at import, so each backend runs in a fresh interpreter with
``KERAS_BACKEND`` set. A ``.keras`` file written under one backend must load under the
other, with its random state, and give the same probabilities.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

ROOT = Path(__file__).resolve().parents[2]

# argv: the file to write, then optionally a file written by the other backend to check.
SCRIPT = """
import json, sys
from types import SimpleNamespace
import keras
import numpy as np
from model.resnet import build_resnet

out, other = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
labels = np.arange(8) % 3
report = {"backend": keras.backend.backend()}

def probabilities(model):
    logits = model(images, training=False)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits))

def compiled(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model

if other:
    loaded = keras.saving.load_model(other)  # compiled, with its optimizer
    expected = np.load(other + ".npy")
    report["max_difference"] = float(np.abs(probabilities(loaded) - expected).max())
    report["loaded_state"] = keras.ops.convert_to_numpy(loaded.flip.seed_generator.state).tolist()
    loaded.fit(images, labels, batch_size=4, epochs=1, verbose=0, shuffle=False)
    report["trained_state"] = keras.ops.convert_to_numpy(loaded.crop.seed_generator.state).tolist()

keras.utils.set_random_seed(1)
model = compiled(build_resnet(3, SimpleNamespace(width=8, levels=[1, 1]), crop_padding=2, seed=7))
history = model.fit(images, labels, batch_size=4, epochs=2, verbose=0, shuffle=False)
report["losses"] = [float(v) for v in history.history["loss"]]
model.save(out)
np.save(out + ".npy", probabilities(model))
print("RESULT " + json.dumps(report))
"""


def _run(backend: str, *files: Path) -> dict:
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": str(ROOT),
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, *map(str, files)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(lines[0].removeprefix("RESULT "))


@pytest.mark.timeout(900)  # three fresh interpreters, each importing Keras and tracing
def test_keras_files_move_between_tensorflow_and_jax(tmp_path: Path) -> None:
    tf_file, jax_file, tf_again = (tmp_path / f"{n}.keras" for n in ("tf", "jax", "tf2"))
    first = _run("tensorflow", tf_file)
    second = _run("jax", jax_file, tf_file)
    third = _run("tensorflow", tf_again, jax_file)
    assert [r["backend"] for r in (first, second, third)] == ["tensorflow", "jax", "tensorflow"]
    for report in (first, second, third):
        # Trains under either backend: 2 epochs of 2 steps.
        assert len(report["losses"]) == 2 and all(0 < v < 10 for v in report["losses"])
    for report in (second, third):
        assert report["max_difference"] < 1e-4
        # 4 training steps drew 4 times; the loaded model continues from there.
        assert report["loaded_state"] == [7, 4] and report["trained_state"] == [8, 6]
