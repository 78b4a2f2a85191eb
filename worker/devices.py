"""Which devices training runs on, and the GPU-only speed-ups (mixed precision, XLA)."""

from __future__ import annotations

import contextlib
import logging

import keras
import tensorflow as tf

from core.config import Settings

log = logging.getLogger(__name__)


def gpus() -> list[tf.config.PhysicalDevice]:
    return tf.config.list_physical_devices("GPU")


def use_xla(settings: Settings) -> bool:
    return settings.xla if settings.xla is not None else bool(gpus())


def _bfloat16_capable(devices: list[tf.config.PhysicalDevice]) -> bool:
    # bfloat16 tensor cores arrived with Ampere (compute capability 8.0).
    for device in devices:
        capability = tf.config.experimental.get_device_details(device).get("compute_capability")
        if not capability or capability < (8, 0):
            return False
    return bool(devices)


def configure_devices(settings: Settings) -> tf.distribute.Strategy:
    """Memory growth on every GPU, the precision policy, and the distribution strategy.

    With GPUs: MirroredStrategy over all of them (the global batch is `batch_size`, split
    across replicas). Without: MirroredStrategy over the logical CPU devices when the
    process was split into several (tests do that), else the default strategy.
    """
    physical = gpus()
    for device in physical:
        with contextlib.suppress(RuntimeError):  # already initialised in this process
            tf.config.experimental.set_memory_growth(device, True)
    mixed = settings.mixed_precision
    if mixed is None:
        mixed = _bfloat16_capable(physical)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
    if physical:
        return tf.distribute.MirroredStrategy(
            [device.name for device in tf.config.list_logical_devices("GPU")]
        )
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()
