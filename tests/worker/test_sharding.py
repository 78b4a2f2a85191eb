"""Writing shards: exact contents, bad files, restarts after crashes, and the manifest."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.utils.datasets import (
    add_bad_files,
    digit_image,
    encode,
    fake_wnid,
    make_class_folders,
    make_digits_tiny_imagenet,
    zip_dir,
)
from worker import sharding
from worker.sharding import (
    BadImage,
    DatasetExistsError,
    DatasetNotFoundError,
    IncompleteDatasetError,
    ShardingStopped,
    finalize,
    list_datasets,
    load_manifest,
    prepare_image,
    shard_dataset,
    write_shard,
)
from worker.sources import SourceError

REPO = Path(__file__).resolve().parents[2]
CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 10, 20, 5
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "wnid": tf.io.FixedLenFeature([], tf.string),
    "filename": tf.io.FixedLenFeature([], tf.string),
    "format": tf.io.FixedLenFeature([], tf.string),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """Tiny ImageNet layout with five bad or odd files in class 0's train folder."""
    root = make_digits_tiny_imagenet(
        tmp_path_factory.mktemp("src") / "tiny",
        classes=CLASSES,
        train_per_class=TRAIN_PER_CLASS,
        val_per_class=VAL_PER_CLASS,
    )
    bad = add_bad_files(root / "train" / fake_wnid(0) / "images")
    return root, bad


