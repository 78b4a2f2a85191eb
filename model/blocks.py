"""The building blocks of the tinyres ResNet, ported from the write-up's tf.keras code to Keras 3.

``Tail`` (the stem), ``ResnetBasic`` (batch norm, ReLU, convolution), ``Bottleneck`` and
``SpecialBottleneck`` (residual blocks at constant resolution) and ``Downsample`` (halves the
resolution, doubles the feature maps). All tensors are channels last.

Every block implements ``build()`` (building its sublayers with computed shapes) and
``compute_output_shape()``. Keras 3 needs ``build()`` to create the variables of nested
layers before ``.keras`` files restore weights into them, and ``model.summary()`` uses
``compute_output_shape()`` to show shapes of subclassed layers. The blocks are registered
under the ``tinyres`` package, which is what a ``.keras`` file names them by.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

Shape = tuple[int | None, ...]
IntPair = int | tuple[int, int] | list[int]

# Keras defaults to 0.99. With 0.99 the moving statistics that inference uses lag far
# behind the weights on short runs (a few hundred steps: inference accuracy stays at
# chance while training-mode accuracy is high); TensorFlow's official ResNets use 0.9.
BN_MOMENTUM = 0.9


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    """Normalizes a kernel size or stride to two positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(
            f"{name} must be a positive int or a pair of positive ints. Received: {name}={value}"
        )
    return pair


def _check_filters(filters: int, minimum: int, layer: str) -> None:
    if not isinstance(filters, int) or filters < minimum:
        raise ValueError(
            f"{layer} needs an int filters of at least {minimum}. Received: filters={filters}"
        )


def _halved(size: int | None) -> int | None:
    """Output size of a stride-2 "same" pooling or convolution."""
    return None if size is None else (size + 1) // 2


def build_chain(layers: Sequence[keras.layers.Layer], input_shape: Shape) -> Shape:
    """Builds layers that are applied one after the other; returns the final output shape."""
    shape = tuple(input_shape)
    for layer in layers:
        layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


@keras.saving.register_keras_serializable(package="tinyres")
class Tail(keras.layers.Layer):
    """Stem of the network: conv, batch norm, ReLU and a 2x2 max pool.

    The write-up's tail kernel size is lost. This port uses a 3x3 stride-1 convolution so the
    full 64x64 resolution reaches the pool (giving 32x32). The ImageNet stem, a 7x7 stride-2
    convolution, would leave 16x16 after the pool: too small for four levels that each halve
    the resolution. The write-up calls ``MaxPool2D(Ni, (2, 2), ...)``, which makes ``Ni``
    the pool size and (2, 2) the strides; this port pools 2x2 windows at stride 2.

    Args:
        width: Number of convolution filters (feature maps).
    """

    def __init__(self, width: int, **kwargs: Any) -> None:
        _check_filters(width, 1, "Tail")
        super().__init__(**kwargs)
        self.width = width
        self.conv = keras.layers.Conv2D(
            width,
            (3, 3),
            padding="same",
            use_bias=False,  # the batch norm's beta is the bias
            name="conv",
            dtype=self.dtype_policy,
        )
        self.bn = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, name="bn", dtype=self.dtype_policy
        )
        self.relu = keras.layers.ReLU(name="relu", dtype=self.dtype_policy)
        self.pool = keras.layers.MaxPooling2D(
            (2, 2), strides=(2, 2), padding="same", name="pool", dtype=self.dtype_policy
        )

    def _chain(self) -> list[keras.layers.Layer]:
        return [self.conv, self.bn, self.relu, self.pool]

    def build(self, input_shape: Shape) -> None:
        build_chain(self._chain(), input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        batch, height, width, _ = input_shape
        return (batch, _halved(height), _halved(width), self.width)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = self.conv(inputs)
        x = self.bn(x, training=training)
        x = self.relu(x)
        return self.pool(x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "width": self.width}


@keras.saving.register_keras_serializable(package="tinyres")
class ResnetBasic(keras.layers.Layer):
    """Pre-activation unit: batch norm, ReLU, then a bias-free convolution.

    Args:
        filters: Number of convolution filters.
        kernel_size: Convolution window, an int or a pair.
        strides: Convolution strides, an int or a pair.
    """

    def __init__(
        self, filters: int, kernel_size: IntPair = 1, strides: IntPair = 1, **kwargs: Any
    ) -> None:
        _check_filters(filters, 1, "ResnetBasic")
        kernel_size = _pair(kernel_size, "kernel_size")
        strides = _pair(strides, "strides")
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.bn = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, name="bn", dtype=self.dtype_policy
        )
        self.relu = keras.layers.ReLU(name="relu", dtype=self.dtype_policy)
        self.conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            name="conv",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape: Shape) -> None:
        build_chain([self.bn, self.relu, self.conv], input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(self.conv.compute_output_shape(input_shape))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = self.bn(inputs, training=training)
        x = self.relu(x)
        return self.conv(x)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
        }


