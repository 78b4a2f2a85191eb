"""Random augmentation inside the network: horizontal flips and padded random crops.

Both layers act only when called with ``training=True`` (``fit``); at inference they pass
their inputs through. They use ``keras.ops`` and ``keras.random`` only, so they run under
TensorFlow and JAX alike and travel in every saved model.

Reproducibility and exact resume: each layer draws from its own ``keras.random.SeedGenerator``.
A generator's state is ``[seed, counter]``; every training call draws with the state and
then adds 1 to the counter (validation and inference never draw). So the draws of step
``n`` are a function of ``(seed, n)`` alone, and epoch ``e`` starts at step
``e * steps_per_epoch``: its flips and crops follow from ``(seed, epoch)``, as its shuffle
does in the reader. Keras does not save generator states in ``.keras`` files (they are not
weights), so these layers save theirs with their own variables (``seed_state``): a
checkpoint written after epoch ``e`` holds exactly the state an uninterrupted run has at
the start of epoch ``e + 1``, and a run resumed from it, by the same job or another one,
draws what the uninterrupted run would have drawn. Chosen over a per-image seed shipped by
the reader because the network's input stays plain uint8 images (serving and exports see
one tensor) and the host ships nothing but pixels.

The seed is the layer's ``seed`` argument, kept in its config; ``None`` takes one from
Python's ``random``, which ``keras.utils.set_random_seed`` seeds (as training does before
it builds the network), so a job's seed decides it either way.

The draws differ between backends (their random number generators differ): a job gives
the same flips on every run of one backend, not across backends.
"""

from __future__ import annotations

import random
from typing import Any

import keras
import numpy as np
from keras import ops

Shape = tuple[int | None, ...]
PAD_MODES = ("reflect", "zero")
SEED_STATE = "seed_state"


class SeededAugmentation(keras.layers.Layer):
    """A training-only random layer whose random state is saved with the model.

    Args:
        seed: Seeds the draws; ``None`` for one from Python's ``random``.
    """

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        kwargs["dtype"] = "float32"  # pixels are moved, never rounded: any policy is float32
        super().__init__(**kwargs)
        if seed is None:
            seed = random.randint(1, 2**30)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an int or None. Received: seed={seed}")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")

    def build(self, input_shape: Shape) -> None:
        if len(input_shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expects a batch [batch, height, width, channels]. "
                f"Received: shape={tuple(input_shape)}"
            )

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def save_own_variables(self, store: Any) -> None:
        super().save_own_variables(store)
        store[SEED_STATE] = ops.convert_to_numpy(self.seed_generator.state.value)

    def load_own_variables(self, store: Any) -> None:
        # A model saved before these layers saved their state has none: keep the seed's.
        if SEED_STATE in store:
            state = self.seed_generator.state
            state.assign(np.asarray(store[SEED_STATE]).astype(state.dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="tinyres")
class RandomHorizontalFlip(SeededAugmentation):
    """Flips each image left-right with probability 1/2 (the write-up's ``horizontal_flip``).

    One coin per image; any dtype, kept.
    """

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training:
            return inputs
        batch = ops.shape(inputs)[0]
        coins = keras.random.uniform((batch,), seed=self.seed_generator) < 0.5
        return ops.where(coins[:, None, None, None], ops.flip(inputs, axis=2), inputs)


@keras.saving.register_keras_serializable(package="tinyres")
class RandomPadCrop(SeededAugmentation):
    """Pads each image by ``padding`` pixels on every side, then crops a random window of
    its original size (the CIFAR ResNets' "pad 4, random crop").

    Outputs float32 pixels of the input's scale (it runs before ``Rescale``: pixel values
    0..255 are integers, which the crop's matrix products keep exact in any float format,
    TF32 included). The window is picked by one-hot matrices (two batched ``einsum``s) rather
    than a per-image slice: the same ops on every backend, static shapes for XLA.

    Args:
        padding: Pixels added on each side (at least 1); the shift is up to this much.
        mode: ``"reflect"`` (mirror the border; the default, so no black frame shifts the
            per-image mean and std that standardization divides by) or ``"zero"``.
        seed: Seeds the draws; ``None`` for one from Python's ``random``.
    """

    def __init__(
        self, padding: int, mode: str = "reflect", seed: int | None = None, **kwargs: Any
    ) -> None:
        if not isinstance(padding, int) or isinstance(padding, bool) or padding < 1:
            raise ValueError(f"padding must be a positive int. Received: padding={padding}")
        if mode not in PAD_MODES:
            raise ValueError(f"mode must be one of {PAD_MODES}. Received: mode={mode!r}")
        super().__init__(seed=seed, **kwargs)
        self.padding = padding
        self.mode = mode

    def build(self, input_shape: Shape) -> None:
        super().build(input_shape)
        height, width = input_shape[1], input_shape[2]
        if (
            height is None
            or width is None
            or (self.mode == "reflect" and self.padding >= min(height, width))
        ):
            raise ValueError(
                f"RandomPadCrop needs a known height and width larger than padding "
                f"{self.padding} (reflect). Received: shape={tuple(input_shape)}"
            )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        pixels = ops.cast(inputs, "float32")
        if not training:
            return pixels
        p = self.padding
        height, width = pixels.shape[1], pixels.shape[2]
        mode = "reflect" if self.mode == "reflect" else "constant"
        padded = ops.pad(pixels, [[0, 0], [p, p], [p, p], [0, 0]], mode=mode)
        batch = ops.shape(pixels)[0]
        shifts = keras.random.randint((batch, 2), 0, 2 * p + 1, seed=self.seed_generator)
        rows = ops.one_hot(shifts[:, :1] + ops.arange(height)[None], height + 2 * p)
        cols = ops.one_hot(shifts[:, 1:] + ops.arange(width)[None], width + 2 * p)
        x = ops.einsum("bih,bhwc->biwc", rows, padded)
        return ops.einsum("bjw,biwc->bijc", cols, x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "mode": self.mode}
