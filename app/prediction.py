"""Classifying uploaded images: find and load the model, decode the images, batch them."""

from __future__ import annotations

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.batching import Predictor
from app.model_registry import load_served_model
from app.multipart import PredictForm
from app.schemas import Prediction
from core.config import Settings
from core.jobs import JobStore
from model.serving import BadImage, ImageTooLarge, LoadedModel, ModelCache, decode_upload, top_k


def _prepare(
    cache: ModelCache, store: JobStore, settings: Settings, form: PredictForm
) -> tuple[LoadedModel, np.ndarray]:
    """Worker thread: find and load the model, decode the images."""
    model = load_served_model(cache, store, settings, form.model)
    pixels = []
    for index, data in enumerate(form.images):
        try:
            pixels.append(decode_upload(data, settings.max_image_pixels))
        except (BadImage, ImageTooLarge) as exc:
            if len(form.images) > 1:
                raise type(exc)(f"image {index}: {exc}") from exc
            raise
    return model, np.stack(pixels)


async def classify(
    form: PredictForm,
    settings: Settings,
    store: JobStore,
    cache: ModelCache,
    predictor: Predictor,
) -> tuple[str, list[list[Prediction]]]:
    """The id of the model that answered and each image's ``top_k`` classes, most
    probable first (``top_k`` clamped to the class count)."""
    model, pixels = await run_in_threadpool(_prepare, cache, store, settings, form)
    probabilities = await predictor.predict(model, pixels)
    k = min(form.top_k, model.num_classes)
    return model.id, [
        [
            Prediction(class_index=entry.index, wnid=entry.wnid, label=entry.label, probability=p)
            for entry, p in top_k(row, k, model.class_names)
        ]
        for row in probabilities
    ]
