"""The one image decoder: what is stored of each kind of file, and the same pixels when
a file is sharded and when it is served."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core.images import JPEG, PNG, ImageRejected, ImageTooLarge, to_stored
from core.manifest import load_manifest
from core.tf_decode import decode_image, resize_to_input
from model.serving import BadImage, decode_upload
from tools.datasets import digit_image, encode, odd_images
from worker.reader import decoded, shard_paths
from worker.sharding import shard_dataset, tf_compression


def _png(image: Image.Image, **options: object) -> bytes:
    return encode(image, "PNG", **options)


def test_every_mode_becomes_rgb_png() -> None:
    rgb = digit_image(2, np.random.default_rng(0))
    gray16 = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    cases = {
        "rgba": (_png(rgb.convert("RGBA")), np.asarray(rgb)),
        "la": (_png(rgb.convert("LA")), np.asarray(rgb.convert("L").convert("RGB"))),
        "palette": (_png(palette, transparency=0), np.asarray(palette.convert("RGB"))),
        "gray16": (_png(gray16), np.asarray(rgb.convert("L").convert("RGB"))),
        "bmp": (encode(rgb, "BMP"), np.asarray(rgb)),
        "webp": (encode(rgb, "WEBP", lossless=True), np.asarray(rgb)),
        "gif": (encode(palette, "GIF"), np.asarray(palette.convert("RGB"))),
    }
    for name, (data, expected) in cases.items():
        stored = to_stored(data)
        assert stored.format == PNG, name
        np.testing.assert_array_equal(tf.io.decode_png(stored.data).numpy(), expected, name)


def test_exif_orientation_is_applied() -> None:
    data = odd_images()["rotated.jpg"]
    stored = to_stored(data)
    assert stored.format == PNG
    with Image.open(io.BytesIO(data)) as image:
        upright = np.asarray(image.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    np.testing.assert_array_equal(tf.io.decode_png(stored.data).numpy(), upright)


def test_rgb_jpeg_is_kept_and_junk_rejected() -> None:
    jpeg = encode(digit_image(1, np.random.default_rng(0)))
    assert to_stored(jpeg).data == jpeg and to_stored(jpeg).format == JPEG
    for junk in (
        b"",
        b"GIF89a",
        jpeg[:200],
        b"%!PS-Adobe-3.0 EPSF-3.0\n",
        encode(digit_image(1, np.random.default_rng(0)), "TIFF"),
    ):
        with pytest.raises(ImageRejected):
            to_stored(junk)
    with pytest.raises(ImageTooLarge, match="64x64"):
        to_stored(jpeg, 64 * 64 - 1)
    assert BadImage is ImageRejected  # what /predict maps to 400 (ImageTooLarge: 413)


def test_the_same_file_gives_the_same_pixels_sharded_and_served(tmp_path: Path) -> None:
    files = odd_images()
    source = tmp_path / "src"
    for name, data in files.items():  # one class per file: the label says which file
        (source / name.replace(".", "_")).mkdir(parents=True)
        (source / name.replace(".", "_") / name).write_bytes(data)
    dataset = tmp_path / "odd"
    manifest = shard_dataset(source, dataset, num_shards=1)
    assert manifest.splits["train"].count == len(files) and manifest.skipped_total == 0
    sharded = {
        manifest.classes[int(label)].wnid: image.numpy()
        for image, label in decoded(
            shard_paths(str(dataset), load_manifest(dataset), "train"),
            tf_compression(manifest.compression),
        )
    }
    for name, data in files.items():
        served = decode_upload(data, 10**6)
        np.testing.assert_array_equal(sharded[name.replace(".", "_")], served, err_msg=name)
    gray16 = np.asarray(Image.open(io.BytesIO(files["gray16.png"])), np.float64)
    expected = resize_to_input(np.repeat(np.rint(gray16 / 257)[..., None], 3, axis=-1))
    np.testing.assert_array_equal(decode_upload(files["gray16.png"], 10**6), expected.numpy())
    np.testing.assert_array_equal(
        decode_upload(files["rgba.png"], 10**6),
        decode_image(encode(Image.open(io.BytesIO(files["rgba.png"])).convert("RGB"), "PNG")),
    )
