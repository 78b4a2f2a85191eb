"""Client-supplied names and paths: validated once, never allowed outside the data root."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)

# Linux limits: a path component (NAME_MAX) and a whole path (PATH_MAX, with its NUL).
MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4095


class UnsafePathError(ValueError):
    """A client path that is malformed or resolves outside the data root."""


def is_valid_name(name: str) -> bool:
    # fullmatch: a trailing newline, which `$` alone lets through, is refused too.
    return bool(_NAME_RE.fullmatch(name))


def is_within(root: Path, path: Path) -> bool:
    """Whether `path`, every symlink on it resolved, is `root` or lies under it.

    Anything that cannot be resolved (a symlink loop, an unencodable or overlong name) is
    treated as outside.
    """
    try:
        root = root.resolve()
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop (3.11, 3.12)
        return False
    return resolved == root or root in resolved.parents


def resolve_under(root: Path, relative: str) -> Path:
    """Resolve a client path relative to `root`, refusing anything that escapes it.

    Absolute paths, `..` components, NUL bytes, backslashes, names the file system cannot
    hold (undecodable text, components over 255 bytes) and symlinks that point outside the
    root (or loop) are all refused: the check is made on the fully resolved path.
    Percent-escapes are not decoded: `%2e%2e` is a file name of six characters.
    """
    if not relative or "\x00" in relative or "\\" in relative:
        raise UnsafePathError(f"invalid path. Received: {relative[:200]!r}")
    try:
        # Strict UTF-8: a lone surrogate (JSON's "\ud800") names no file, and could not be
        # written back in a JSON answer either.
        encoded = relative.encode("utf-8")
    except UnicodeError:
        raise UnsafePathError(f"invalid path. Received: {relative[:200]!r}") from None
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise UnsafePathError(
            f"path must be relative to the data root. Received: {relative[:200]!r}"
        )
    if len(encoded) > MAX_PATH_BYTES or any(
        len(part.encode()) > MAX_COMPONENT_BYTES for part in pure.parts
    ):
        raise UnsafePathError(f"path too long. Received: {relative[:200]!r}")
    try:
        root = root.resolve()
        resolved = (root / pure).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (3.11, 3.12)
        raise UnsafePathError(f"path cannot be resolved. Received: {relative[:200]!r}") from exc
    if resolved != root and root not in resolved.parents:
        raise UnsafePathError(f"path leaves the data root. Received: {relative[:200]!r}")
    return resolved
