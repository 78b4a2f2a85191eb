"""Pre-activation ResNet for 64x64 images: the whole classifier, assembled from ``model.blocks``.

The network is ``Tail`` -> ``SpecialBottleneck`` -> per level: ``Bottleneck`` blocks and a
``Downsample`` -> batch norm, ReLU, global average pooling and a dense layer producing logits.
Before the tail, the network preprocesses its own inputs: uint8 pixels ``[batch, 64, 64, 3]``
go through an optional ``RandomPadCrop`` and a ``RandomHorizontalFlip`` (training only, see
``model.augment``), then ``Rescale`` and ``Standardize`` (``model.preprocessing``).
Width and levels are checked against the bounds of ``model.config``, the same ones the API
applies (``core.architecture.ArchitectureConfig``), in plain Python: ``model/`` imports
nothing but Keras.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import keras

from model.augment import RandomHorizontalFlip, RandomPadCrop
from model.blocks import (
    BN_MOMENTUM,
    Bottleneck,
    Downsample,
    Shape,
    SpecialBottleneck,
    Tail,
    build_chain,
)
from model.config import (
    INPUT_SHAPE,
    MAX_BLOCKS_PER_LEVEL,
    MAX_LEVELS,
    MAX_WIDTH,
    MIN_WIDTH,
    WRITEUP_LEVELS,
    WRITEUP_WIDTH,
)
from model.preprocessing import Rescale, Standardize

if TYPE_CHECKING:
    from core.architecture import ArchitectureConfig


@keras.saving.register_keras_serializable(package="tinyres")
class Resnet(keras.Model):
    """The whole classifier; returns logits (no softmax).

    Layers, in order: ``crop`` (only with ``crop_padding``), ``flip``, ``rescale``,
    ``standardize``, ``tail``, ``level_0_special``, then for each level ``i``
    ``level_{i}_bottleneck_{j}`` blocks and ``downsample_{i}``, then ``final_bn``,
    ``final_relu``, ``gap`` and ``dense``. Inputs are pixels 0..255 of shape
    ``(batch, 64, 64, 3)``, uint8 or any numeric dtype.

    Args:
        classes: Number of output classes.
        width: Feature maps after the tail; a multiple of 4, doubled by each level.
        levels: Number of bottlenecks in each level.
        l2: L2 penalty factor of the dense kernel.
        class_names: Optional ``[{"index", "wnid", "label"}, ...]``, one per class. Kept
            in the config, so a saved ``.keras`` file carries the labels it predicts.
        crop_padding: Pixels of padding of the random crop; 0 (the write-up) for none.
        seed: Seeds the flips and crops (``model.augment``); ``None`` for one from
            Python's ``random`` (seeded by ``keras.utils.set_random_seed``).
    """

    def __init__(
        self,
        classes: int,
        width: int = WRITEUP_WIDTH,
        levels: Iterable[int] = WRITEUP_LEVELS,
        l2: float = 0.01,
        class_names: list[dict[str, Any]] | None = None,
        crop_padding: int = 0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        levels = _check_resnet_args(classes, width, levels, l2)
        if not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(
                f"crop_padding must be a non-negative int. Received: crop_padding={crop_padding}"
            )
        if seed is None:
            seed = random.randint(1, 2**30)
        if class_names is not None and len(class_names) != classes:
            raise ValueError(
                f"class_names must have one entry per class ({classes}). "
                f"Received: {len(class_names)} entries"
            )
        super().__init__(**kwargs)
        self.class_names = [dict(entry) for entry in class_names] if class_names else None
        self.classes = classes
        self.width = width
        self.levels = levels
        self.l2 = float(l2)
        self.crop_padding = crop_padding
        self.seed = seed
        policy = self.dtype_policy
        # Assigned in call order: Keras lists layers in the order they are set.
        if crop_padding:
            self.crop = RandomPadCrop(crop_padding, seed=seed + 1, name="crop")
        self.flip = RandomHorizontalFlip(seed=seed, name="flip")
        self.rescale = Rescale(name="rescale")
        self.standardize = Standardize(name="standardize")
        self.tail = Tail(width, name="tail", dtype=policy)
        self.level_0_special = SpecialBottleneck(width, name="level_0_special", dtype=policy)
        # A plain list: Keras 3 tracks the layers (and their weights) it holds.
        self.blocks = []
        filters = width
        for level, count in enumerate(levels):
            for j in range(count):
                name = f"level_{level}_bottleneck_{j}"
                self.blocks.append(Bottleneck(filters, name=name, dtype=policy))
            # Every level ends by halving the resolution and doubling the feature maps.
            self.blocks.append(Downsample(filters, name=f"downsample_{level}", dtype=policy))
            filters *= 2
        self.final_bn = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, name="final_bn", dtype=policy
        )
        self.final_relu = keras.layers.ReLU(name="final_relu", dtype=policy)
        self.gap = keras.layers.GlobalAveragePooling2D(name="gap", dtype=policy)
        self.dense = keras.layers.Dense(
            classes,
            kernel_regularizer=keras.regularizers.L2(self.l2),
            use_bias=True,
            name="dense",
            # The logits (and the softmax and loss after them) stay in float32 under
            # mixed precision: bf16's 8-bit mantissa is too coarse for them.
            dtype="float32",
        )

    def _preprocessing(self) -> list[keras.layers.Layer]:
        crop = [self.crop] if self.crop_padding else []
        return [*crop, self.flip, self.rescale, self.standardize]

    def _chain(self) -> list[keras.layers.Layer]:
        return [
            *self._preprocessing(),
            self.tail,
            self.level_0_special,
            *self.blocks,
            self.final_bn,
            self.final_relu,
            self.gap,
            self.dense,
        ]

    def build(self, input_shape: Shape) -> None:
        build_chain(self._chain(), input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.classes)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = inputs
        if self.crop_padding:
            x = self.crop(x, training=training)
        x = self.flip(x, training=training)
        x = self.standardize(self.rescale(x))
        x = self.tail(x, training=training)
        x = self.level_0_special(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.final_bn(x, training=training)
        x = self.final_relu(x)
        x = self.gap(x)
        return self.dense(x)

    def get_config(self) -> dict[str, Any]:
        # keras.Model.get_config() of a subclass holds only the base keys (name, trainable,
        # dtype); from_config() passes all keys back to __init__.
        return {
            **super().get_config(),
            "classes": self.classes,
            "width": self.width,
            "levels": list(self.levels),
            "l2": self.l2,
            "class_names": self.class_names,
            "crop_padding": self.crop_padding,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Resnet:
        return cls(**config)


def _check_resnet_args(classes: Any, width: Any, levels: Any, l2: Any) -> list[int]:
    """Validates the Resnet arguments; returns levels as a list of ints.

    Width and levels get the bounds of ``model.config`` and the messages of
    ``core.architecture.ArchitectureConfig``: the network and the API share one set of bounds.
    """
    if not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive int. Received: classes={classes}")
    try:
        # operator.index accepts ints and NumPy integers, not floats or strings.
        counts = [operator.index(n) for n in levels]
    except TypeError:
        raise ValueError(f"levels must be a sequence of ints. Received: levels={levels}") from None
    if not isinstance(width, int):
        raise ValueError(f"width must be an int. Received: width={width}")
    reasons = []
    if not MIN_WIDTH <= width <= MAX_WIDTH or width % 4 != 0:
        reasons.append(
            f"width must be a multiple of 4 between {MIN_WIDTH} and {MAX_WIDTH}. "
            f"Received: width={width}"
        )
    if not 1 <= len(counts) <= MAX_LEVELS:
        reasons.append(f"levels must have 1 to {MAX_LEVELS} entries. Received: levels={counts}")
    elif any(not 0 <= count <= MAX_BLOCKS_PER_LEVEL for count in counts):
        reasons.append(
            f"each entry of levels must be between 0 and {MAX_BLOCKS_PER_LEVEL}. "
            f"Received: levels={counts}"
        )
    if reasons:
        raise ValueError("; ".join(reasons))
    if not isinstance(l2, int | float) or l2 < 0:
        raise ValueError(f"l2 must be a non-negative number. Received: l2={l2}")
    return counts


def build_resnet(
    classes: int,
    arch: ArchitectureConfig | None = None,
    l2: float = 0.01,
    class_names: list[dict[str, Any]] | None = None,
    crop_padding: int = 0,
    seed: int | None = None,
) -> Resnet:
    """Creates a ``Resnet`` with its weights, ready for ``summary()``, ``fit()`` or loading.

    Args:
        classes: Number of output classes.
        arch: Width and levels; defaults to the write-up's network (the ``writeup`` preset
            of ``core.train_config``).
        l2: L2 penalty factor of the dense kernel.
        class_names: One ``{"index", "wnid", "label"}`` per class, saved with the model.
        crop_padding: Padding of the random crop (pixels per side); 0, the write-up, for none.
        seed: Seeds the flips and crops; ``None`` for one from Python's ``random``.
    """
    width, levels = (arch.width, list(arch.levels)) if arch else (WRITEUP_WIDTH, WRITEUP_LEVELS)
    model = Resnet(
        classes,
        width=width,
        levels=levels,
        l2=l2,
        class_names=class_names,
        crop_padding=crop_padding,
        seed=seed,
    )
    model.build((None, *INPUT_SHAPE))
    return model
