"""core/store_cache.py against a real S3 server: bounded with LRU eviction, ETag checks,
truncated objects refused, and two worker processes filling one entry once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import Settings
from core.storage import Store, TruncatedObject, open_store
from core.store_cache import CacheTooSmall, StoreCache
from tests.utils.seaweed import (  # noqa: F401
    s3_credentials_fixture,
    s3_settings_fixture,
    seaweed_fixture,
)
from tools.processes import REPO

# Against a real SeaweedFS: `make heavy` (CI runs it), not `make test`.
pytestmark = pytest.mark.heavy


KB = 1000


@pytest.fixture
def s3_store(s3_settings: Settings) -> Store:
    return open_store(s3_settings)


def cache_of(store: Store, settings: Settings, max_bytes: int) -> StoreCache:
    return StoreCache(store, settings.resolved_cache_dir, max_bytes)


def test_fill_then_hit(s3_store: Store, s3_settings: Settings) -> None:
    info = s3_store.put_bytes(os.urandom(10 * KB), "datasets/x/train-0.tfrecord")
    cache = StoreCache.for_settings(s3_store, s3_settings)
    first = cache.fill("datasets/x/train-0.tfrecord")
    assert first.fetched and first.info == info
    assert first.path.is_relative_to(s3_settings.resolved_cache_dir)
    assert first.path.name == "train-0.tfrecord"  # TFRecordDataset sees the suffix
    assert first.path.read_bytes() == s3_store.get_bytes("datasets/x/train-0.tfrecord")
    again = cache.fill("datasets/x/train-0.tfrecord")
    assert not again.fetched and again.path == first.path
    # What a manifest recorded (size and ETag) is enough: no question to the store.
    recorded = cache.fill("datasets/x/train-0.tfrecord", size=info.size, etag=info.etag)
    assert not recorded.fetched
    assert cache.fetch("datasets/x/train-0.tfrecord", size=info.size) == first.path


def test_bounded_least_recently_used_first(s3_store: Store, s3_settings: Settings) -> None:
    for name in "abcd":
        s3_store.put_bytes(os.urandom(10 * KB), f"shards/{name}")
    cache = cache_of(s3_store, s3_settings, max_bytes=30 * KB)
    paths = {name: cache.fetch(f"shards/{name}") for name in "abc"}
    old = time.time() - 60
    for age, name in enumerate("abc"):  # a used first, then b, then c...
        os.utime(paths[name], (old + age, old + age))
    assert not cache.fill("shards/a").fetched  # ...and a again now: b is the oldest
    cache.fetch("shards/d")
    assert not paths["b"].exists()
    assert all(paths[name].exists() for name in "ac")
    assert cache.usage() <= 30 * KB
    assert cache.fill("shards/b").fetched  # evicted entries come back on demand


def test_a_pinned_entry_is_not_evicted(s3_store: Store, s3_settings: Settings) -> None:
    for name in "ab":
        s3_store.put_bytes(os.urandom(10 * KB), f"models/{name}")
    cache = cache_of(s3_store, s3_settings, max_bytes=15 * KB)
    with cache.pinned("models/a") as path:
        cache.fetch("models/b")  # a is in use: b goes over the bound rather than evict it
        assert path.exists() and cache.usage() == 20 * KB
    cache.fetch("models/a")  # unpinned now: the next fill makes room again
    assert cache.fill("models/b").fetched is False
    s3_store.put_bytes(os.urandom(10 * KB), "models/c")
    cache.fetch("models/c")
    assert cache.usage() <= 15 * KB


def test_an_object_larger_than_the_cache_is_refused(s3_store: Store, s3_settings: Settings) -> None:
    s3_store.put_bytes(os.urandom(20 * KB), "jobs/j/model.keras")
    with pytest.raises(CacheTooSmall, match="TINYRES_CACHE_MAX_BYTES=10000"):
        cache_of(s3_store, s3_settings, max_bytes=10 * KB).fetch("jobs/j/model.keras")


def test_a_changed_object_is_fetched_again(s3_store: Store, s3_settings: Settings) -> None:
    key = "jobs/j/classes.json"
    s3_store.put_bytes(b"A" * KB, key)
    cache = StoreCache.for_settings(s3_store, s3_settings)
    path = cache.fetch(key)
    replaced = s3_store.put_bytes(b"B" * KB, key)  # same size, another ETag
    refreshed = cache.fill(key)
    assert refreshed.fetched and refreshed.info.etag == replaced.etag
    assert path.read_bytes() == b"B" * KB
    # A cached copy damaged on this host (cut short) is not served either.
    with path.open("r+b") as handle:
        handle.truncate(10)
    assert cache.fill(key).fetched and path.read_bytes() == b"B" * KB


def test_a_truncated_object_is_refused(s3_store: Store, s3_settings: Settings) -> None:
    key = "datasets/x/val-0.tfrecord"
    recorded = s3_store.put_bytes(os.urandom(10 * KB), key)
    s3_store.put_bytes(os.urandom(4 * KB), key)  # cut short after the manifest recorded it
    cache = StoreCache.for_settings(s3_store, s3_settings)
    with pytest.raises(TruncatedObject, match="10000"):
        cache.fetch(key, size=recorded.size)
    assert cache.usage() == 0  # nothing of it kept


def test_local_backend_reads_the_file_itself(settings: Settings) -> None:
    store = open_store(settings)
    store.put_bytes(b"x" * 100, "datasets/x/train-0.tfrecord")
    cache = StoreCache.for_settings(store, settings)
    assert cache.fetch("datasets/x/train-0.tfrecord", size=100) == store.local_path(
        "datasets/x/train-0.tfrecord"
    )
    with pytest.raises(TruncatedObject):
        cache.fetch("datasets/x/train-0.tfrecord", size=200)
    assert not settings.resolved_cache_dir.exists()


_FILL = """
import json, os, sys, time
from pathlib import Path
from core.config import Settings
from core.storage import open_store
from core.store_cache import StoreCache
settings = Settings()
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
cached = StoreCache.for_settings(open_store(settings), settings).fill(sys.argv[1])
print(json.dumps({"fetched": cached.fetched, "path": str(cached.path)}))
"""


def test_two_processes_fill_one_entry_once(
    s3_store: Store, s3_settings: Settings, tmp_path: Path
) -> None:
    key = "datasets/x/train-1.tfrecord"
    payload = os.urandom(30 * 1000 * KB)
    s3_store.put_bytes(payload, key)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TINYRES_DATA_ROOT": str(s3_settings.resolved_data_root),
        "TINYRES_STORAGE_URL": str(s3_settings.storage_url),
        "TINYRES_S3_ENDPOINT_URL": str(s3_settings.s3_endpoint_url),
        "TINYRES_CACHE_DIR": str(s3_settings.resolved_cache_dir),
    }
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _FILL, key, str(go)], env=env, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    time.sleep(1.0)  # both imported and waiting
    go.touch()
    results = [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert sorted(result["fetched"] for result in results) == [False, True]
    assert results[0]["path"] == results[1]["path"]
    assert Path(results[0]["path"]).read_bytes() == payload
    leftovers = [
        p for p in Path(results[0]["path"]).parent.iterdir() if p.name != key.split("/")[-1]
    ]
    assert leftovers == []  # no temporary file left behind
