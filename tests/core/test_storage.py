"""core/storage.py: the same operations on local disk and on a real S3 server (SeaweedFS),
the commit rule, and the faults: truncated objects, outages, wrong bucket, bad credentials."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import layout
from core.config import Settings
from core.storage import (
    COMMIT_MARKER,
    ObjectNotFound,
    RetryPolicy,
    Store,
    StoreMisconfigured,
    StoreUnavailable,
    TruncatedObject,
    check_key,
    open_store,
    read_marker,
    verify_marker,
    write_marker,
)
from tests.utils.seaweed import (  # noqa: F401
    new_bucket,
    require_weed,
    s3_credentials_fixture,
    s3_settings_fixture,
    s3_settings_for,
    seaweed_anonymous_fixture,
    seaweed_fixture,
)
from tools.seaweed import SeaweedServer, seaweed_server

# Against a real SeaweedFS: `make heavy` (CI runs it), not `make test`.
pytestmark = pytest.mark.heavy


SHORT = RetryPolicy(total_seconds=1.5, first_delay=0.1, max_delay=0.4)


@pytest.fixture(params=["local", "s3"])
def backend_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    if request.param == "local":
        return settings
    return request.getfixturevalue("s3_settings")


@pytest.fixture
def object_store(backend_settings: Settings) -> Store:
    return open_store(backend_settings, retry=SHORT)


def test_put_get_list_delete(object_store: Store, tmp_path: Path) -> None:
    first = object_store.put_bytes(b"abc", "datasets/x/manifest.json")
    assert (first.key, first.size) == ("datasets/x/manifest.json", 3) and first.etag
    source = tmp_path / "shard.tfrecord"
    source.write_bytes(b"\x01" * 5000)
    assert object_store.put_file(source, "datasets/x/train-0.tfrecord").size == 5000
    object_store.put_bytes(b"y", "datasets/xy/manifest.json")

    assert object_store.get_bytes("datasets/x/manifest.json") == b"abc"
    assert object_store.info("datasets/x/train-0.tfrecord").size == 5000
    assert object_store.exists("datasets/x/manifest.json")
    assert not object_store.exists("datasets/x/missing.json")
    assert not object_store.exists("datasets/x")  # a prefix is no object
    # A prefix names a folder: "datasets/x" does not take "datasets/xy" with it.
    assert object_store.list("datasets/x") == [
        "datasets/x/manifest.json",
        "datasets/x/train-0.tfrecord",
    ]
    assert object_store.list("datasets/x/manifest.json") == ["datasets/x/manifest.json"]
    assert object_store.list("nothing/here") == []
    assert len(object_store.list()) == 3

    object_store.delete("datasets/x")
    assert object_store.list() == ["datasets/xy/manifest.json"]
    object_store.delete("datasets/x")  # deleting nothing is no error
    object_store.delete("datasets/xy/manifest.json")
    assert object_store.list() == []


def test_missing_objects_are_not_found(object_store: Store, tmp_path: Path) -> None:
    for call in (
        lambda: object_store.info("jobs/j/model.keras"),
        lambda: object_store.get_bytes("jobs/j/model.keras"),
        lambda: object_store.get_file("jobs/j/model.keras", tmp_path / "model.keras"),
    ):
        with pytest.raises(ObjectNotFound) as raised:
            call()
        assert isinstance(raised.value, FileNotFoundError)  # what today's callers catch
    assert not (tmp_path / "model.keras").exists()


def test_get_file_is_atomic_and_checks_the_size(object_store: Store, tmp_path: Path) -> None:
    object_store.put_bytes(b"new" * 1000, "jobs/j/model.keras")
    target = tmp_path / "models" / "model.keras"
    target.parent.mkdir()
    target.write_bytes(b"old")
    # The manifest recorded another size: refused, and the old file is left as it was.
    with pytest.raises(TruncatedObject, match="not trusted"):
        object_store.get_file("jobs/j/model.keras", target, size=6000)
    assert target.read_bytes() == b"old"
    info = object_store.get_file("jobs/j/model.keras", target, size=3000)
    assert info.size == 3000 and target.read_bytes() == b"new" * 1000
    assert [p.name for p in target.parent.iterdir()] == ["model.keras"]  # no temporary left


def test_commit_marker_names_what_readers_trust(object_store: Store) -> None:
    folder = "jobs/j/export"
    object_store.put_bytes(b"a" * 100, f"{folder}/saved_model.pb")
    object_store.put_bytes(b"b" * 200, f"{folder}/variables/variables.data")
    assert read_marker(object_store, folder) is None  # written, not committed: not there
    marker = write_marker(object_store, folder, ["saved_model.pb", "variables/variables.data"])
    object_store.put_bytes(b"leftover of a crashed writer", f"{folder}/orphan.bin")

    read = read_marker(object_store, folder)
    assert read is not None and read.objects == marker.objects
    assert set(read.objects) == {"saved_model.pb", "variables/variables.data"}
    assert f"{folder}/{COMMIT_MARKER}" in object_store.list(folder)
    verify_marker(object_store, read)

    # An object cut short after the commit is detected, not read as complete.
    object_store.put_bytes(b"b" * 150, f"{folder}/variables/variables.data")
    with pytest.raises(TruncatedObject, match="200"):
        verify_marker(object_store, read)
    with pytest.raises(ObjectNotFound):
        write_marker(object_store, "jobs/j/other", ["never-written.bin"])
    assert read_marker(object_store, "jobs/j/other") is None


def test_keys_are_relative_posix_paths(object_store: Store) -> None:
    for bad in ("", "/etc/passwd", "../x", "a/../b", "a//b", "a/", "a\\b", "./a"):
        with pytest.raises(ValueError, match="not a store key"):
            check_key(bad)
        with pytest.raises(ValueError):
            object_store.put_bytes(b"x", bad)


def test_local_backend_is_the_data_root(settings: Settings) -> None:
    store = open_store(settings)
    store.put_bytes(b"{}", "datasets/x/manifest.json")
    assert layout.manifest_path(settings, "x").read_bytes() == b"{}"
    assert store.local_path("datasets/x/manifest.json") == layout.manifest_path(settings, "x")
    temporary = layout.dataset_dir(settings, "x") / ".tmp-123-train-0.tfrecord"
    temporary.write_bytes(b"half")
    assert store.list("datasets") == ["datasets/x/manifest.json"]  # writers' temporaries


def test_storage_url_must_be_s3(data_root: Path) -> None:
    for url in ("gs://bucket/x", "s3://", "/data"):
        with pytest.raises(StoreMisconfigured, match="s3://bucket/prefix"):
            open_store(Settings(data_root=data_root, storage_url=url))


# ------------------------------------------------------------------ S3 faults


def test_wrong_bucket_is_misconfigured(
    seaweed: SeaweedServer, s3_credentials: None, data_root: Path
) -> None:
    store = open_store(s3_settings_for(seaweed, data_root, "no-such-bucket"), retry=SHORT)
    started = time.monotonic()
    for call in (store.check, lambda: store.put_bytes(b"x", "a/b"), lambda: store.info("a/b")):
        with pytest.raises(StoreMisconfigured, match=r"bucket is wrong.*NoSuchBucket"):
            call()
    assert time.monotonic() - started < 5  # not retried: retrying would not help


@pytest.mark.parametrize("secret", ["wrong-secret", None])
def test_bad_or_missing_credentials_are_refused(
    seaweed: SeaweedServer,
    s3_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    secret: str | None,
) -> None:
    open_store(s3_settings).put_bytes(b"x", "a/b")  # the right ones work
    if secret is None:  # anonymous, on a server that wants credentials
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    else:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    store = open_store(s3_settings, retry=SHORT)
    for call in (store.check, lambda: store.get_bytes("a/b"), lambda: store.put_bytes(b"y", "c")):
        with pytest.raises(StoreMisconfigured, match=r"access denied.*AWS_SECRET_ACCESS_KEY"):
            call()


def test_anonymous_server(
    seaweed_anonymous: SeaweedServer, monkeypatch: pytest.MonkeyPatch, data_root: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    settings = s3_settings_for(seaweed_anonymous, data_root, new_bucket(seaweed_anonymous))
    store = open_store(settings)
    store.check()
    store.put_bytes(b"unsigned", "datasets/x/manifest.json")
    assert store.get_bytes("datasets/x/manifest.json") == b"unsigned"


@pytest.fixture
def own_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedServer]:
    """A server of this test alone: it is stopped and started again."""
    require_weed()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with seaweed_server(tmp_path / "seaweed") as server:
        server.create_bucket("outage")
        yield server


def test_an_outage_is_retried_then_unavailable(own_server: SeaweedServer, data_root: Path) -> None:
    settings = s3_settings_for(own_server, data_root, "outage")
    open_store(settings).put_bytes(b"before", "jobs/j/classes.json")
    own_server.stop()

    store = open_store(settings, retry=SHORT)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"did not answer.*EndpointConnectionError"):
        store.get_bytes("jobs/j/classes.json")
    spent = time.monotonic() - started
    assert SHORT.total_seconds <= spent < SHORT.total_seconds + 3, spent
    with pytest.raises(StoreUnavailable):
        store.check()

    # Back within the retry time: the same call rides the outage out.
    restart = threading.Thread(target=own_server.start)
    patient = open_store(settings, retry=RetryPolicy(total_seconds=90, max_delay=2))
    restart.start()
    try:
        assert patient.get_bytes("jobs/j/classes.json") == b"before"
    finally:
        restart.join()
