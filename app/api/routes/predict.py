"""Prediction: classify uploaded images with a trained model.

The body is read by ``app.multipart`` straight from the request stream, so its size is
enforced as it arrives; errors are answered by ``app.errors``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from app.api.deps import READ_UNAUTHORIZED, Reading, SettingsDep, StoreDep
from app.batching import Predictor
from app.multipart import DEFAULT_TOP_K, read_form
from app.prediction import classify
from app.schemas import (
    BatchPredictAnswer,
    ErrorBody,
    ImagePredictions,
    PredictAnswer,
    Prediction,
    PredictStats,
)
from core.config import Settings
from core.jobs import JobStore
from model.serving import ModelCache

router = APIRouter(
    prefix="/predict", tags=["predict"], dependencies=[Reading], responses=READ_UNAUTHORIZED
)


def app_predictor(request: Request) -> Predictor:
    return request.app.state.predictor


def app_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


PredictorDep = Annotated[Predictor, Depends(app_predictor)]
ModelCacheDep = Annotated[ModelCache, Depends(app_model_cache)]


async def _classify_upload(
    request: Request,
    settings: Settings,
    store: JobStore,
    cache: ModelCache,
    predictor: Predictor,
    max_images: int,
) -> tuple[str, list[list[Prediction]]]:
    predictor.check_admission()  # refuse before reading the body when the queue is full
    form = await read_form(request.headers, request.stream(), settings.max_upload_bytes, max_images)
    return await classify(form, settings, store, cache, predictor)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 422, 503)
}


def _multipart_body(several: bool) -> dict[str, Any]:
    image = {"type": "string", "format": "binary", "description": "JPEG, PNG, GIF, BMP or WebP"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image"],
                        "properties": {
                            "image": {"type": "array", "items": image, "minItems": 1}
                            if several
                            else image,
                            "model": {
                                "type": "string",
                                "description": "Model id; default: the newest model.",
                            },
                            "top_k": {"type": "integer", "minimum": 1, "default": DEFAULT_TOP_K},
                        },
                        "additionalProperties": False,
                    }
                }
            },
        }
    }


@router.post("", responses=_ERRORS, openapi_extra=_multipart_body(several=False))
async def predict(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    cache: ModelCacheDep,
    predictor: PredictorDep,
) -> PredictAnswer:
    """Classify one image: the `top_k` most probable classes (clamped to the class count).

    400 not an image or undecodable; 413 body over `max_upload_bytes` or image over
    `max_image_pixels`; 404 unknown model; 409 no model trained yet; 422 bad form field;
    503 (with `Retry-After`) when too many requests are waiting.
    """
    model_id, results = await _classify_upload(request, settings, store, cache, predictor, 1)
    return PredictAnswer(model=model_id, predictions=results[0])


@router.post("/batch", responses=_ERRORS, openapi_extra=_multipart_body(several=True))
async def predict_batch(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    cache: ModelCacheDep,
    predictor: PredictorDep,
) -> BatchPredictAnswer:
    """Classify several images (repeated `image` fields): one result per image, in order.

    Same errors as `POST /predict`; one bad image fails the request, naming its index.
    """
    max_images = settings.predict_batch_max_images
    model_id, results = await _classify_upload(
        request, settings, store, cache, predictor, max_images
    )
    return BatchPredictAnswer(
        model=model_id, results=[ImagePredictions(predictions=r) for r in results]
    )


@router.get("/stats")
async def predict_stats(cache: ModelCacheDep, predictor: PredictorDep) -> PredictStats:
    """Batching at work (an extension of the contract, for operators and tests):
    `{"batches", "images", "max_batch", "rejected", "waiting", "recent_batch_sizes",
    "cached_models"}`; `recent_batch_sizes` holds the sizes of the latest forward passes,
    so concurrent requests gathered into one pass show up as sizes above 1."""
    return PredictStats(
        **asdict(predictor.stats.snapshot()), waiting=predictor.waiting, cached_models=cache.ids()
    )
