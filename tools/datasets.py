"""Source datasets for tests, benchmarks and trying tinyres out, from real images shipped
with scikit-learn (a dev dependency; imported only when an image is made).

* ``sklearn.datasets.load_digits``: 1797 real 8x8 hand-written digits, upscaled to 64x64 and
  tinted with a random foreground/background colour each, so classes differ by shape only.
* ``sklearn.datasets.load_sample_images``: two real photographs (china.jpg, flower.jpg),
  cut into random 64x64 crops: realistic JPEG sizes for size and speed benchmarks.

Everything is written in the exact on-disk layouts a user would upload.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SIZE = 64
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


@cache
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(load_sample_images().images)


def fake_wnid(index: int) -> str:
    """A wnid-shaped class id: n0000000d for index 13."""
    return f"n{index:08x}"


def digit_image(
    digit: int, rng: np.random.Generator, *, size: int = SIZE, mode: str = "RGB"
) -> Image.Image:
    """A real hand-written ``digit`` (0-9), upscaled and tinted with random colours."""
    images, targets = _digits()
    candidates = np.flatnonzero(targets == digit % 10)
    pixels = images[rng.choice(candidates)] / 16.0 * 255.0
    gray = Image.fromarray(pixels.astype(np.uint8), "L").resize(
        (size, size), Image.Resampling.BILINEAR
    )
    if mode == "L":
        return gray
    background = tuple(int(v) for v in rng.integers(0, 110, 3))
    foreground = tuple(int(v) for v in rng.integers(145, 256, 3))
    return ImageOps.colorize(gray, black=background, white=foreground).convert(mode)


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        options.setdefault("quality", 90)
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_digits_tiny_imagenet(
    root: Path,
    classes: int = 10,
    train_per_class: int = 20,
    val_per_class: int = 5,
    seed: int = 0,
    *,
    test_images: int = 3,
) -> Path:
    """Write a Tiny ImageNet-layout source of tinted digits at ``root`` (created).

    Class ``i`` is digit ``i % 10`` with wnid ``fake_wnid(i)`` and label "digit <name>".
    ``words.txt`` also lists wnids that are not classes, as the real one does; ``test/``
    holds unlabelled images that a scan must ignore.

    Returns:
        ``root``.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    wnids = [fake_wnid(i) for i in range(classes)]
    _write(root / "wnids.txt", "".join(f"{wnid}\n" for wnid in wnids).encode())
    words = [f"{fake_wnid(i)}\tdigit {DIGIT_NAMES[i % 10]}" for i in range(classes + 5)]
    _write(root / "words.txt", ("\n".join(words) + "\n").encode())
    for index, wnid in enumerate(wnids):
        for i in range(train_per_class):
            data = encode(digit_image(index, rng))
            _write(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", data)
        boxes = "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(train_per_class))
        _write(root / "train" / wnid / f"{wnid}_boxes.txt", boxes.encode())
    annotations = []
    for i in range(classes * val_per_class):
        index = i % classes
        _write(root / "val" / "images" / f"val_{i}.JPEG", encode(digit_image(index, rng)))
        annotations.append(f"val_{i}.JPEG\t{wnids[index]}\t1\t2\t60\t61\n")
    _write(root / "val" / "val_annotations.txt", "".join(annotations).encode())
    for i in range(test_images):
        _write(root / "test" / "images" / f"test_{i}.JPEG", encode(digit_image(i, rng)))
    return root


def make_class_folders(
    root: Path,
    classes: Sequence[str] = ("cat", "dog", "fish"),
    per_class: int = 6,
    seed: int = 0,
) -> Path:
    """Write a class-per-folder source at ``root``: mostly RGB JPEGs, plus in every class
    one RGB PNG and one grayscale JPEG, and a stray text file that is not an image.

    Returns:
        ``root``.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for index, name in enumerate(classes):
        folder = root / name
        for i in range(per_class):
            if i == 0:
                _write(folder / f"{name}_{i}.png", encode(digit_image(index, rng), "PNG"))
            elif i == 1:
                _write(folder / f"{name}_{i}.jpg", encode(digit_image(index, rng, mode="L")))
            else:
                _write(folder / f"{name}_{i}.jpg", encode(digit_image(index, rng)))
        _write(folder / "notes.txt", b"not an image\n")
    _write(root / "README.txt", b"a class-per-folder source\n")
    return root


def iter_photo_crops(
    n: int, seed: int = 0, *, size: int = SIZE, quality: tuple[int, int] = (80, 95)
) -> Iterator[bytes]:
    """Yield ``n`` JPEGs of random square crops of the two sklearn sample photos, each
    scaled down from a random side between ``size`` and 4 * ``size`` pixels."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    for _ in range(n):
        photo = photos[rng.integers(len(photos))]
        height, width = photo.shape[:2]
        side = int(rng.integers(size, 4 * size + 1))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop = crop.resize((size, size), Image.Resampling.BILINEAR)
        yield encode(crop, quality=int(rng.integers(quality[0], quality[1] + 1)))


def make_photo_crops(n: int, seed: int = 0, *, size: int = SIZE) -> list[bytes]:
    """``n`` realistic JPEG photo crops (see ``iter_photo_crops``)."""
    return list(iter_photo_crops(n, seed, size=size))


def make_photo_class_folders(root: Path, n: int, classes: int = 10, seed: int = 0) -> Path:
    """Write ``n`` photo crops as a class-per-folder source, spread over ``classes`` folders.

    Streams to disk, so ``n`` can be large without holding the images in memory.
    """
    root = Path(root)
    for i, data in enumerate(iter_photo_crops(n, seed)):
        _write(root / f"class_{i % classes:03d}" / f"crop_{i:07d}.jpg", data)
    return root


def zip_dir(src: Path, dst_zip: Path, top_folder: str | None = None) -> Path:
    """Zip the files under ``src`` into ``dst_zip``, inside ``top_folder/`` when given
    (as the official tiny-imagenet-200.zip does), with folder entries like ``zip -r``."""
    src, dst_zip = Path(src), Path(dst_zip)
    prefix = f"{top_folder}/" if top_folder else ""
    with zipfile.ZipFile(dst_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if prefix:
            archive.writestr(prefix, b"")
        for path in sorted(src.rglob("*")):
            name = prefix + path.relative_to(src).as_posix()
            if path.is_dir():
                archive.writestr(name + "/", b"")
            else:
                archive.write(path, name)
    return dst_zip


@dataclass(frozen=True)
class BadFiles:
    """What ``add_bad_files`` wrote: file names (in that folder) by expected outcome."""

    skipped: tuple[str, ...]  # not decodable: must be skipped with a reason
    converted: tuple[str, ...]  # decodable but not RGB: must be stored converted to RGB


def add_bad_files(
    folder: Path, seed: int = 0, *, prefix: str = "bad", ext: str = ".JPEG"
) -> BadFiles:
    """Add to ``folder``: a truncated JPEG, a text file named like a JPEG, an empty file
    (all three undecodable), a CMYK JPEG and a grayscale JPEG (decodable, not RGB)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    whole = encode(digit_image(3, rng))
    files = {
        f"{prefix}_truncated{ext}": whole[: len(whole) // 2],
        f"{prefix}_text{ext}": b"this is not an image, only text\n" * 4,
        f"{prefix}_empty{ext}": b"",
        f"{prefix}_cmyk{ext}": encode(digit_image(4, rng).convert("CMYK")),
        f"{prefix}_gray{ext}": encode(digit_image(5, rng, mode="L")),
    }
    for name, data in files.items():
        _write(folder / name, data)
    names = list(files)
    return BadFiles(skipped=tuple(names[:3]), converted=tuple(names[3:]))


def odd_images(seed: int = 0) -> dict[str, bytes]:
    """One file of every kind that is not a plain RGB JPEG, by name (with its extension):
    palette PNG with transparency, 16-bit grayscale PNG, CMYK JPEG, RGBA PNG, grayscale
    JPEG, and a JPEG whose EXIF orientation (6: rotate 90 degrees clockwise) must be applied.
    Not square, so that a missed rotation shows."""
    rng = np.random.default_rng(seed)
    rgb = digit_image(2, rng).resize((SIZE, SIZE * 3 // 4))
    gray16 = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257 + 3)
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "palette.png": encode(palette, "PNG", transparency=0),
        "gray16.png": encode(gray16, "PNG"),
        "cmyk.jpg": encode(rgb.convert("CMYK")),
        "rgba.png": encode(rgb.convert("RGBA"), "PNG"),
        "gray.jpg": encode(rgb.convert("L")),
        "rotated.jpg": encode(rgb, exif=exif),
    }


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
