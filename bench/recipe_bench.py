"""Benchmark of the two training recipes: ``strong`` against the write-up's, on real images.

    .venv/bin/python -m bench.recipe_bench [--epochs 12] [--seeds 0 1] [--out FILE]

The same network (``worker.recipes.build_model``: width 16, levels [1, 1] by default) is
trained for the same epochs, at the same batch size, on the same images under each recipe
(``TrainConfig(recipe=...)``: each recipe's own optimizer, loss, schedule and network,
compiled by ``worker.recipes.compile_model`` and scheduled by ``schedule_callback``, as a
train job does). The network takes uint8 pixels and preprocesses them itself; in training
it flips them at random (both recipes) and, for ``strong``, crops them at random. Two
schedule lengths are scaled to the short run, in the same proportion as at the write-up's
72 epochs: the writeup's x0.1 step at 8/9 of the run (epoch 64 of 72) and the strong
recipe's warm-up at 5/72 of it (at least one epoch).

Datasets, each with a held-out test split no training image overlaps:

* ``digits``: scikit-learn's 1797 real hand-written 8x8 digits, upscaled to 64x64 and
  tinted with random colours (as ``tools.datasets.digit_image``). 10 classes; the train
  and test images come from disjoint halves of the source digits.
* ``photo-patches``: the two photographs scikit-learn ships (china.jpg, flower.jpg), each
  cut into 2x2 quadrants: 8 classes, "which part of which photo" (texture and colour).
  Random square crops (side 48-72 px, scaled to 64x64); a quadrant's alternate 80-px
  column bands are train and test, so no test crop shares a pixel with a train crop.

Reported: held-out top-1 of each recipe per dataset and seed, their mean, strong / writeup
and the difference in points. Targets: strong >= writeup on every dataset; strong >= 3
points ahead on at least one. Not part of ``make test``; a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Row, emit, logger, render_table, verdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# As in the tests: TensorFlow's own CPU kernels for the tiny networks (tests/conftest.py).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

log = logger("recipe_bench")
RECIPES = ("writeup", "strong")
LEAD_POINTS = 3.0


@dataclass
class Dataset:
    name: str
    description: str
    train: tuple[np.ndarray, np.ndarray]  # uint8 [N, 64, 64, 3], int32 [N]
    test: tuple[np.ndarray, np.ndarray]
    classes: int


def digits_dataset(per_class: int, seed: int = 0) -> Dataset:
    """Tinted upscaled digits; train and test from disjoint halves of the source digits."""
    from PIL import Image, ImageOps

    from tools.datasets import SIZE, _digits

    images, targets = _digits()
    rng = np.random.default_rng(seed)
    splits: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    for digit in range(10):
        sources = rng.permutation(np.flatnonzero(targets == digit))
        half = len(sources) // 2
        for split, pool in (("train", sources[:half]), ("test", sources[half:])):
            for index in rng.choice(pool, per_class, replace=len(pool) < per_class):
                gray = Image.fromarray((images[index] / 16.0 * 255.0).astype(np.uint8), "L")
                gray = gray.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
                dark = tuple(int(v) for v in rng.integers(0, 110, 3))
                light = tuple(int(v) for v in rng.integers(145, 256, 3))
                tinted = ImageOps.colorize(gray, black=dark, white=light).convert("RGB")
                splits[split][0].append(np.asarray(tinted))
                splits[split][1].append(digit)
    return Dataset(
        "digits",
        f"scikit-learn digits, 10 classes, {per_class}/class train and test "
        "(disjoint source digits), upscaled to 64x64 and tinted",
        *(_arrays(*splits[split]) for split in ("train", "test")),  # type: ignore[arg-type]
        classes=10,
    )


def photo_patches_dataset(per_class: int, seed: int = 0, band: int = 80) -> Dataset:
    """Crops of the quadrants of scikit-learn's two photos; alternate bands train / test."""
    from PIL import Image

    from tools.datasets import SIZE, _photos

    rng = np.random.default_rng(seed)
    splits: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    label = 0
    for photo in _photos():
        height, width = photo.shape[:2]
        for top in (0, height // 2):
            for left in (0, width // 2):
                quadrant = photo[top : top + height // 2, left : left + width // 2]
                bands = [
                    quadrant[:, x : x + band] for x in range(0, quadrant.shape[1] - band + 1, band)
                ]
                for split, chosen in (("train", bands[0::2]), ("test", bands[1::2])):
                    for _ in range(per_class):
                        part = chosen[int(rng.integers(len(chosen)))]
                        side = int(rng.integers(48, min(72, band, part.shape[0]) + 1))
                        y = int(rng.integers(0, part.shape[0] - side + 1))
                        x = int(rng.integers(0, part.shape[1] - side + 1))
                        crop = Image.fromarray(part[y : y + side, x : x + side])
                        crop = crop.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
                        splits[split][0].append(np.asarray(crop))
                        splits[split][1].append(label)
                label += 1
    return Dataset(
        "photo-patches",
        f"crops of scikit-learn's china.jpg and flower.jpg, 2x2 quadrants = {label} classes, "
        f"{per_class}/class train and test (alternate {band}-px column bands), side 48-72 px "
        "scaled to 64x64",
        *(_arrays(*splits[split]) for split in ("train", "test")),  # type: ignore[arg-type]
        classes=label,
    )


def _arrays(images: list[np.ndarray], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack(images).astype(np.uint8), np.asarray(labels, np.int32)


def recipe_config(recipe: str, args: argparse.Namespace) -> Any:
    """The recipe's ``TrainConfig`` for this run: its own values, the schedules scaled."""
    from core.train_config import TrainConfig

    fields: dict[str, Any] = {
        "dataset": "bench",
        "recipe": recipe,
        "width": args.width,
        "levels": args.levels,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
    }
    if recipe == "writeup":
        fields["lr_decay_epoch"] = max(1, round(args.epochs * 64 / 72))
    else:
        fields["warmup_epochs"] = max(1, round(args.epochs * 5 / 72))
    return TrainConfig.model_validate(fields)


def train_and_test(data: Dataset, config: Any, seed: int) -> float:
    """Train ``config``'s recipe on ``data``'s train split; its held-out top-1."""
    import keras
    import tensorflow as tf

    from core.config import Settings
    from worker.recipes import build_model, compile_model, schedule_callback

    keras.utils.set_random_seed(seed)
    classes = [{"index": i, "wnid": f"n{i:08x}", "label": f"c{i}"} for i in range(data.classes)]
    model = build_model(config, classes)
    with tempfile.TemporaryDirectory() as root:
        compile_model(model, config, Settings(data_root=Path(root), xla=False))
    images, labels = data.train
    train = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    model.fit(train, epochs=config.epochs, callbacks=[schedule_callback(config)], verbose=0)
    test_images, test_labels = data.test
    logits = model.predict(test_images, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == test_labels))


def crops_in_network() -> bool:
    import inspect

    from model.resnet import build_resnet

    return "crop_padding" in inspect.signature(build_resnet).parameters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 1])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=40, help="train (and test) images")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    datasets = [digits_dataset(args.per_class), photo_patches_dataset(args.per_class)]
    scores: dict[tuple[str, str], list[float]] = {}
    for data in datasets:
        for recipe in RECIPES:
            config = recipe_config(recipe, args)
            for seed in args.seeds:
                t0 = time.perf_counter()
                top1 = train_and_test(data, config, seed)
                scores.setdefault((data.name, recipe), []).append(top1)
                log(
                    f"{data.name} {recipe} seed {seed}: top-1 {top1:.3f} "
                    f"({time.perf_counter() - t0:.0f} s)"
                )

    rows, leads = [], []
    for data in datasets:
        strong = float(np.mean(scores[(data.name, "strong")]))
        writeup = float(np.mean(scores[(data.name, "writeup")]))
        lead = 100 * (strong - writeup)
        leads.append(lead)
        rows.append(
            Row(
                f"{data.name}: held-out top-1 (mean of seeds; lead {lead:+.1f} points)",
                f"{strong:.3f}",
                f"{writeup:.3f}",
                strong / writeup if writeup else None,
                "strong >= writeup",
                verdict(strong >= writeup),
            )
        )
    best = max(range(len(datasets)), key=lambda i: leads[i])
    rows.append(
        Row(
            f"largest lead: {datasets[best].name}",
            f"{leads[best]:+.1f} points",
            "-",
            None,
            f">= +{LEAD_POINTS:g} points on one dataset",
            verdict(leads[best] >= LEAD_POINTS),
        )
    )
    crops = "yes" if crops_in_network() else "NO (build_resnet has no crop_padding yet)"
    per_seed = [
        f"{name} {recipe}: "
        + ", ".join(
            f"seed {seed} {score:.3f}" for seed, score in zip(args.seeds, values, strict=True)
        )
        for (name, recipe), values in scores.items()
    ]
    notes = [
        f"datasets: {'; '.join(f'{d.name}: {d.description}' for d in datasets)}",
        f"network: width {args.width}, levels {args.levels}; {args.epochs} epochs, batch "
        f"{args.batch_size}, seeds {args.seeds}; ours = strong, baseline = writeup",
        f"strong: {recipe_config('strong', args).model_dump(include=_KNOBS)}; padded random "
        f"crops in the network: {crops}",
        f"writeup: {recipe_config('writeup', args).model_dump(include=_KNOBS)}",
        *per_seed,
        f"wall time {time.perf_counter() - started:.0f} s on {os.cpu_count()} CPU cores",
    ]
    emit(render_table("Training recipes: strong vs writeup", rows, notes), args.out)
    return 1 if any(row.failed for row in rows) else 0


_KNOBS = {
    "learning_rate",
    "momentum",
    "lr_decay_epoch",
    "lr_decay",
    "warmup_epochs",
    "label_smoothing",
    "weight_decay",
    "l2",
}


if __name__ == "__main__":
    sys.exit(main())
