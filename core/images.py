"""The one image decoder of training and serving: which files are images, and their pixels.

Sharding and ``/predict`` both pass a file through ``to_stored``, and then through the same
TensorFlow decode (``core.tf_decode.decode_image``), so the same file always gives
the same pixels whether it was sharded or uploaded. Pillow and NumPy only, no TensorFlow.

* Formats: JPEG, PNG, BMP, GIF and WebP (camera JPEGs that Pillow opens as "MPO" come
  through "JPEG"). Never EPS and the like, whose Pillow plugins run external programs.
* Size: an image of more than ``max_pixels`` pixels is refused from its header alone,
  before anything is decoded (a few KB of PNG can claim 20000x20000 pixels). The bound is
  explicit, not Pillow's process-wide ``Image.MAX_IMAGE_PIXELS``.
* Every accepted file is fully decoded, so a truncated or corrupt one is refused here.
* What is stored: an RGB JPEG without an EXIF rotation is kept byte for byte (no
  re-encoding loss, and decoding it gives exactly the source's pixels); any other image
  (palette, 16-bit, CMYK, alpha, grayscale, EXIF-rotated; PNG, BMP, GIF, WebP) is
  converted to 8-bit RGB and stored as lossless PNG. Alpha is dropped, 16-bit samples are
  scaled to 8 bits (``round(v / 257)``), an EXIF orientation is applied. Images are never
  resized here: ``model.preprocessing`` resizes for both training and serving.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
MAX_SOURCE_PIXELS = 40_000_000
JPEG, PNG = "jpeg", "png"

# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageRejected(ValueError):
    """A file that is not an accepted image: empty, not an image, truncated or corrupt.

    The message is the reason, meant for the user.
    """


class ImageTooLarge(ImageRejected):
    """An image of more pixels than the limit (a decompression bomb, or just too big)."""


@dataclass(frozen=True)
class StoredImage:
    """What a shard stores of one image: encoded bytes that decode to RGB uint8 pixels."""

    data: bytes
    format: str  # JPEG or PNG


def to_stored(data: bytes, max_pixels: int = MAX_SOURCE_PIXELS) -> StoredImage:
    """Check that ``data`` is a whole accepted image and choose what to store of it.

    Returns:
        The bytes as they are for an upright RGB JPEG, else the image converted to RGB
        and encoded as PNG.

    Raises:
        ImageTooLarge: More than ``max_pixels`` pixels.
        ImageRejected: Empty, not an image of an accepted format, truncated or corrupt.
    """
    if not data:
        raise ImageRejected("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageTooLarge(
                        f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels"
                    )
                image.load()
                orientation = _orientation(image)
                if image.format == "JPEG" and image.mode == "RGB" and orientation == 1:
                    return StoredImage(data, JPEG)
                rgb = to_rgb(image, orientation)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image over the pixel limit: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("not an image, or not a JPEG, PNG, GIF, BMP or WebP one") from exc
    except Exception as exc:  # Pillow's decoders raise many kinds; any of them means "bad"
        raise ImageRejected(f"undecodable image (truncated or corrupt): {_reason(exc)}") from exc
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return StoredImage(buffer.getvalue(), PNG)


def to_rgb(image: Image.Image, orientation: int = 1) -> Image.Image:
    """8-bit RGB pixels of any Pillow image, upright; 16-bit samples scaled, alpha dropped."""
    if image.mode.startswith("I"):  # 16-bit grayscale ("I;16", or "I" from older Pillow)
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        gray = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        rgb = Image.fromarray(gray, "L").convert("RGB")
    elif image.mode in ("P", "PA"):
        # Via RGBA, so palette transparency is read as alpha (then dropped) without warnings.
        rgb = image.convert("RGBA").convert("RGB")
    else:
        rgb = image.convert("RGB")
    upright = _UPRIGHT.get(orientation)
    return rgb if upright is None else rgb.transpose(upright)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block is no reason to refuse the pixels
        return 1
    return value if isinstance(value, int) else 1


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"[:300]
