"""Keras 3 ResNet classifiers for 64x64 RGB images, and the preprocessing they expect.

Importing ``model`` or ``model.config`` does not import TensorFlow: the API validates
architectures with ``core.architecture`` alone. The Keras and TensorFlow names below are
imported on first access (PEP 562 module ``__getattr__``), so ``from model import Resnet``
works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from model.config import IMAGE_SIZE, INPUT_SHAPE

if TYPE_CHECKING:
    from model.blocks import Bottleneck, Downsample, ResnetBasic, SpecialBottleneck, Tail
    from model.preprocessing import augment, decode_image, preprocess, resize_to_input
    from model.resnet import Resnet, build_resnet

# Public name -> submodule that defines it; these submodules import TensorFlow.
_LAZY = {
    **dict.fromkeys(["augment", "decode_image", "preprocess", "resize_to_input"], "preprocessing"),
    **dict.fromkeys(
        ["Bottleneck", "Downsample", "ResnetBasic", "SpecialBottleneck", "Tail"], "blocks"
    ),
    **dict.fromkeys(["Resnet", "build_resnet"], "resnet"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "IMAGE_SIZE",
    "INPUT_SHAPE",
    "Bottleneck",
    "Downsample",
    "Resnet",
    "ResnetBasic",
    "SpecialBottleneck",
    "Tail",
    "augment",
    "build_resnet",
    "decode_image",
    "preprocess",
    "resize_to_input",
]
