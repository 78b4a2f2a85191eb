"""The multipart body of a prediction request, read from the raw ASGI stream.

It is read here instead of through FastAPI's ``Form``/``UploadFile`` parameters: those
buffer the whole body (spooling it to a temporary file) before the route runs, so a size
check in the route would come after the upload. Here the ``Content-Length`` a client
declares is checked before a byte is read, and the bytes actually received are counted
chunk by chunk as they arrive, so a missing or lying ``Content-Length`` (or a chunked body)
is cut off at ``max_bytes`` too. The limit covers the whole body, form overhead included;
python-multipart's streaming parser splits it into fields as it comes, with its own bounds
on part headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

DEFAULT_TOP_K = 5
FORM_FIELDS = ("image", "model", "top_k")


class MalformedBody(ValueError):
    """Not a well-formed multipart/form-data body."""


class BodyTooLarge(ValueError):
    """The body is (or says it is) over the byte limit, or has too many parts or images."""


class FormFieldInvalid(ValueError):
    """A form field is missing, unknown, repeated or has a bad value."""


@dataclass
class PredictForm:
    """The fields of a prediction request."""

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
            raise BodyTooLarge(f"too many form fields (at most {self.max_parts})")
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
            raise MalformedBody("a multipart part without Content-Disposition: form-data; name=...")
        self._part.name = name.decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._part.filename = filename.decode("utf-8", "replace") if filename else None

    def _end(self) -> None:
        self.ended = True


def _check_headers(headers: Mapping[str, str], max_bytes: int) -> bytes:
    """The multipart boundary, once the declared length and the content type are checked."""
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedBody(f"invalid Content-Length: {declared[:40]!r}")
        if int(declared) > max_bytes:
            raise BodyTooLarge(f"request body of {declared} bytes is over the {max_bytes} limit")
    kind, options = parse_options_header(headers.get("content-type"))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise MalformedBody("expected a multipart/form-data body (with a boundary)")
    return boundary


async def read_form(
    headers: Mapping[str, str], stream: AsyncIterable[bytes], max_bytes: int, max_images: int
) -> PredictForm:
    """The ``image``, ``model`` and ``top_k`` fields of a multipart body of at most
    ``max_bytes`` bytes, enforced while the body streams in.

    Args:
        headers: The request's headers (``Content-Length``, ``Content-Type``).
        stream: The body, chunk by chunk as it arrives.
        max_bytes: The most bytes the whole body may have.
        max_images: The most ``image`` fields.

    Raises:
        BodyTooLarge: The body is (or says it is) larger than ``max_bytes``, or it has more
            than ``max_images`` images.
        MalformedBody: Not a well-formed multipart/form-data body.
        FormFieldInvalid: A field is missing or has a bad value.
    """
    boundary = _check_headers(headers, max_bytes)
    collector = _FormCollector(max_parts=max_images + 8)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        received = 0
        async for chunk in stream:
            received += len(chunk)
            if received > max_bytes:
                raise BodyTooLarge(f"request body over the {max_bytes} bytes limit")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:  # python-multipart's parse errors and limits
        raise MalformedBody(f"malformed multipart body: {exc}") from exc
    if not collector.ended:
        raise MalformedBody("incomplete multipart body (it ends before its closing boundary)")
    return _form(collector.parts, max_images)


def _form(parts: list[_Part], max_images: int) -> PredictForm:
    unknown = sorted({p.name for p in parts} - set(FORM_FIELDS))
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise FormFieldInvalid(
            f"unknown form field {names}; the fields are {', '.join(FORM_FIELDS)}"
        )
    images = [bytes(p.data) for p in parts if p.name == "image"]
    if not images:
        raise FormFieldInvalid("missing form field 'image' (the image file)")
    if len(images) > max_images:
        if max_images == 1:
            raise FormFieldInvalid("one 'image' per request; send several to /predict/batch")
        raise BodyTooLarge(f"{len(images)} images is over the limit of {max_images} per request")
    form = PredictForm(images=images)
    for name in ("model", "top_k"):
        values = [p.data.decode("utf-8", "replace").strip() for p in parts if p.name == name]
        if len(values) > 1:
            raise FormFieldInvalid(f"form field {name!r} given {len(values)} times")
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
        raise FormFieldInvalid(f"top_k must be an integer. Received: top_k={text[:40]!r}") from None
    if value < 1:
        raise FormFieldInvalid(f"top_k must be at least 1. Received: top_k={value}")
    return value
