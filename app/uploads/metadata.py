"""tus request headers: Upload-Metadata, Upload-Length, Upload-Offset, parsed and checked."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from app.uploads.errors import UploadInvalid
from core.archives import archive_suffix
from core.names import NAME_PATTERN, is_valid_name


@dataclass(frozen=True)
class UploadRequest:
    """What a creation request asks for: the source's name and the archive's suffix."""

    name: str
    filename: str
    suffix: str  # ".zip" | ".tar" | ".tar.gz"
    metadata: dict[str, str]


def parse_metadata(header: str | None) -> dict[str, str]:
    """`key base64value, key2 base64value2, key3` (tus 1.0.0) as a dict of text values."""
    if not header or not header.strip():
        return {}
    pairs: dict[str, str] = {}
    for item in header.split(","):
        fields = item.strip().split(" ")
        key = fields[0]
        if not key or len(fields) > 2 or key in pairs:
            raise UploadInvalid(f"malformed Upload-Metadata entry: {item.strip()[:100]!r}")
        try:
            value = base64.b64decode(fields[1], validate=True) if len(fields) == 2 else b""
            pairs[key] = value.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise UploadInvalid(
                f"Upload-Metadata value of {key[:64]!r} is not base64 UTF-8"
            ) from None
    return pairs


def upload_request(header: str | None) -> UploadRequest:
    """The checked metadata of a creation request.

    Raises:
        UploadInvalid: `name` missing or not a valid name, `filename` missing or not an
            archive (.zip, .tar, .tar.gz, .tgz).
    """
    metadata = parse_metadata(header)
    name = metadata.get("name")
    if not name:
        raise UploadInvalid("Upload-Metadata needs a 'name': the source's name")
    if not is_valid_name(name):
        raise UploadInvalid(f"name must match {NAME_PATTERN}. Received: {name[:100]!r}")
    filename = metadata.get("filename")
    if not filename:
        raise UploadInvalid("Upload-Metadata needs a 'filename' ending .zip, .tar or .tar.gz")
    suffix = archive_suffix(filename)
    if suffix is None:
        raise UploadInvalid(
            f"filename must end .zip, .tar, .tar.gz or .tgz. Received: {filename[:100]!r}"
        )
    return UploadRequest(name, filename, suffix, metadata)


def parse_int_header(name: str, value: str | None) -> int:
    """A required non-negative decimal header (Upload-Length, Upload-Offset)."""
    if value is None:
        raise UploadInvalid(f"missing {name} header")
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise UploadInvalid(f"{name} must be a non-negative integer. Received: {value[:40]!r}")
    return int(text)
