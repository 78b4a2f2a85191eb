"""Writing shards: exact contents, conversions, progress, and restarts after crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.worker.sharding.conftest import (
    CLASSES,
    TRAIN_PER_CLASS,
    VAL_PER_CLASS,
    assert_same_as_reference,
    pillow_rgb,
    read_records,
)
from tools.datasets import fake_wnid
from worker.sharding import ShardingStopped, finalize, plan, shard_dataset, write_shard
from worker.sharding.staging import cleanup_temp

REPO = Path(__file__).resolve().parents[3]


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


def test_written_shards_are_not_rewritten(tiny, tmp_path: Path) -> None:
    the_plan = plan(tiny[0], tmp_path / "d", num_shards=3, seed=7)
    written = write_shard(the_plan, "train", 1)
    path = tmp_path / "d" / written.file
    before = path.stat().st_mtime_ns
    calls = []
    assert write_shard(the_plan, "train", 1, on_progress=lambda *a: calls.append(a)) == written
    assert path.stat().st_mtime_ns == before and calls == []


def test_progress_is_reported(tiny, tmp_path: Path) -> None:
    the_plan = plan(tiny[0], tmp_path / "d", num_shards=1, seed=7)
    calls: list[tuple[int, int]] = []
    write_shard(the_plan, "train", 0, on_progress=lambda done, total: calls.append((done, total)))
    total = len(the_plan.records("train", 0))
    assert calls == [(100, total), (200, total), (total, total)]


def test_stop_mid_shard_leaves_nothing_and_a_rerun_completes(tiny, reference, tmp_path) -> None:
    dataset = tmp_path / "reference"  # same name as the reference, so the manifests compare
    the_plan = plan(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
    checks = iter(range(1000))
    with pytest.raises(ShardingStopped):
        write_shard(the_plan, "train", 1, should_stop=lambda: next(checks) >= 30)
    assert sorted(os.listdir(dataset)) == [".staging"]
    assert sorted(os.listdir(dataset / ".staging")) == ["plan.json"]
    written = [write_shard(the_plan, split, index) for split, index in the_plan.all_shards()]
    finalize(the_plan, written)
    assert_same_as_reference(dataset, reference)


def test_stale_temporary_files_are_cleaned_up(tiny, reference, tmp_path) -> None:
    dataset = tmp_path / "reference"
    the_plan = plan(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
    stale = dataset / f"{the_plan.shard_file('train', 0)}.tmp-deadbeef"
    stale.write_bytes(b"\x1f\x8b half a shard")
    written = [write_shard(the_plan, split, index) for split, index in the_plan.all_shards()]
    assert stale.exists()
    finalize(the_plan, written)
    assert not stale.exists()
    assert cleanup_temp(dataset) == []
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
    the_plan = plan(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
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
    assert leftovers[1].startswith(the_plan.shard_file("train", 0))
    assert not (dataset / "manifest.json").exists()
    shard_dataset(tiny[0], dataset, num_shards=3, seed=7, source_label="tiny")
    assert_same_as_reference(dataset, reference)
