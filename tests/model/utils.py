"""Helpers of the model tests: random weights and random uint8 images."""

from __future__ import annotations

import keras
import numpy as np

from model import INPUT_SHAPE


def randomize_weights(layer: keras.layers.Layer, seed: int) -> None:
    """Gives every variable random values, so tests do not pass by accident of the
    initial ones (zero moving means, unit variances, gammas of one)."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        if variable.path.endswith("moving_variance"):
            values = rng.uniform(0.5, 2.0, variable.shape)
        else:
            values = rng.normal(0.0, 0.3, variable.shape)
        variable.assign(values.astype(variable.dtype))


def random_images(count: int, seed: int = 0) -> np.ndarray:
    """uint8 pixels ``[count, 64, 64, 3]``: what the network takes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, *INPUT_SHAPE), dtype=np.uint8)