@keras.saving.register_keras_serializable(package="tinyres")
class Bottleneck(keras.layers.Layer):
    """Residual block: ``inputs + f(inputs)`` with f = 1x1 (Ni/4), 3x3 (Ni/4), 1x1 (Ni).

    Each step of f is a ``ResnetBasic``. The identity path needs inputs with ``filters``
    channels.

    Args:
        filters: Ni, the number of input and output feature maps (at least 4).
    """

    def __init__(self, filters: int, **kwargs: Any) -> None:
        _check_filters(filters, 4, type(self).__name__)
        super().__init__(**kwargs)
        self.filters = filters
        steps = [(filters // 4, 1), (filters // 4, 3), (filters, 1)]
        self.residual_blocks = [
            ResnetBasic(n, k, name=f"residual_{i}", dtype=self.dtype_policy)
            for i, (n, k) in enumerate(steps)
        ]
        self.merge = keras.layers.Add(name="add", dtype=self.dtype_policy)

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] != self.filters:
            raise ValueError(
                f"Bottleneck {self.name!r} adds its inputs to a {self.filters}-channel residual, "
                f"so inputs need {self.filters} channels. Received: input_shape={input_shape}"
            )
        self._build_residual(input_shape)

    def _build_residual(self, input_shape: Shape) -> Shape:
        shape = build_chain(self.residual_blocks, input_shape)
        self.merge.build([shape, shape])
        return shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.filters)

    def residual(self, inputs: Any, training: bool | None = None) -> Any:
        """The residual branch f alone (used by ``call`` and by gradient tests)."""
        x = inputs
        for block in self.residual_blocks:
            x = block(x, training=training)
        return x

    def shortcut(self, inputs: Any, training: bool | None = None) -> Any:
        """The main path; the identity here."""
        return inputs

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        main = self.shortcut(inputs, training=training)
        return self.merge([main, self.residual(inputs, training=training)])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="tinyres")
class SpecialBottleneck(Bottleneck):
    """Bottleneck whose main path is a bias-free 1x1 convolution instead of the identity.

    ``main(inputs) + f(inputs)``. The write-up puts it right after the tail. There the
    inputs already have ``filters`` channels, so the convolution is a learned projection
    rather than a channel adapter; kept as the write-up has it. It accepts any number of
    input channels.

    Args:
        filters: Ni, the number of output feature maps (at least 4).
    """

    def __init__(self, filters: int, **kwargs: Any) -> None:
        super().__init__(filters, **kwargs)
        self.main = keras.layers.Conv2D(
            filters,
            (1, 1),
            padding="same",
            use_bias=False,
            name="main",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape: Shape) -> None:
        self.main.build(input_shape)
        self._build_residual(input_shape)

    def shortcut(self, inputs: Any, training: bool | None = None) -> Any:
        return self.main(inputs)


@keras.saving.register_keras_serializable(package="tinyres")
class Downsample(keras.layers.Layer):
    """Halves the resolution and doubles the feature maps: ``main(inputs) + f(inputs)``.

    f = 1x1 stride 2 (Ni/2), 3x3 (Ni/2), 1x1 (2 Ni); main = 1x1 stride 2 (2 Ni). Every step,
    the main one included, is a pre-activation ``ResnetBasic``, as in the write-up.

    Args:
        filters: Ni, the number of input feature maps (at least 2).
    """

    def __init__(self, filters: int, **kwargs: Any) -> None:
        _check_filters(filters, 2, "Downsample")
        super().__init__(**kwargs)
        self.filters = filters
        steps = [(filters // 2, 1, 2), (filters // 2, 3, 1), (2 * filters, 1, 1)]
        self.residual_blocks = [
            ResnetBasic(n, k, strides=s, name=f"residual_{i}", dtype=self.dtype_policy)
            for i, (n, k, s) in enumerate(steps)
        ]
        self.main = ResnetBasic(2 * filters, 1, strides=2, name="main", dtype=self.dtype_policy)
        self.merge = keras.layers.Add(name="add", dtype=self.dtype_policy)

    def build(self, input_shape: Shape) -> None:
        shape = build_chain(self.residual_blocks, input_shape)
        self.main.build(input_shape)
        self.merge.build([shape, shape])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(self.main.compute_output_shape(input_shape))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        res = inputs
        for block in self.residual_blocks:
            res = block(res, training=training)
        main = self.main(inputs, training=training)
        return self.merge([main, res])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters}
