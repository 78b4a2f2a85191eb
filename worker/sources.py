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

Scanning only lists files; whether a file really is an image is decided when it is
written (``worker.sharding``, ``core.images``), so one bad file never fails a scan.
"""

from __future__ import annotations

import os
import posixpath
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core.archives import ArchiveError, TarMembers, is_tar_path
from core.manifest import ClassEntry

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})

TINY_IMAGENET = "tiny-imagenet"
CLASS_FOLDERS = "class-folders"


class SourceError(ValueError):
    """A source that cannot be used, with a message meant for the user."""


@dataclass(frozen=True)
class Item:
    """One image of a split.

    Attributes:
        key: Where to read it: a path relative to the source folder, or a zip member name.
        label_index: Index of its class in ``Source.classes``.
        wnid: Its class id.
        filename: Its path relative to the layout's root (no zip top folder), which is the
            same whether the source is a folder or its zip: a stable identity for the image.
    """

    key: str
    label_index: int
    wnid: str
    filename: str


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
        tree = _Tree(names, files)
        root, layout = _find_layout(tree)
        if layout == TINY_IMAGENET:
            classes, splits = _scan_tiny_imagenet(tree, root)
        else:
            classes, splits = _scan_class_folders(tree, root)
    except BaseException:
        files.close()
        raise
    source = Source(path, layout, root, classes, splits, files)
    if source.count == 0:
        files.close()
        raise SourceError(f"source {path.name} holds no images ({_describe(layout)} layout)")
    return source


def names_layout(names: Iterable[str]) -> str | None:
    """The layout of a source holding files of these names (relative posix paths), as
    `scan_source` finds it, or None: how a folder source in an object store is recognized
    from its keys alone."""
    visible = [n for n in names if not any(part.startswith(".") for part in n.split("/"))]
    try:
        return _find_layout(_Tree(visible, None))[1]
    except SourceError:
        return None


def is_image_name(name: str) -> bool:
    base = posixpath.basename(name)
    return not base.startswith(".") and posixpath.splitext(base)[1].lower() in IMAGE_EXTENSIONS


class _Tree:
    """The file names of a source, indexed by folder, plus a way to read text files."""

    def __init__(self, names: Iterable[str], files: SourceFiles | None) -> None:
        self.files = files
        self.name_set: set[str] = set()
        self._files: dict[str, set[str]] = {}
        self._folders: dict[str, set[str]] = {}
        for name in names:
            self.name_set.add(name)
            folder, base = posixpath.split(name)
            self._files.setdefault(folder, set()).add(base)
            while folder:  # register every ancestor, so empty-of-files folders are seen
                parent, child = posixpath.split(folder)
                self._folders.setdefault(parent, set()).add(child)
                folder = parent

    def has(self, name: str) -> bool:
        return name in self.name_set

    def read_text(self, name: str) -> str:
        assert self.files is not None, "a tree of names only cannot read files"
        return self.files.read(name).decode("utf-8", errors="replace")

    def children(self, folder: str) -> tuple[set[str], set[str]]:
        """The sub-folder names and file names directly inside ``folder``."""
        return self._folders.get(folder, set()), self._files.get(folder, set())


def _join(*parts: str) -> str:
    return posixpath.join(*[part for part in parts if part])


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
            _join(relative, name)
            for name in filenames
            if not name.startswith(".") and not os.path.islink(os.path.join(folder, name))
        )
    return names


def _find_layout(tree: _Tree) -> tuple[str, str]:
    """Returns (root folder, layout): at the top, or inside a single top folder."""
    layout = _layout_at(tree, "")
    if layout is not None:
        return "", layout
    folders, files = tree.children("")
    if len(folders) == 1 and not any(is_image_name(name) for name in files):
        (top,) = folders
        layout = _layout_at(tree, top)
        if layout is not None:
            return top, layout
    raise SourceError(
        "unknown source layout: expected a Tiny ImageNet folder (wnids.txt, train/), "
        "a class-per-folder tree (<class>/*.jpg), or a .zip of either"
    )


def _layout_at(tree: _Tree, root: str) -> str | None:
    if tree.has(_join(root, "wnids.txt")):
        return TINY_IMAGENET
    folders, _ = tree.children(root)
    for folder in folders:
        _, files = tree.children(_join(root, folder))
        if any(is_image_name(name) for name in files):
            return CLASS_FOLDERS
    return None


def _describe(layout: str) -> str:
    return "Tiny ImageNet" if layout == TINY_IMAGENET else "class-per-folder"


def _read_lines(tree: _Tree, name: str) -> list[str]:
    if not tree.has(name):
        return []
    return [line.strip() for line in tree.read_text(name).splitlines() if line.strip()]


def _scan_tiny_imagenet(tree: _Tree, root: str) -> tuple[list[ClassEntry], dict[str, list[Item]]]:
    wnids = list(dict.fromkeys(_read_lines(tree, _join(root, "wnids.txt"))))
    if not wnids:
        raise SourceError("wnids.txt is empty: a Tiny ImageNet source needs its list of classes")
    labels: dict[str, str] = {}
    for line in _read_lines(tree, _join(root, "words.txt")):
        wnid, _, label = line.partition("\t")
        labels.setdefault(wnid.strip(), label.strip())
    classes = [
        ClassEntry(index=index, wnid=wnid, label=labels.get(wnid) or wnid)
        for index, wnid in enumerate(wnids)
    ]
    index_of = {info.wnid: info.index for info in classes}
    splits = {"train": _tiny_train_items(tree, root, index_of)}
    val = _tiny_val_items(tree, root, index_of)
    if val:
        splits["val"] = val
    return classes, splits


def _tiny_train_items(tree: _Tree, root: str, index_of: dict[str, int]) -> list[Item]:
    items = []
    for wnid, index in index_of.items():
        folder = _join(root, "train", wnid, "images")
        _, files = tree.children(folder)
        for name in sorted(files):
            if is_image_name(name):
                key = _join(folder, name)
                items.append(Item(key, index, wnid, _relative(key, root)))
    return items


def _tiny_val_items(tree: _Tree, root: str, index_of: dict[str, int]) -> list[Item]:
    items = []
    for line in _read_lines(tree, _join(root, "val", "val_annotations.txt")):
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        name, wnid = fields[0].strip(), fields[1].strip()
        key = _join(root, "val", "images", name)
        # Images of classes outside wnids.txt, or listed but absent, are not part of it.
        if wnid in index_of and tree.has(key) and is_image_name(name):
            items.append(Item(key, index_of[wnid], wnid, _relative(key, root)))
    items.sort(key=lambda item: item.key)
    return items


def _scan_class_folders(tree: _Tree, root: str) -> tuple[list[ClassEntry], dict[str, list[Item]]]:
    folders, _ = tree.children(root)
    classes: list[ClassEntry] = []
    items: list[Item] = []
    for folder in sorted(folders):
        _, files = tree.children(_join(root, folder))
        images = sorted(name for name in files if is_image_name(name))
        if not images:
            continue
        info = ClassEntry(index=len(classes), wnid=folder, label=folder)
        classes.append(info)
        for name in images:
            key = _join(root, folder, name)
            items.append(Item(key, info.index, info.wnid, _relative(key, root)))
    return classes, {"train": items}


def _relative(key: str, root: str) -> str:
    return key[len(root) + 1 :] if root else key
