"""Prediction: classify uploaded images with a trained model.

The multipart body is read here, from the raw ASGI stream, instead of through FastAPI's
``Form``/``UploadFile`` parameters: those buffer the whole body (spooling it to a temporary
file) before the route runs, so a size check in the route would come after the upload.
Here the ``Content-Length`` a client declares is checked before a byte is read, and the
bytes actually received are counted chunk by chunk as they arrive, so a missing or lying
``Content-Length`` (or a chunked body) is cut off at ``max_upload_bytes`` too. The limit
covers the whole body, form overhead included; python-multipart's streaming parser splits
it into fields as it comes, with its own bounds on part headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ_UNAUTHORIZED, Reading, SettingsDep, StoreDep
from app.batching import Predictor, PredictorClosed, QueueFull
from app.errors import ApiError, Conflict, NotFound, TooLarge, Unavailable, Unprocessable
from app.schemas import ErrorBody
from core.config import Settings
from core.jobs import JobStore
from model.serving import (
    BadImage,
    ImageTooLarge,
    LoadedModel,
    ModelBroken,
    ModelCache,
    ModelNotFound,
    NoModelYet,
    decode_upload,
    get_model,
    top_k,
)

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

router = APIRouter(
    prefix="/predict", tags=["predict"], dependencies=[Reading], responses=READ_UNAUTHORIZED
)

DEFAULT_TOP_K = 5
FORM_FIELDS = ("image", "model", "top_k")


class ServerFault(ApiError):
    status_code = 500


class Prediction(BaseModel):
    class_index: int
    wnid: str
    label: str
    probability: float


class PredictAnswer(BaseModel):
    model: str = Field(description="Id of the model that answered (its train job's id).")
    predictions: list[Prediction] = Field(description="Most probable first.")


class ImagePredictions(BaseModel):
    predictions: list[Prediction]


class BatchPredictAnswer(BaseModel):
    model: str
    results: list[ImagePredictions] = Field(description="One per image, in upload order.")


class PredictStats(BaseModel):
    batches: int = Field(description="Forward passes run since start.")
    images: int = Field(description="Images classified since start.")
    max_batch: int = Field(description="Largest forward pass, in images.")
    rejected: int = Field(description="Requests refused with 503 because the queue was full.")
    waiting: int = Field(description="Requests accepted and not yet answered.")
    recent_batch_sizes: list[int] = Field(description="Sizes of the latest forward passes.")
    cached_models: list[str] = Field(description="Loaded model ids, least recently used first.")


def get_predictor(request: Request) -> Predictor:
    return request.app.state.predictor


def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]


@dataclass
class PredictForm:
    images: list[bytes]
    model: str | None = None
    top_k: int = DEFAULT_TOP_K


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _FormCollector:
    """python-multipart callbacks that keep every part's name, file name and bytes."""

    def __init__(self, max_parts: int) -> None:
        self.max_parts = max_parts
        self.parts: list[_Part] = []
        self.ended = False
        self._part = _Part()
        self._headers: dict[bytes, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self._part.data.extend(data[start:end]),
            "on_part_end": lambda: self.parts.append(self._part),
            "on_end": self._end,
        }

    def _begin(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise TooLarge(f"too many form fields (at most {self.max_parts})")
        self._part = _Part()
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        kind, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        if kind != b"form-data" or name is None:
            raise ApiError("a multipart part without Content-Disposition: form-data; name=...")
        self._part.name = name.decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._part.filename = filename.decode("utf-8", "replace") if filename else None

    def _end(self) -> None:
        self.ended = True


async def read_form(request: Request, max_bytes: int, max_images: int) -> PredictForm:
    """The ``image``, ``model`` and ``top_k`` fields of a multipart body of at most
    ``max_bytes`` bytes, enforced while the body streams in.

    Raises:
        TooLarge: The body is (or says it is) larger than ``max_bytes``, or it has more
            than ``max_images`` images.
        ApiError: Not a well-formed multipart/form-data body (400).
        Unprocessable: A field is missing or has a bad value (422).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(f"invalid Content-Length: {declared[:40]!r}")
        if int(declared) > max_bytes:
            raise TooLarge(f"request body of {declared} bytes is over the {max_bytes} limit")
    kind, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError("expected a multipart/form-data body (with a boundary)")
    collector = _FormCollector(max_parts=max_images + 8)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise TooLarge(f"request body over the {max_bytes} bytes limit")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:  # python-multipart's parse errors and limits
        raise ApiError(f"malformed multipart body: {exc}") from exc
    if not collector.ended:
        raise ApiError("incomplete multipart body (it ends before its closing boundary)")
    return _form(collector.parts, max_images)


def _form(parts: list[_Part], max_images: int) -> PredictForm:
    unknown = sorted({p.name for p in parts} - set(FORM_FIELDS))
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise Unprocessable(f"unknown form field {names}; the fields are {', '.join(FORM_FIELDS)}")
    images = [bytes(p.data) for p in parts if p.name == "image"]
    if not images:
        raise Unprocessable("missing form field 'image' (the image file)")
    if len(images) > max_images:
        if max_images == 1:
            raise Unprocessable("one 'image' per request; send several to /predict/batch")
        raise TooLarge(f"{len(images)} images is over the limit of {max_images} per request")
    form = PredictForm(images=images)
    for name in ("model", "top_k"):
        values = [p.data.decode("utf-8", "replace").strip() for p in parts if p.name == name]
        if len(values) > 1:
            raise Unprocessable(f"form field {name!r} given {len(values)} times")
        if not values or not values[0]:
            continue
        if name == "model":
            form.model = values[0]
        else:
            form.top_k = _top_k(values[0])
    return form


def _top_k(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise Unprocessable(f"top_k must be an integer. Received: top_k={text[:40]!r}") from None
    if value < 1:
        raise Unprocessable(f"top_k must be at least 1. Received: top_k={value}")
    return value


@contextmanager
def _http_errors() -> Iterator[None]:
    """Maps the serving and batching exceptions to their HTTP answers, once."""
    try:
        yield
    except ModelNotFound as exc:
        raise NotFound(str(exc)) from exc
    except NoModelYet as exc:
        raise Conflict(str(exc)) from exc
    except ImageTooLarge as exc:
        raise TooLarge(str(exc)) from exc
    except BadImage as exc:
        raise ApiError(str(exc)) from exc
    except QueueFull as exc:
        raise Unavailable(str(exc), headers={"Retry-After": str(exc.retry_after)}) from exc
    except PredictorClosed as exc:
        raise Unavailable(str(exc), headers={"Retry-After": "5"}) from exc
    except ModelBroken as exc:
        raise ServerFault(str(exc)) from exc


def _prepare(
    cache: ModelCache, store: JobStore, settings: Settings, form: PredictForm
) -> tuple[LoadedModel, np.ndarray]:
    """Worker thread: find and load the model, decode the images."""
    model = get_model(cache, store, settings, form.model)
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
    request: Request,
    settings: Settings,
    store: JobStore,
    cache: ModelCache,
    predictor: Predictor,
    max_images: int,
) -> tuple[str, list[list[dict[str, Any]]]]:
    """Reads the form, classifies its images; returns the model id and each image's top k."""
    with _http_errors():
        # Refuse before reading the body when the queue is already full.
        predictor.check_admission()
        form = await read_form(request, settings.max_upload_bytes, max_images)
        model, pixels = await run_in_threadpool(_prepare, cache, store, settings, form)
        probabilities = await predictor.predict(model, pixels)
    k = min(form.top_k, model.num_classes)
    return model.id, [top_k(p, k, model.class_names) for p in probabilities]


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
    model_id, results = await classify(request, settings, store, cache, predictor, 1)
    return PredictAnswer.model_validate({"model": model_id, "predictions": results[0]})


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
    model_id, results = await classify(request, settings, store, cache, predictor, max_images)
    return BatchPredictAnswer.model_validate(
        {"model": model_id, "results": [{"predictions": r} for r in results]}
    )


@router.get("/stats")
async def predict_stats(cache: ModelCacheDep, predictor: PredictorDep) -> PredictStats:
    """Batching at work (an extension of the contract, for operators and tests):
    `{"batches", "images", "max_batch", "rejected", "waiting", "recent_batch_sizes",
    "cached_models"}`; `recent_batch_sizes` holds the sizes of the latest forward passes,
    so concurrent requests gathered into one pass show up as sizes above 1."""
    return PredictStats(
        **predictor.stats.snapshot(), waiting=predictor.waiting, cached_models=cache.ids()
    )
