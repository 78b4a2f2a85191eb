"""The dashboard's files, shipped as package data: found once, served from memory.

Only files that exist under ``static/`` when the process starts can be named, so no request
path can reach anything else. Text files are also kept gzip-compressed for clients that
accept it (Swagger UI's bundle is 1.7 MB as it is, 0.46 MB compressed).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE, VERSION
}
_COMPRESSIBLE = (".html", ".js", ".css", ".svg", ".txt", "")


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, compressed bytes (or None), media type and ETag."""

    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str
    immutable: bool  # a vendored library: its name changes with its version folder


def _suffix(name: str) -> str:
    return name[name.rfind(".") :] if "." in name else ""


def _walk(folder: Traversable, prefix: str) -> dict[str, Traversable]:
    found: dict[str, Traversable] = {}
    for entry in folder.iterdir():
        path = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.update(_walk(entry, f"{path}/"))
        elif _suffix(entry.name) in MEDIA_TYPES:
            found[path] = entry
    return found


def _load(path: str, entry: Traversable) -> Asset:
    body = entry.read_bytes()
    suffix = _suffix(path.rsplit("/", 1)[-1])
    gzipped = gzip.compress(body, 6, mtime=0) if suffix in _COMPRESSIBLE else None
    if gzipped is not None and len(gzipped) >= len(body):
        gzipped = None
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, gzipped, MEDIA_TYPES[suffix], etag, path.startswith("vendor/"))


@cache
def static_assets() -> dict[str, Asset]:
    """Every file under ``static/``, keyed by its path relative to it."""
    root = resources.files("app.dashboard") / "static"
    return {path: _load(path, entry) for path, entry in _walk(root, "").items()}