@pytest.fixture(scope="module")
def reference(tiny: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny source sharded in one uninterrupted go: what every restart must reproduce."""
    dataset = tmp_path_factory.mktemp("datasets") / "reference"
    shard_dataset(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
    return dataset


def read_records(dataset: Path, split: str) -> list[list[dict[str, Any]]]:
    """Every record of every shard of ``split``, parsed, shard by shard."""
    manifest = load_manifest(dataset)
    compression = sharding.tf_compression(manifest["compression"])
    shards = []
    for shard in manifest["splits"][split]["shards"]:
        records = tf.data.TFRecordDataset(str(dataset / shard["file"]), compression)
        shards.append(
            [
                {k: v.numpy() for k, v in tf.io.parse_single_example(r, FEATURES).items()}
                for r in records
            ]
        )
    return shards


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_manifest_counts_every_class_and_split_exactly(tiny, reference: Path) -> None:
    manifest = load_manifest(reference)
    assert manifest["name"] == "reference"
    assert manifest["source"] == "tiny"
    assert (manifest["seed"], manifest["compression"], manifest["image_size"]) == (7, "GZIP", 64)
    assert [c["wnid"] for c in manifest["classes"]] == [fake_wnid(i) for i in range(CLASSES)]
    assert manifest["classes"][2] == {"index": 2, "wnid": fake_wnid(2), "label": "digit two"}
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    expected = {fake_wnid(i): TRAIN_PER_CLASS for i in range(CLASSES)}
    expected[fake_wnid(0)] += len(tiny[1].converted)  # CMYK and grayscale are kept
    assert train["per_class"] == expected
    assert train["count"] == sum(expected.values())
    assert val["per_class"] == {fake_wnid(i): VAL_PER_CLASS for i in range(CLASSES)}
    assert val["count"] == CLASSES * VAL_PER_CLASS
    assert len(train["shards"]) == 3 and len(val["shards"]) == 1  # val: ceil(50 * 3 / 202)
    for split in (train, val):
        assert sum(s["records"] for s in split["shards"]) == split["count"]
        assert split["bytes"] == sum(s["bytes"] for s in split["shards"])
        for shard in split["shards"]:
            assert (reference / shard["file"]).stat().st_size == shard["bytes"]
    assert sorted(os.listdir(reference)) == sorted(
        ["manifest.json"] + [s["file"] for s in train["shards"] + val["shards"]]
    )  # no staging folder and no temporary files left


def test_bad_files_are_skipped_with_reasons(tiny, reference: Path) -> None:
    manifest = load_manifest(reference)
    skipped = {Path(e["file"]).name: e["reason"] for e in manifest["splits"]["train"]["skipped"]}
    assert set(skipped) == set(tiny[1].skipped)
    assert skipped["bad_empty.JPEG"] == "empty file"
    assert skipped["bad_text.JPEG"].startswith("not an image")
    assert "truncated" in skipped["bad_truncated.JPEG"].lower()
    assert manifest["skipped_total"] == 3
    assert manifest["splits"]["val"]["skipped"] == []


def test_jpegs_are_stored_byte_for_byte_and_decode_to_the_source_pixels(tiny, reference) -> None:
    root = tiny[0]
    seen: Counter[str] = Counter()
    for split in ("train", "val"):
        for record in (r for shard in read_records(reference, split) for r in shard):
            filename = record["filename"].decode()
            source = (root / filename).read_bytes()
            assert record["wnid"].decode() == fake_wnid(int(record["label"]))
            if Path(filename).name in tiny[1].converted:
                continue
            assert record["format"] == b"jpeg"
            assert record["image"] == source
            # INTEGER_ACCURATE is Pillow's DCT; TF's default (fast) one is a few levels off.
            decoded = tf.io.decode_jpeg(record["image"], dct_method="INTEGER_ACCURATE").numpy()
            np.testing.assert_array_equal(decoded, pillow_rgb(source))
            seen[split] += 1
    assert seen == {"train": CLASSES * TRAIN_PER_CLASS, "val": CLASSES * VAL_PER_CLASS}


def test_cmyk_and_grayscale_become_lossless_rgb_png(tiny, reference: Path) -> None:
    root, bad = tiny
    converted = [
        r
        for shard in read_records(reference, "train")
        for r in shard
        if Path(r["filename"].decode()).name in bad.converted
    ]
    assert len(converted) == 2
    for record in converted:
        assert record["format"] == b"png"
        decoded = tf.io.decode_png(record["image"]).numpy()
        assert decoded.shape == (64, 64, 3)
        np.testing.assert_array_equal(
            decoded, pillow_rgb((root / record["filename"].decode()).read_bytes())
        )


def test_every_shard_holds_every_class_in_shuffled_order(reference: Path) -> None:
    for shard in read_records(reference, "train"):
        labels = [int(r["label"]) for r in shard]
        assert set(labels) == set(range(CLASSES))
        assert labels != sorted(labels)
    sizes = [s["records"] for s in load_manifest(reference)["splits"]["train"]["shards"]]
    assert max(sizes) - min(sizes) <= 1 + 3  # dealt evenly, less the 3 skipped files


def test_plan_is_idempotent_and_seeded(tiny, tmp_path: Path) -> None:
    first = sharding.plan(tiny[0], tmp_path / "a", num_shards=3, seed=1, source_label="t")
    again = sharding.plan(tiny[0], tmp_path / "a", num_shards=3, seed=1, source_label="t")
    elsewhere = sharding.plan(tiny[0], tmp_path / "b", num_shards=3, seed=1, source_label="t")
    other_seed = sharding.plan(tiny[0], tmp_path / "c", num_shards=3, seed=2, source_label="t")
    assert again == first
    assert elsewhere.shards == first.shards
    assert other_seed.shards != first.shards
    assert first.parts() == [("train", 0), ("train", 1), ("train", 2), ("val", 0)]
    stored = json.loads((tmp_path / "a" / ".staging" / "plan.json").read_text())
    assert stored["plan_id"] == first.plan_id
    assert sorted(key for shard in first.shards["train"] for key, _ in shard) == sorted(
        str(p.relative_to(tiny[0])) for p in (tiny[0] / "train").glob("*/images/*")
    )


def test_replanning_with_other_arguments_discards_written_parts(tiny, tmp_path: Path) -> None:
    dataset = tmp_path / "d"
    old = sharding.plan(tiny[0], dataset, num_shards=2, seed=1)
    write_shard(old, "train", 0)
    new = sharding.plan(tiny[0], dataset, num_shards=2, seed=2)
    assert new.plan_id != old.plan_id
    assert not (dataset / new.shard_file("train", 0)).exists()
    info = write_shard(new, "train", 0)
    assert info["plan_id"] == new.plan_id


def test_manifest_is_written_last(tiny, tmp_path: Path) -> None:
    dataset = tmp_path / "late"
    plan = sharding.plan(tiny[0], dataset, num_shards=3, seed=7)
    infos = [write_shard(plan, split, index) for split, index in plan.parts()[:-1]]
    with pytest.raises(IncompleteDatasetError, match="val-00000-of-00001"):
        finalize(plan, infos)
    assert not (dataset / "manifest.json").exists()
    assert not sharding.dataset_exists(dataset)
    assert list_datasets(tmp_path) == []
    write_shard(plan, "val", 0)
    manifest = finalize(plan)  # infos of the earlier parts come from their sidecars
    assert manifest["splits"]["val"]["count"] == CLASSES * VAL_PER_CLASS
    assert not (dataset / ".staging").exists()
    assert [m["name"] for m in list_datasets(tmp_path)] == ["late"]
    # A second finalizer (the last parts of a job race) gets the same manifest back.
    assert finalize(plan) == manifest


def test_written_shards_are_not_rewritten(tiny, tmp_path: Path) -> None:
    plan = sharding.plan(tiny[0], tmp_path / "d", num_shards=3, seed=7)
    info = write_shard(plan, "train", 1)
    path = tmp_path / "d" / info["file"]
    before = path.stat().st_mtime_ns
    calls = []
    assert write_shard(plan, "train", 1, on_progress=lambda *a: calls.append(a)) == info
    assert path.stat().st_mtime_ns == before and calls == []


def test_progress_is_reported(tiny, tmp_path: Path) -> None:
    plan = sharding.plan(tiny[0], tmp_path / "d", num_shards=1, seed=7)
    calls: list[tuple[int, int]] = []
    write_shard(plan, "train", 0, on_progress=lambda done, total: calls.append((done, total)))
    total = len(plan.records("train", 0))
    assert calls == [(100, total), (200, total), (total, total)]


def assert_same_as_reference(dataset: Path, reference: Path) -> None:
    manifest, expected = load_manifest(dataset), load_manifest(reference)
    for key in ("classes", "splits", "skipped_total"):
        assert manifest[key] == expected[key]
    for split in ("train", "val"):
        assert read_records(dataset, split) == read_records(reference, split)


def test_stop_mid_shard_leaves_nothing_and_a_rerun_completes(tiny, reference, tmp_path) -> None:
    dataset = tmp_path / "reference"  # same name as the reference, so the manifests compare
    plan = sharding.plan(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
    checks = iter(range(1000))
    with pytest.raises(ShardingStopped):
        write_shard(plan, "train", 1, should_stop=lambda: next(checks) >= 30)
    assert sorted(os.listdir(dataset)) == [".staging"]
    assert sorted(os.listdir(dataset / ".staging")) == ["plan.json"]
    infos = [write_shard(plan, split, index) for split, index in plan.parts()]
    finalize(plan, infos)
    assert_same_as_reference(dataset, reference)


def test_stale_temporary_files_are_cleaned_up(tiny, reference, tmp_path) -> None:
    dataset = tmp_path / "reference"
    plan = sharding.plan(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
    stale = dataset / f"{plan.shard_file('train', 0)}.tmp-deadbeef"
    stale.write_bytes(b"\x1f\x8b half a shard")
    infos = [write_shard(plan, split, index) for split, index in plan.parts()]
    assert stale.exists()
    finalize(plan, infos)
    assert not stale.exists()
    assert_same_as_reference(dataset, reference)


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from worker.sharding import load_plan, write_shard

    checks = 0

    def should_stop():
        global checks
        checks += 1
        if checks == 40:  # 39 records written: hang here until killed
            print("writing", flush=True)
            time.sleep(120)
        return False

    write_shard(load_plan(sys.argv[1]), "train", 0, should_stop=should_stop)
    print("finished", flush=True)
    """
)


