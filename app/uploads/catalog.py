"""The sources a shard job accepts, as GET /sources lists them, and removing uploaded ones.

Listed: the top-level entries of `<data root>/sources/` (origin "disk": put there by
hand) and of `<data root>/uploads/` (origin "upload": accepted tus uploads). A folder is
listed when it looks like a Tiny ImageNet or class-per-folder layout (at its top or under
one top folder, as worker/sources.py reads it); a file when it is a .zip, .tar, .tar.gz
or .tgz. Hidden entries and symbolic links are not listed. Any other path under the data
root is still accepted by POST /jobs/shard; it is just not listed.

With an object store (``core/files.py``) the same entries are listed from its keys
(``sources/...`` and ``uploads/...``): a folder is a prefix whose keys form a layout
(``worker.sources.names_layout``), its bytes the sum of its objects'.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.uploads.errors import SourceInUse, SourceNotDeletable, SourceNotFound
from core import layout
from core.archives import KINDS, archive_suffix
from core.config import Settings
from core.files import Files, files_for
from core.jobs import JobStore
from core.names import UnsafePathError, resolve_under
from worker.sources import names_layout

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_PEEK = 200  # entries looked at per folder when deciding whether it holds images


@dataclass(frozen=True)
class SourceEntry:
    path: str  # relative to the data root: what POST /jobs/shard takes as `source`
    kind: str  # "folder" | "zip" | "tar"
    bytes: int
    origin: str  # "upload" | "disk"


def list_sources(settings: Settings) -> list[SourceEntry]:
    files = files_for(settings)
    if files.remote:
        return _stored_sources(files)
    root = settings.resolved_data_root
    found: list[SourceEntry] = []
    for folder, origin in (
        (layout.sources_root(settings), "disk"),
        (layout.uploads_root(settings), "upload"),
    ):
        if not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            entry_kind = _kind(entry)
            if entry_kind is None:
                continue
            size = entry.stat().st_size if entry_kind != "folder" else _folder_bytes(entry.path)
            path = Path(entry.path).relative_to(root).as_posix()
            found.append(SourceEntry(path, entry_kind, size, origin))
    return found


def _stored_sources(files: Files) -> list[SourceEntry]:
    found: list[SourceEntry] = []
    for top, origin in (("sources", "disk"), ("uploads", "upload")):
        archives: dict[str, str] = {}
        folders: dict[str, list[str]] = {}
        for key in files.list(top):
            first, _, below = key.removeprefix(f"{top}/").partition("/")
            if first.startswith("."):
                continue
            suffix = archive_suffix(first)
            if not below and suffix:
                archives[first] = KINDS[suffix]
            elif below:
                folders.setdefault(first, []).append(below)
        for name in sorted({*archives, *folders}):
            prefix = f"{top}/{name}"
            if name in archives:
                size = files.info(prefix).size
                found.append(SourceEntry(prefix, archives[name], size, origin))
            elif names_layout(folders[name]) is not None:
                size = sum(files.info(f"{prefix}/{below}").size for below in folders[name])
                found.append(SourceEntry(prefix, "folder", size, origin))
    return found


def _kind(entry: os.DirEntry[str]) -> str | None:
    if entry.name.startswith(".") or entry.is_symlink():
        return None
    if entry.is_file():
        suffix = archive_suffix(entry.name)
        return KINDS[suffix] if suffix else None
    if entry.is_dir() and _looks_like_source(Path(entry.path)):
        return "folder"
    return None


def _looks_like_source(folder: Path, depth: int = 0) -> bool:
    if (folder / "wnids.txt").is_file():
        return True
    children = [p for p in _peek(folder) if not p.name.startswith(".") and not p.is_symlink()]
    subfolders = [p for p in children if p.is_dir()]
    if any(_holds_images(sub) for sub in subfolders):
        return True
    # One top folder, as the official tiny-imagenet-200.zip has, read the same way.
    return depth == 0 and len(subfolders) == 1 and _looks_like_source(subfolders[0], 1)


def _peek(folder: Path) -> list[Path]:
    paths = []
    with os.scandir(folder) as entries:
        for entry in entries:
            paths.append(Path(entry.path))
            if len(paths) >= _PEEK:
                break
    return paths


def _holds_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in _peek(folder))


def _folder_bytes(path: str) -> int:
    total = 0
    for folder, subfolders, files in os.walk(path, followlinks=False):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            full = os.path.join(folder, name)
            if not name.startswith(".") and not os.path.islink(full):
                total += os.stat(full).st_size
    return total


def delete_source(settings: Settings, store: JobStore, relative: str) -> None:
    """Remove the uploaded source `relative` (e.g. "uploads/digits.zip").

    Raises:
        SourceNotFound: No such source.
        SourceNotDeletable: It is not an uploaded one (those on the server's disk stay).
        SourceInUse: A queued or running shard job reads it.
    """
    try:
        path = resolve_under(settings.resolved_data_root, relative)
    except UnsafePathError:
        raise SourceNotFound(f"no source {relative[:200]!r}") from None
    files = files_for(settings)
    uploads = layout.uploads_root(settings)
    listed = {entry.path for entry in list_sources(settings)}
    relative_path = path.relative_to(settings.resolved_data_root).as_posix()
    if relative_path not in listed:
        raise SourceNotFound(f"no source {relative[:200]!r}")
    is_file = files.exists(relative_path) if files.remote else path.is_file()
    if path.parent != uploads or not is_file:
        raise SourceNotDeletable(
            f"{relative_path} is on the server's disk, not an upload: it is not deleted "
            "through the API"
        )
    for state in ("queued", "running"):
        for job in store.list_jobs(kind="shard", state=state):
            if _same_source(settings, str(job.params.get("source", "")), path):
                raise SourceInUse(f"shard job {job.id} ({state}) reads {relative_path}")
    if files.remote:
        files.delete(relative_path)
    else:
        path.unlink(missing_ok=True)


def _same_source(settings: Settings, source: str, path: Path) -> bool:
    try:
        return resolve_under(settings.resolved_data_root, source) == path
    except UnsafePathError:
        return False
