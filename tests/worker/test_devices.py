"""What `worker.devices` picks on this CPU-only machine, with and without the settings, under
TensorFlow (this process) and JAX (a fresh interpreter: the backend is chosen once per
process), and how a worker chooses its Keras backend."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keras
import pytest

from core.config import Settings
from tests.utils.services import REPO, service_env
from worker.devices import (
    accelerators,
    configure_devices,
    precision_policy,
    use_mixed_precision,
    use_xla,
)


@pytest.fixture
def float32_after() -> Iterator[None]:
    yield
    keras.mixed_precision.set_global_policy("float32")  # other tests build float32 models


def test_on_a_cpu_tensorflow_trains_in_float32_without_xla_on_one_replica(
    float32_after: None,
) -> None:
    settings = Settings()
    assert keras.backend.backend() == "tensorflow"
    assert accelerators() == 0
    assert use_xla(settings) is False
    assert use_mixed_precision(settings) is False and precision_policy(settings) == "float32"
    placement = configure_devices(settings)
    assert placement.num_replicas_in_sync == 1
    assert keras.mixed_precision.global_policy().name == "float32"
    with placement.scope():
        assert keras.layers.Dense(2).dtype_policy.name == "float32"


def test_the_settings_switch_xla_and_bfloat16_on(float32_after: None) -> None:
    settings = Settings(xla=True, mixed_precision=True)
    assert use_xla(settings) is True
    assert precision_policy(settings) == "mixed_bfloat16"
    configure_devices(settings)
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    # ... and off again, whatever the machine has.
    off = Settings(xla=False, mixed_precision=False)
    assert use_xla(off) is False and precision_policy(off) == "float32"


JAX_SCRIPT = """
import json, os
from core.config import Settings
from worker.celery_app import select_keras_backend
select_keras_backend(Settings())
import keras
from worker.devices import accelerators, configure_devices, precision_policy, use_xla
placement = configure_devices(Settings())
print("RESULT", json.dumps({
    "env": os.environ["KERAS_BACKEND"],
    "backend": keras.backend.backend(),
    "accelerators": accelerators(),
    "xla": use_xla(Settings()),
    "xla_off": use_xla(Settings(xla=False)),
    "policy": precision_policy(Settings()),
    "replicas": placement.num_replicas_in_sync,
    "distribution": repr(keras.distribution.distribution()),
}))
"""


def _run(script: str, data_root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=service_env(data_root, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _result(run: subprocess.CompletedProcess[str]) -> dict:
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, run.stdout[-3000:] + run.stderr[-3000:]
    return dict(json.loads(lines[0].removeprefix("RESULT ")))


def test_a_jax_worker_jits_on_one_cpu_replica(data_root: Path) -> None:
    # KERAS_BACKEND says tensorflow: TINYRES_KERAS_BACKEND, the worker's setting, wins.
    found = _result(
        _run(JAX_SCRIPT, data_root, TINYRES_KERAS_BACKEND="jax", KERAS_BACKEND="tensorflow")
    )
    assert found == {
        "env": "jax",
        "backend": "jax",
        "accelerators": 0,
        # Unjitted JAX runs op by op: XLA is on under JAX unless switched off.
        "xla": True,
        "xla_off": False,
        "policy": "float32",
        "replicas": 1,
        "distribution": "None",
    }


LATE_SCRIPT = """
import keras
from core.config import Settings
from worker.celery_app import select_keras_backend
try:
    select_keras_backend(Settings())
except RuntimeError as exc:
    print("RESULT", exc)
"""


def test_a_backend_chosen_after_keras_was_imported_is_refused(data_root: Path) -> None:
    run = _run(LATE_SCRIPT, data_root, TINYRES_KERAS_BACKEND="jax", KERAS_BACKEND="tensorflow")
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines and "imported on tensorflow" in lines[0], run.stdout + run.stderr[-2000:]
