"""Tiny models for tests of evaluation and batch prediction: random (not initial) weights, so
different images get different answers, saved and registered as a succeeded train job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core import layout
from core.config import Settings
from core.jobs import JobState, JobStore
from core.manifest import ClassEntry

TINY: dict[str, Any] = {"width": 8, "levels": [1, 1]}


def build_model_file(path: Path, classes: list[ClassEntry], seed: int = 1) -> Path:
    """Saves a tiny Resnet for ``classes`` with random weights to ``path``."""
    from core.architecture import ArchitectureConfig
    from model import build_resnet

    names = [entry.model_dump() for entry in classes]
    network = build_resnet(len(classes), ArchitectureConfig(**TINY), class_names=names)
    rng = np.random.default_rng(seed)
    for variable in network.weights:
        if variable.path.endswith("moving_variance"):
            values = rng.uniform(0.5, 2.0, variable.shape)
        else:
            values = rng.normal(0.0, 0.3, variable.shape)
        variable.assign(values.astype(variable.dtype))
    network.save(path)
    return path


def train_model_file(path: Path, dataset_dir: Path, epochs: int = 8, seed: int = 0) -> Path:
    """Trains a tiny Resnet for a few epochs on the train split of a sharded dataset (uint8
    pixels, as the network takes them) and saves it: a model that is right on some images
    and wrong on others, so every metric has something to count."""
    import keras

    from core.architecture import ArchitectureConfig
    from core.manifest import load_manifest
    from model import build_resnet
    from worker.evaluation import split_batches

    keras.utils.set_random_seed(seed)
    manifest = load_manifest(dataset_dir)
    _, batches, _ = split_batches(dataset_dir, "train", batch_size=32)
    pixels, labels = [], []
    for images, batch_labels, _ in batches:
        pixels.append(images.numpy())
        labels.append(batch_labels.numpy())
    names = [entry.model_dump() for entry in manifest.classes]
    network = build_resnet(len(names), ArchitectureConfig(**TINY), l2=0.0, class_names=names)
    network.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = np.concatenate(pixels), np.concatenate(labels)
    network.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    _settle_batch_norm(network, x)
    network.save(path)
    return path


def _settle_batch_norm(network: Any, pixels: np.ndarray) -> None:
    """Set every batch norm's moving statistics to those of ``pixels``: a few dozen steps
    barely move them from their initial values (momentum 0.99), and inference would use
    those."""
    import keras

    norms = [
        layer
        for layer in network._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    network(pixels, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum


def register_model(
    settings: Settings, source: Path, dataset: str, classes: list[ClassEntry]
) -> str:
    """Files ``source`` as the model (and classes.json) of a new succeeded train job on
    ``dataset``, as a train job leaves them; returns the model id."""
    store = JobStore(settings.effective_database_url)
    try:
        store.create_schema()
        job = store.create("train", {"dataset": dataset, **TINY, "epochs": 1})
        path = layout.model_path(settings, job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        layout.classes_path(settings, job.id).write_text(
            json.dumps([entry.model_dump() for entry in classes])
        )
        store.finish(job.id, JobState.SUCCEEDED, result={"model": job.id})
    finally:
        store.engine.dispose()
    return job.id
