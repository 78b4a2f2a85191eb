"""Pre-activation ResNet for 64x64 images: the whole classifier, assembled from ``model.blocks``.

The network is ``Tail`` -> ``SpecialBottleneck`` -> per level: ``Bottleneck`` blocks and a
``Downsample`` -> batch norm, ReLU, global average pooling and a dense layer producing logits.
Width and levels are validated by ``model.config.ArchitectureConfig``, the same bounds the
API applies (``core.train_config.TrainConfig``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import keras
from pydantic import ValidationError

from core.architecture import ArchitectureConfig
from model.blocks import (
    BN_MOMENTUM,
    Bottleneck,
    Downsample,
    Shape,
    SpecialBottleneck,
    Tail,
    build_chain,
)
from model.config import INPUT_SHAPE


@keras.saving.register_keras_serializable(package="tinyres")
class Resnet(keras.Model):
    """The whole classifier; returns logits (no softmax).

    Layers, in order: ``tail``, ``level_0_special``, then for each level ``i``
    ``level_{i}_bottleneck_{j}`` blocks and ``downsample_{i}``, then ``final_bn``,
    ``final_relu``, ``gap`` and ``dense``. Inputs are preprocessed float images
    (see ``model.preprocessing.preprocess``) of shape ``(batch, 64, 64, 3)``.

    Args:
        classes: Number of output classes.
        width: Feature maps after the tail; a multiple of 4, doubled by each level.
        levels: Number of bottlenecks in each level.
        l2: L2 penalty factor of the dense kernel.
        class_names: Optional ``[{"index", "wnid", "label"}, ...]``, one per class. Kept
            in the config, so a saved ``.keras`` file carries the labels it predicts.
    """

    def __init__(
        self,
        classes: int,
        width: int = 64,
        levels: Iterable[int] = (4, 6, 3, 2),
        l2: float = 0.01,
        class_names: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        levels = _check_resnet_args(classes, width, levels, l2)
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
        policy = self.dtype_policy
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

    def _chain(self) -> list[keras.layers.Layer]:
        return [
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
        x = self.tail(inputs, training=training)
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
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Resnet:
        return cls(**config)


def _check_resnet_args(classes: Any, width: Any, levels: Any, l2: Any) -> list[int]:
    """Validates the Resnet arguments; returns levels as a list of ints.

    Width and levels go through ``ArchitectureConfig``: the network and the API share one
    set of bounds.
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
    try:
        ArchitectureConfig(width=width, levels=counts)
    except ValidationError as exc:
        # The reasons alone (they show the value), without pydantic's framing.
        reasons = (error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise ValueError("; ".join(reasons)) from None
    if not isinstance(l2, int | float) or l2 < 0:
        raise ValueError(f"l2 must be a non-negative number. Received: l2={l2}")
    return counts


def build_resnet(
    classes: int,
    arch: ArchitectureConfig | None = None,
    l2: float = 0.01,
    class_names: list[dict[str, Any]] | None = None,
) -> Resnet:
    """Creates a ``Resnet`` with its weights, ready for ``summary()``, ``fit()`` or loading.

    Args:
        classes: Number of output classes.
        arch: Width and levels; defaults to the write-up's network (the ``writeup`` preset
            of ``core.train_config``).
        l2: L2 penalty factor of the dense kernel.
        class_names: One ``{"index", "wnid", "label"}`` per class, saved with the model.
    """
    arch = arch or ArchitectureConfig()
    model = Resnet(
        classes, width=arch.width, levels=list(arch.levels), l2=l2, class_names=class_names
    )
    model.build((None, *INPUT_SHAPE))
    return model
