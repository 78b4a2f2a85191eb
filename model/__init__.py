"""Keras 3 ResNet classifiers for 64x64 RGB images, preprocessing and augmentation inside.

The package imports only Keras (and NumPy), so it runs under any Keras backend;
``model.serving`` alone uses TensorFlow, to decode uploads. Importing ``model`` or
``model.config`` imports neither: the API validates architectures with
``core.architecture`` alone. The Keras names below are imported on first access (PEP 562
module ``__getattr__``), so ``from model import Resnet`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from model.config import IMAGE_SIZE, INPUT_SHAPE

if TYPE_CHECKING:
    from model.augment import RandomHorizontalFlip, RandomPadCrop
    from model.blocks import Bottleneck, Downsample, ResnetBasic, SpecialBottleneck, Tail
    from model.preprocessing import Rescale, Standardize, preprocess
    from model.resnet import Resnet, build_resnet

# Public name -> submodule that defines it; these submodules import Keras.
_LAZY = {
    **dict.fromkeys(["Rescale", "Standardize", "preprocess"], "preprocessing"),
    **dict.fromkeys(["RandomHorizontalFlip", "RandomPadCrop"], "augment"),
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
    "RandomHorizontalFlip",
    "RandomPadCrop",
    "Rescale",
    "Resnet",
    "ResnetBasic",
    "SpecialBottleneck",
    "Standardize",
    "Tail",
    "build_resnet",
    "preprocess",
]
