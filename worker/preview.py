"""A PNG contact sheet of a dataset's training images, as the network sees them.

Like the write-up's ``plot_images``: images go through the network's own training-time
input layers (``model.augment.RandomHorizontalFlip`` with a fixed seed, then
``model.preprocessing.preprocess``: rescale and per-image standardization), then each is
min-max scaled back to [0, 1] for display. The optional random crop of a recipe is not
shown (the grid is of the dataset, not of a job).
The first records of the train shards are shown; shards are shuffled when written, so
they are a random mix of classes, and the same on every call.
"""

from __future__ import annotations

import io
import math
from os import PathLike, fspath

import keras
import numpy as np

from core.manifest import load_manifest
from model.augment import RandomHorizontalFlip
from model.preprocessing import preprocess
from worker.reader import decoded, shard_paths
from worker.sharding.records import tf_compression

MAX_PREVIEW_IMAGES = 64
PREVIEW_SEED = 0  # the same flips on every call


def render_preview(dataset_dir: str | PathLike[str], count: int = 16) -> bytes:
    """PNG bytes of a grid of ``count`` augmented, preprocessed training images, labelled.

    Raises:
        DatasetNotFoundError: No finished dataset at ``dataset_dir``.
        ValueError: ``count`` outside 1..``MAX_PREVIEW_IMAGES``.
    """
    if not 1 <= count <= MAX_PREVIEW_IMAGES:
        raise ValueError(f"count must be 1..{MAX_PREVIEW_IMAGES}. Received: count={count}")
    folder = fspath(dataset_dir).rstrip("/")
    manifest = load_manifest(folder)
    files = shard_paths(folder, manifest, "train")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for image, label in decoded(files, tf_compression(manifest.compression)).take(count):
        images.append(image.numpy())
        labels.append(int(label))
    shown = display_range(network_view(np.stack(images))) if images else np.zeros([0])
    names = [manifest.classes[label].label for label in labels]
    return _grid_png(shown, names)


def network_view(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels ``[N, 64, 64, 3]`` as the network's first convolution sees them in
    training: flipped (half of them) and standardized."""
    flip = RandomHorizontalFlip(seed=PREVIEW_SEED)
    return keras.ops.convert_to_numpy(preprocess(flip(pixels, training=True)))


def display_range(images: np.ndarray) -> np.ndarray:
    """Min-max scale each image to [0, 1] (standardized pixels are not displayable)."""
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return (images - low) / np.maximum(high - low, 1e-6)


def _grid_png(images: np.ndarray, names: list[str]) -> bytes:
    # Imported here: matplotlib is slow to import and only this endpoint needs it.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    cols = max(1, math.ceil(math.sqrt(len(names))))
    rows = max(1, math.ceil(len(names) / cols))
    # Figure() rather than pyplot: no global state, safe in a threaded server.
    figure = Figure(figsize=(2 * cols, 2.2 * rows), dpi=80)
    for i, (image, name) in enumerate(zip(images, names, strict=True)):
        axes = figure.add_subplot(rows, cols, i + 1)
        axes.imshow(image, interpolation="nearest")
        axes.set_title(name[:24], fontsize=8)
        axes.axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
