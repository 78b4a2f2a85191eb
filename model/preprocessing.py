"""The preprocessing inside the network: rescale to [0, 1], then standardize each image.

The network takes uint8 pixels (any numeric dtype, cast here) and does the write-up's
``ImageDataGenerator(rescale=1/255, samplewise_center=True,
samplewise_std_normalization=True)`` itself, in ``keras.ops`` only. So a saved model
carries its preprocessing to every backend, to serving and to every export, and the host
ships uint8 batches (a quarter of the bytes of float32).

Both layers compute in float32 whatever the model's dtype policy: the standardization
divides by a standard deviation that bf16's 8-bit mantissa would round coarsely. The
first convolution casts their float32 output to its compute dtype.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

Shape = tuple[int | None, ...]


def _check_images(shape: Shape, layer: str) -> None:
    if len(shape) != 4 or shape[-1] not in (None, 3):
        raise ValueError(
            f"{layer} expects a batch of RGB images [batch, height, width, 3]. "
            f"Received: shape={tuple(shape)}"
        )


def standardize(images: Any) -> Any:
    """Each image of a float batch to mean 0 and std 1, as ``tf.image.per_image_standardization``.

    The divisor is ``max(std, 1 / sqrt(pixels))`` (pixels = height * width * channels), so a
    flat image becomes zeros, not NaNs.
    """
    images = ops.cast(images, "float32")
    count = images.shape[1] * images.shape[2] * images.shape[3]
    mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
    std = ops.std(images, axis=(1, 2, 3), keepdims=True)
    return (images - mean) / ops.maximum(std, 1.0 / count**0.5)


def preprocess(images: Any) -> Any:
    """What the network does to its inputs before the first convolution, as a function.

    For previews and tests: pixels in 0..255 (any numeric dtype), a batch
    ``[batch, height, width, 3]`` or one image ``[height, width, 3]``; float32 of the same
    shape. The network itself runs ``Rescale`` and ``Standardize``, the same math.
    """
    images = ops.convert_to_tensor(images)
    single = len(images.shape) == 3
    batch = images[None] if single else images
    _check_images(tuple(batch.shape), "preprocess")
    out = standardize(ops.cast(batch, "float32") / 255.0)
    return out[0] if single else out


@keras.saving.register_keras_serializable(package="tinyres")
class Rescale(keras.layers.Layer):
    """uint8 (or any numeric) pixels 0..255 -> float32 in [0, 1]."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["dtype"] = "float32"  # always: see the module docstring
        super().__init__(**kwargs)

    def build(self, input_shape: Shape) -> None:
        _check_images(tuple(input_shape), type(self).__name__)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def call(self, inputs: Any) -> Any:
        return ops.cast(inputs, "float32") / 255.0


@keras.saving.register_keras_serializable(package="tinyres")
class Standardize(keras.layers.Layer):
    """Per-image standardization of float images (see ``standardize``), in float32."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def build(self, input_shape: Shape) -> None:
        _check_images(tuple(input_shape), type(self).__name__)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def call(self, inputs: Any) -> Any:
        return standardize(inputs)
