"""Which devices training runs on, under which Keras backend, and the GPU-only speed-ups.

A training worker runs Keras on `Settings.keras_backend` (`TINYRES_KERAS_BACKEND`, set as
`KERAS_BACKEND` before Keras is imported: `worker.celery_app`). Either way tf.data feeds
the model (TensorFlow is installed on every worker), so a job is the same job on both.

* Several devices: TensorFlow mirrors the model with `MirroredStrategy` (over the GPUs, or
  over logical CPU devices when a process split its CPU, as tests do); JAX shards each
  batch over its devices with `keras.distribution.DataParallel`. The global batch is
  `batch_size`, split across replicas.
* Under JAX, TensorFlow (only the input pipeline) is kept off the GPUs: it would take
  their memory for nothing.
* Mixed precision (`mixed_bfloat16`): on when every GPU has bfloat16 tensor cores (compute
  capability 8.0+), off on CPUs; `TINYRES_MIXED_PRECISION` overrides.
* XLA (`jit_compile`): under TensorFlow on with GPUs and off on CPUs, where it does not
  help; under JAX always on, since a JAX model that is not jitted runs op by op
  (`TINYRES_XLA` overrides both).
* `steps_per_execution` (`Settings.steps_per_execution`, default 1): batches per compiled
  call of `fit`. No callback of ours reads a batch's results (`worker.train_callbacks`),
  so under JAX, whose Keras dispatches batch hooks to a thread pool, steps go out without
  waiting for the device. Under TensorFlow, Keras itself reads each call's logs on the
  training thread (its TensorFlow backend is not marked thread-safe): on a GPU each call
  then waits for its step, and a larger value amortizes that; set it (16 to 64) on a
  TensorFlow GPU host. The default keeps one compiled train function (a count that does
  not divide an epoch compiles a second one for the remainder), exact epoch boundaries
  and a stop within one step; on a CPU a step dwarfs the wait.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import keras

from core.config import Settings

log = logging.getLogger(__name__)


class Placement(Protocol):
    """What training needs of a distribution: `tf.distribute.Strategy` has both."""

    num_replicas_in_sync: int

    def scope(self) -> contextlib.AbstractContextManager[Any]: ...


@dataclass
class JaxPlacement:
    """JAX's side of `Placement`: the distribution is global (`keras.distribution`)."""

    num_replicas_in_sync: int

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        yield


def backend() -> str:
    return str(keras.backend.backend())


def gpus() -> list[Any]:
    """TensorFlow's physical GPUs (empty under JAX once `configure_devices` hid them)."""
    import tensorflow as tf

    return list(tf.config.list_physical_devices("GPU"))


def _jax_gpus() -> list[Any]:
    import jax

    try:
        return list(jax.devices("gpu"))
    except RuntimeError:  # no GPU backend in this process
        return []


def accelerators() -> int:
    """GPUs the current backend trains on."""
    return len(_jax_gpus()) if backend() == "jax" else len(gpus())


def use_xla(settings: Settings) -> bool:
    if settings.xla is not None:
        return settings.xla
    return True if backend() == "jax" else bool(gpus())


def _capabilities() -> list[tuple[int, int] | None]:
    if backend() == "jax":
        found: list[tuple[int, int] | None] = []
        for device in _jax_gpus():
            text = str(getattr(device, "compute_capability", "") or "")
            major, _, minor = text.partition(".")
            found.append((int(major), int(minor or 0)) if major.isdigit() else None)
        return found
    import tensorflow as tf

    return [
        tf.config.experimental.get_device_details(device).get("compute_capability")
        for device in gpus()
    ]


def use_mixed_precision(settings: Settings) -> bool:
    if settings.mixed_precision is not None:
        return settings.mixed_precision
    # bfloat16 tensor cores arrived with Ampere (compute capability 8.0).
    capabilities = _capabilities()
    return bool(capabilities) and all(c is not None and c >= (8, 0) for c in capabilities)


def precision_policy(settings: Settings) -> str:
    return "mixed_bfloat16" if use_mixed_precision(settings) else "float32"


def configure_devices(settings: Settings) -> Placement:
    """Memory growth on every GPU, the precision policy, and the distribution."""
    import tensorflow as tf

    if backend() == "jax":
        with contextlib.suppress(RuntimeError):  # TensorFlow already initialised its GPUs
            tf.config.set_visible_devices([], "GPU")
    else:
        for device in gpus():
            with contextlib.suppress(RuntimeError):  # already initialised in this process
                tf.config.experimental.set_memory_growth(device, True)
    keras.mixed_precision.set_global_policy(precision_policy(settings))
    if backend() == "jax":
        import jax

        devices = jax.devices()
        if len(devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        else:
            keras.distribution.set_distribution(None)
        return JaxPlacement(len(devices))
    if gpus():
        return tf.distribute.MirroredStrategy(
            [device.name for device in tf.config.list_logical_devices("GPU")]
        )
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()
