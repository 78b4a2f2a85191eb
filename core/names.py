"""Client-supplied names and paths: validated once, never allowed outside the data root."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


class UnsafePathError(ValueError):
    """A client path that is malformed or resolves outside the data root."""


def is_valid_name(name: str) -> bool:
    return bool(_NAME_RE.fullmatch(name))


def resolve_under(root: Path, relative: str) -> Path:
    """Resolve a client path relative to `root`, refusing anything that escapes it.

    Absolute paths, `..` components, NUL bytes and symlinks that point outside the root
    are all refused: the check is made on the fully resolved path.
    """
    if not relative or "\x00" in relative or "\\" in relative:
        raise UnsafePathError(f"invalid path. Received: {relative!r}")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise UnsafePathError(f"path must be relative to the data root. Received: {relative!r}")
    root = root.resolve()
    resolved = (root / pure).resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafePathError(f"path leaves the data root. Received: {relative!r}")
    return resolved
