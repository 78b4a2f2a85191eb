"""The layouts of a source, recognized from its file names alone (no file is opened but
the small text files a layout names): Tiny ImageNet and a class-per-folder tree, at the top
or under a single top folder. ``worker.sources`` opens folders and archives and uses these.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

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


class Readable(Protocol):
    """What a tree needs to read a layout's text files (``worker.sources.SourceFiles``)."""

    def read(self, key: str) -> bytes: ...


def is_image_name(name: str) -> bool:
    base = posixpath.basename(name)
    return not base.startswith(".") and posixpath.splitext(base)[1].lower() in IMAGE_EXTENSIONS


class NameTree:
    """The file names of a source, indexed by folder, plus a way to read text files."""

    def __init__(self, names: Iterable[str], files: Readable | None) -> None:
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


def join_parts(*parts: str) -> str:
    return posixpath.join(*[part for part in parts if part])


def find_layout(tree: NameTree) -> tuple[str, str]:
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


def _layout_at(tree: NameTree, root: str) -> str | None:
    if tree.has(join_parts(root, "wnids.txt")):
        return TINY_IMAGENET
    folders, _ = tree.children(root)
    for folder in folders:
        _, files = tree.children(join_parts(root, folder))
        if any(is_image_name(name) for name in files):
            return CLASS_FOLDERS
    return None


def describe_layout(layout: str) -> str:
    return "Tiny ImageNet" if layout == TINY_IMAGENET else "class-per-folder"


def _read_lines(tree: NameTree, name: str) -> list[str]:
    if not tree.has(name):
        return []
    return [line.strip() for line in tree.read_text(name).splitlines() if line.strip()]


def scan_tiny_imagenet(tree: NameTree, root: str) -> tuple[list[ClassEntry], dict[str, list[Item]]]:
    wnids = list(dict.fromkeys(_read_lines(tree, join_parts(root, "wnids.txt"))))
    if not wnids:
        raise SourceError("wnids.txt is empty: a Tiny ImageNet source needs its list of classes")
    labels: dict[str, str] = {}
    for line in _read_lines(tree, join_parts(root, "words.txt")):
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


def _tiny_train_items(tree: NameTree, root: str, index_of: dict[str, int]) -> list[Item]:
    items = []
    for wnid, index in index_of.items():
        folder = join_parts(root, "train", wnid, "images")
        _, files = tree.children(folder)
        for name in sorted(files):
            if is_image_name(name):
                key = join_parts(folder, name)
                items.append(Item(key, index, wnid, _relative(key, root)))
    return items


def _tiny_val_items(tree: NameTree, root: str, index_of: dict[str, int]) -> list[Item]:
    items = []
    for line in _read_lines(tree, join_parts(root, "val", "val_annotations.txt")):
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        name, wnid = fields[0].strip(), fields[1].strip()
        key = join_parts(root, "val", "images", name)
        # Images of classes outside wnids.txt, or listed but absent, are not part of it.
        if wnid in index_of and tree.has(key) and is_image_name(name):
            items.append(Item(key, index_of[wnid], wnid, _relative(key, root)))
    items.sort(key=lambda item: item.key)
    return items


def scan_class_folders(tree: NameTree, root: str) -> tuple[list[ClassEntry], dict[str, list[Item]]]:
    folders, _ = tree.children(root)
    classes: list[ClassEntry] = []
    items: list[Item] = []
    for folder in sorted(folders):
        _, files = tree.children(join_parts(root, folder))
        images = sorted(name for name in files if is_image_name(name))
        if not images:
            continue
        info = ClassEntry(index=len(classes), wnid=folder, label=folder)
        classes.append(info)
        for name in images:
            key = join_parts(root, folder, name)
            items.append(Item(key, info.index, info.wnid, _relative(key, root)))
    return classes, {"train": items}


def _relative(key: str, root: str) -> str:
    return key[len(root) + 1 :] if root else key
