"""Evaluation speed against one validation pass of training, on the same images and network.

    python -m bench.evaluation_bench [--val 2000] [--classes 10] [--width 32] [--levels 2 2 2]

Builds a Tiny ImageNet-layout dataset of real digits (``tools.datasets``) with ``--val``
validation images, shards it, saves a Resnet (random weights: speed does not depend on
them), then times, each warm (after one untimed pass that traces the graphs):

* training's validation pass: ``worker.reader.make_datasets(...).val`` through
  ``model.evaluate`` with the train job's batch size (128), as ``model.fit`` runs it each epoch;
* ``worker.evaluation.evaluate``: the shards decoded batch by batch through the serving
  function (``LoadedModel.probabilities``), with every metric of an Evaluation.

Prints one markdown row per measurement.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 2, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import keras

    from core.architecture import ArchitectureConfig
    from core.manifest import load_manifest
    from model import build_resnet
    from model.serving import load_model
    from tools.datasets import make_digits_tiny_imagenet
    from worker import sharding
    from worker.evaluation import evaluate
    from worker.reader import make_datasets

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per_class = max(1, args.val // args.classes)
        source = make_digits_tiny_imagenet(
            root / "src",
            classes=args.classes,
            train_per_class=max(2, 256 // args.classes),
            val_per_class=per_class,
        )
        dataset = root / "dataset"
        sharding.shard_dataset(source, dataset, num_shards=4, seed=0)
        classes = [c.model_dump() for c in load_manifest(dataset).classes]
        arch = ArchitectureConfig(width=args.width, levels=args.levels)
        network = build_resnet(len(classes), arch, class_names=classes)
        network.save(root / "model.keras")

        data = make_datasets(dataset, 128, cache_bytes=0)  # streamed, as for Tiny ImageNet
        network.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        network.evaluate(data.val.repeat(), steps=data.val_steps, verbose=0)  # warm-up
        loaded = load_model("bench", root / "model.keras")
        evaluate(loaded, dataset)  # warm-up
        print(f"| what | images | seconds | images/s |  (width {args.width}, levels {args.levels})")
        print("| --- | --- | --- | --- |")
        for _ in range(args.repeats):
            started = time.perf_counter()
            network.evaluate(data.val.repeat(), steps=data.val_steps, verbose=0)
            seconds = time.perf_counter() - started
            print(f"| training's validation pass | {data.val_count} | {seconds:.2f} | "
                  f"{data.val_count / seconds:.0f} |")  # fmt: skip
            started = time.perf_counter()
            result = evaluate(loaded, dataset)
            seconds = time.perf_counter() - started
            print(f"| worker.evaluation.evaluate | {result.count} | {seconds:.2f} | "
                  f"{result.count / seconds:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
