"""Scanning sources: Tiny ImageNet folders, class-per-folder trees, and zips of both."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.datasets import (
    add_bad_files,
    fake_wnid,
    make_class_folders,
    make_digits_tiny_imagenet,
    zip_dir,
)
from worker.sources import CLASS_FOLDERS, TINY_IMAGENET, SourceError, scan_source


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sources") / "tiny"
    return make_digits_tiny_imagenet(root, classes=4, train_per_class=3, val_per_class=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sources") / "folders"
    return make_class_folders(root, classes=("zebra", "ant", "moth"), per_class=4)


def test_tiny_imagenet_classes_follow_wnids_and_words(tiny: Path) -> None:
    with scan_source(tiny) as source:
        assert source.layout == TINY_IMAGENET
        assert source.root == ""
        assert [(c.index, c.wnid, c.label) for c in source.classes] == [
            (0, fake_wnid(0), "digit zero"),
            (1, fake_wnid(1), "digit one"),
            (2, fake_wnid(2), "digit two"),
            (3, fake_wnid(3), "digit three"),
        ]


def test_tiny_imagenet_splits_count_exactly_and_ignore_test(tiny: Path) -> None:
    with scan_source(tiny) as source:
        assert set(source.splits) == {"train", "val"}
        train, val = source.splits["train"], source.splits["val"]
        assert len(train) == 4 * 3 and len(val) == 4 * 2
        for item in train:
            assert item.key == f"train/{item.wnid}/images/{Path(item.key).name}"
            assert item.wnid == fake_wnid(item.label_index)
            assert item.filename == item.key
        assert not any("test/" in item.key or item.key.endswith(".txt") for item in train + val)


def test_val_labels_come_from_annotations(tiny: Path) -> None:
    annotations = {
        line.split("\t")[0]: line.split("\t")[1]
        for line in (tiny / "val" / "val_annotations.txt").read_text().splitlines()
    }
    with scan_source(tiny) as source:
        for item in source.splits["val"]:
            assert item.key.startswith("val/images/")
            assert item.wnid == annotations[Path(item.key).name]
            assert source.classes[item.label_index].wnid == item.wnid


def test_missing_label_falls_back_to_wnid(tmp_path: Path) -> None:
    root = make_digits_tiny_imagenet(tmp_path / "t", classes=3, train_per_class=1, val_per_class=0)
    words = (root / "words.txt").read_text().splitlines()
    (root / "words.txt").write_text("\n".join(w for w in words if not w.startswith(fake_wnid(1))))
    with scan_source(root) as source:
        assert [c.label for c in source.classes] == ["digit zero", fake_wnid(1), "digit two"]
        assert "val" not in source.splits  # no annotations listed: no val split


def test_read_returns_the_file_bytes(tiny: Path) -> None:
    with scan_source(tiny) as source:
        for item in source.splits["train"][:3] + source.splits["val"][:3]:
            assert source.read(item) == (tiny / item.key).read_bytes()


@pytest.mark.parametrize("top_folder", ["tiny-imagenet-200", None])
def test_zip_of_tiny_imagenet_matches_the_folder(
    tiny: Path, tmp_path: Path, top_folder: str | None
) -> None:
    archive = zip_dir(tiny, tmp_path / "tiny.zip", top_folder=top_folder)
    with scan_source(tiny) as folder, scan_source(archive) as zipped:
        assert zipped.layout == TINY_IMAGENET
        assert zipped.root == (top_folder or "")
        assert zipped.classes == folder.classes
        for split in ("train", "val"):
            pairs = zip(folder.splits[split], zipped.splits[split], strict=True)
            for plain, member in pairs:
                assert member.filename == plain.filename
                assert (member.label_index, member.wnid) == (plain.label_index, plain.wnid)
                assert zipped.read(member) == folder.read(plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.zip"]  # nothing extracted


def test_class_folders(folders: Path) -> None:
    with scan_source(folders) as source:
        assert source.layout == CLASS_FOLDERS
        assert [(c.index, c.wnid, c.label) for c in source.classes] == [
            (0, "ant", "ant"),
            (1, "moth", "moth"),
            (2, "zebra", "zebra"),
        ]
        assert list(source.splits) == ["train"]
        items = source.splits["train"]
        assert len(items) == 3 * 4  # notes.txt and README.txt are not images
        assert {Path(item.key).suffix for item in items} == {".jpg", ".png"}
        for item in items:
            assert item.key.startswith(f"{item.wnid}/")


def test_zip_of_class_folders_under_a_top_folder(folders: Path, tmp_path: Path) -> None:
    archive = zip_dir(folders, tmp_path / "folders.zip", top_folder="pets")
    with scan_source(archive) as source:
        assert source.layout == CLASS_FOLDERS
        assert source.root == "pets"
        assert [c.wnid for c in source.classes] == ["ant", "moth", "zebra"]
        assert len(source.splits["train"]) == 12
        assert source.splits["train"][0].key.startswith("pets/ant/")
        assert source.splits["train"][0].filename.startswith("ant/")


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "src", classes=("a", "b"), per_class=2)
    outside = make_class_folders(tmp_path / "outside", classes=("c",), per_class=2)
    (root / "a" / "linked.jpg").symlink_to(outside / "c" / "c_1.jpg")
    (root / "c").symlink_to(outside / "c", target_is_directory=True)
    with scan_source(root) as source:
        assert [c.wnid for c in source.classes] == ["a", "b"]
        assert "a/linked.jpg" not in {item.key for item in source.splits["train"]}


def test_bad_files_are_listed_not_judged(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "src", classes=("a",), per_class=2)
    bad = add_bad_files(root / "a", ext=".jpg")
    with scan_source(root) as source:
        names = {Path(item.key).name for item in source.splits["train"]}
    assert set(bad.skipped) | set(bad.converted) <= names


def _files(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


# Each case: files to write under the temporary folder, the source to scan, the message.
UNUSABLE = {
    "missing": ({}, "nope", "not found"),
    "empty folder": ({"empty/.keep": b""}, "empty", "unknown source layout"),
    "no images": ({"docs/a/readme.txt": b"text"}, "docs", "unknown source layout"),
    "bad zip": ({"data.zip": b"PK\x03\x04 not really a zip"}, "data.zip", "not a zip"),
    "a plain file": ({"photo.jpg": b"\xff\xd8\xff"}, "photo.jpg", "not a zip"),
    "classes only": ({"t/wnids.txt": b"n1\nn2\n"}, "t", "holds no images"),
    "no classes": ({"t/wnids.txt": b"\n", "t/train/x.txt": b""}, "t", "wnids.txt is empty"),
}


@pytest.mark.parametrize("case", UNUSABLE, ids=list(UNUSABLE))
def test_unusable_sources_raise_readable_errors(tmp_path: Path, case: str) -> None:
    files, source, message = UNUSABLE[case]
    _files(tmp_path, files)
    with pytest.raises(SourceError, match=message):
        scan_source(tmp_path / source)


def test_empty_zip_raises(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    archive = zip_dir(tmp_path / "src", tmp_path / "empty.zip")
    with pytest.raises(SourceError, match="unknown source layout"):
        scan_source(archive)


@pytest.mark.parametrize(("suffix", "mode"), [(".tar", "w"), (".tar.gz", "w:gz")])
def test_tar_sources_read_like_the_folder(
    tiny: Path, tmp_path: Path, suffix: str, mode: str
) -> None:
    """An uploaded tar (made with `tar -C dir .`, so names start with ./) is a source."""
    import tarfile

    archive = tmp_path / f"tiny{suffix}"
    with tarfile.open(archive, mode) as tar:
        tar.add(tiny, arcname=".")
    with scan_source(tiny) as folder, scan_source(archive) as packed:
        assert packed.layout == folder.layout == TINY_IMAGENET
        assert packed.classes == folder.classes
        assert {s: len(i) for s, i in packed.splits.items()} == {
            s: len(i) for s, i in folder.splits.items()
        }
        item = packed.splits["val"][0]
        assert packed.read(item) == (tiny / item.key).read_bytes()
