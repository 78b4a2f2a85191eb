"""The test-data generators now live in ``tools.datasets`` (tools and benchmarks use them
too, and must not import test modules); this re-export keeps older test imports working."""

from tools.datasets import (
    DIGIT_NAMES,
    SIZE,
    BadFiles,
    _photos,
    add_bad_files,
    digit_image,
    encode,
    fake_wnid,
    iter_photo_crops,
    make_class_folders,
    make_digits_tiny_imagenet,
    make_photo_class_folders,
    make_photo_crops,
    zip_dir,
)

__all__ = [
    "DIGIT_NAMES",
    "SIZE",
    "BadFiles",
    "_photos",
    "add_bad_files",
    "digit_image",
    "encode",
    "fake_wnid",
    "iter_photo_crops",
    "make_class_folders",
    "make_digits_tiny_imagenet",
    "make_photo_class_folders",
    "make_photo_crops",
    "zip_dir",
]
