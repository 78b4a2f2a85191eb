"""Source datasets: find the images of a folder or a zip and the class each belongs to.

Three layouts are understood, found at the source's top or under a single top folder
(the official Tiny ImageNet zip holds everything under ``tiny-imagenet-200/``):

* Tiny ImageNet: ``wnids.txt`` fixes the classes and their order (index = line number),
  ``words.txt`` gives their human-readable labels (it may list many more wnids; a wnid it
  lacks is its own label), ``train/<wnid>/images/*`` is the train split and ``val/images/*``
  the val split, labelled by ``val/val_annotations.txt``. The ``test/`` split has no labels
  and is ignored.
* A plain class-per-folder tree: ``<class>/*.(jpg|jpeg|png|bmp|gif|webp)``, classes sorted by
  folder name, wnid = label = folder name, a train split only.
* The ``.zip``, ``.tar`` or ``.tar.gz`` of either, read in place: members are read one at a
  time, never extracted (a ``.tar.gz`` is decompressed once to a temporary ``.tar``).

The layouts themselves, recognized from file names, are ``worker.source_layouts``.
Scanning only lists files; whether a file really is an image is decided when it is
written (``worker.sharding``, ``core.images``), so one bad file never fails a scan.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core.archives import ArchiveError, TarMembers, is_tar_path
from core.manifest import ClassEntry
from worker.source_layouts import (
    CLASS_FOLDERS,
    IMAGE_EXTENSIONS,
    TINY_IMAGENET,
    Item,
    NameTree,
    SourceError,
    describe_layout,
    find_layout,
    is_image_name,
    join_parts,
    scan_class_folders,
    scan_tiny_imagenet,
)


class SourceFiles:
    """Reads files of a source folder or zip by key; the zip is opened on first use.

    One instance serves one process: after a fork the zip is reopened, since a shared file
    offset would mix up reads.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.is_tar = self.path.is_file() and is_tar_path(self.path)
        self.is_zip = self.path.is_file() and not self.is_tar
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._tar: TarMembers | None = None
        self._tar_pid: int | None = None

    def read(self, key: str) -> bytes:
        if self.is_tar:
            return self.tar_members().read(key)
        if not self.is_zip:
            return (self.path / key).read_bytes()
        return self._archive().read(key)

    def tar_members(self) -> TarMembers:
        """The tar's members (a .tar.gz is decompressed once per process, on first use)."""
        if self._tar is None or self._tar_pid != os.getpid():
            try:
                self._tar = TarMembers(self.path)
            except ArchiveError as exc:
                raise SourceError(str(exc)) from exc
            self._tar_pid = os.getpid()
        return self._tar

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = _open_zip(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None
        if self._tar is not None and self._tar_pid == os.getpid():
            self._tar.close()
        self._tar = None

    def __enter__(self) -> SourceFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Source:
    """A scanned source: its classes, its splits, and a way to read each item."""

    path: Path
    layout: str
    root: str  # folder of the layout inside the source ("" or a top folder), posix
    classes: list[ClassEntry]
    splits: dict[str, list[Item]]
    files: SourceFiles = field(repr=False)

    def read(self, item: Item) -> bytes:
        return self.files.read(item.key)

    @property
    def count(self) -> int:
        return sum(len(items) for items in self.splits.values())

    def close(self) -> None:
        self.files.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scan_source(path: Path) -> Source:
    """List the classes and images of a source folder or zip.

    Raises:
        SourceError: The path is missing, is not a usable zip, matches no known layout,
            or holds no images.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"source not found: {path.name}")
    files = SourceFiles(path)
    try:
        if files.is_tar:
            names = [n for n in files.tar_members().names() if not n.startswith("__MACOSX/")]
        else:
            names = _zip_names(path, files) if files.is_zip else _folder_names(path)
        tree = NameTree(names, files)
        root, layout = find_layout(tree)
        if layout == TINY_IMAGENET:
            classes, splits = scan_tiny_imagenet(tree, root)
        else:
            classes, splits = scan_class_folders(tree, root)
    except BaseException:
        files.close()
        raise
    source = Source(path, layout, root, classes, splits, files)
    if source.count == 0:
        files.close()
        raise SourceError(f"source {path.name} holds no images ({describe_layout(layout)} layout)")
    return source


def names_layout(names: Iterable[str]) -> str | None:
    """The layout of a source holding files of these names (relative posix paths), as
    `scan_source` finds it, or None: how a folder source in an object store is recognized
    from its keys alone."""
    visible = [n for n in names if not any(part.startswith(".") for part in n.split("/"))]
    try:
        return find_layout(NameTree(visible, None))[1]
    except SourceError:
        return None


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"source {path.name} is not a readable zip file: {exc}") from exc


def _zip_names(path: Path, files: SourceFiles) -> list[str]:
    if not zipfile.is_zipfile(path):
        raise SourceError(
            f"source {path.name} is a file but not a zip; expected a folder or a .zip"
        )
    # Skip macOS resource forks and folder entries; keep member names as they are for reading.
    return [
        info.filename
        for info in files._archive().infolist()
        if not info.is_dir() and not info.filename.startswith("__MACOSX/")
    ]


def _folder_names(path: Path) -> list[str]:
    # Symbolic links are skipped: they could point outside the data root.
    names: list[str] = []
    for folder, subfolders, filenames in os.walk(path, followlinks=False):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        relative = Path(folder).relative_to(path).as_posix()
        relative = "" if relative == "." else relative
        names.extend(
            join_parts(relative, name)
            for name in filenames
            if not name.startswith(".") and not os.path.islink(os.path.join(folder, name))
        )
    return names


# Re-exported: callers import the layouts' names from here, with the scanning.
__all__ = [
    "CLASS_FOLDERS",
    "IMAGE_EXTENSIONS",
    "TINY_IMAGENET",
    "Item",
    "Source",
    "SourceError",
    "SourceFiles",
    "is_image_name",
    "names_layout",
    "scan_source",
]