def test_sigkill_mid_shard_then_rerun_gives_the_complete_dataset(tiny, reference, tmp_path) -> None:
    dataset = tmp_path / "reference"
    plan = sharding.plan(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(dataset)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    leftovers = sorted(os.listdir(dataset))
    assert len(leftovers) == 2 and ".tmp-" in leftovers[1]  # nothing looks complete
    assert leftovers[1].startswith(plan.shard_file("train", 0))
    assert not sharding.dataset_exists(dataset)
    manifest = shard_dataset(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
    assert (
        manifest["splits"]["train"]["count"] == load_manifest(reference)["splits"]["train"]["count"]
    )
    assert_same_as_reference(dataset, reference)


def test_zip_with_top_folder_gives_the_same_dataset(tiny, reference, tmp_path) -> None:
    archive = zip_dir(tiny[0], tmp_path / "tiny-imagenet-200.zip", top_folder="tiny-imagenet-200")
    dataset = tmp_path / "zipped" / "reference"
    shard_dataset(archive, dataset, num_shards=3, seed=7, source_label="tiny")
    assert_same_as_reference(dataset, reference)


def test_class_folders_without_compression(tmp_path: Path) -> None:
    source = make_class_folders(tmp_path / "src", classes=("b", "a"), per_class=6)
    dataset = tmp_path / "folders"
    manifest = shard_dataset(source, dataset, num_shards=2, compression="NONE")
    assert [c["wnid"] for c in manifest["classes"]] == ["a", "b"]
    assert list(manifest["splits"]) == ["train"]
    assert manifest["splits"]["train"]["per_class"] == {"a": 6, "b": 6}
    records = [r for shard in read_records(dataset, "train") for r in shard]
    formats = Counter(
        Path(r["filename"].decode()).suffix + ":" + r["format"].decode() for r in records
    )
    # One RGB PNG and one grayscale JPEG per class are stored as PNG.
    assert formats == {".jpg:jpeg": 2 * 5 - 2, ".png:png": 2, ".jpg:png": 2}
    for record in records:
        decoded = tf.io.decode_image(record["image"], channels=0).numpy()
        assert decoded.shape == (64, 64, 3)
        if record["format"] == b"png":
            source_bytes = (source / record["filename"].decode()).read_bytes()
            np.testing.assert_array_equal(decoded, pillow_rgb(source_bytes))


def test_a_source_without_readable_images_fails(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "a" / "x.jpg").write_bytes(b"")
    (source / "a" / "y.png").write_bytes(b"nope")
    with pytest.raises(SourceError, match="no readable training images"):
        shard_dataset(source, tmp_path / "ds")
    assert not sharding.dataset_exists(tmp_path / "ds")
    with pytest.raises(SourceError, match="not found"):
        shard_dataset(tmp_path / "missing", tmp_path / "ds2")


def test_finished_datasets_are_not_overwritten(tiny, reference: Path) -> None:
    with pytest.raises(DatasetExistsError, match="reference"):
        sharding.plan(tiny[0], reference, num_shards=3, seed=8)
    # A redelivered job with the same arguments gets the finished manifest back.
    assert shard_dataset(
        tiny[0], reference, num_shards=3, seed=7, source_label="tiny"
    ) == load_manifest(reference)


def test_load_manifest_of_a_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        load_manifest(tmp_path / "nothing")
    assert list_datasets(tmp_path / "nothing") == []


@pytest.mark.parametrize(("num_shards", "compression"), [(0, "GZIP"), (3, "ZLIB")])
def test_bad_arguments(tiny, tmp_path: Path, num_shards: int, compression: str) -> None:
    with pytest.raises(ValueError, match="Received"):
        sharding.plan(tiny[0], tmp_path / "d", num_shards=num_shards, compression=compression)


def _png(image: Image.Image, **options: Any) -> bytes:
    return encode(image, "PNG", **options)


def test_prepare_image_converts_every_mode_to_rgb() -> None:
    rng = np.random.default_rng(0)
    rgb = digit_image(2, rng)
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
        stored, fmt = prepare_image(data)
        assert fmt == "png", name
        np.testing.assert_array_equal(tf.io.decode_png(stored).numpy(), expected, err_msg=name)


def test_prepare_image_passes_rgb_jpeg_through_and_rejects_junk() -> None:
    jpeg = encode(digit_image(1, np.random.default_rng(0)))
    assert prepare_image(jpeg) == (jpeg, "jpeg")
    for junk in (b"", b"GIF89a", jpeg[:200], b"%!PS-Adobe-3.0 EPSF-3.0\n"):
        with pytest.raises(BadImage):
            prepare_image(junk)
