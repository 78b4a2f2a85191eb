"""core/files.py on both backends: the local one (the data root is the store: nothing is
copied) and a real SeaweedFS S3 server (the data root is scratch, reads go through the
cache, checked against the recorded size)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.config import Settings
from core.files import Files, files_for
from core.storage import ObjectNotFound, TruncatedObject
from tests.utils.seaweed import (  # noqa: F401
    s3_credentials_fixture,
    s3_settings_fixture,
    seaweed_fixture,
)

# Against a real SeaweedFS: `make heavy` (CI runs it), not `make test`.
pytestmark = pytest.mark.heavy


KEY = "datasets/x/train-00000-of-00001.tfrecord"


@pytest.fixture(params=["local", "s3"])
def files(request: pytest.FixtureRequest, data_root: Path) -> Files:
    if request.param == "local":
        return Files(Settings(data_root=data_root))
    return Files(request.getfixturevalue("s3_settings"))


def write(files: Files, key: str, data: bytes) -> Path:
    path = files.path_of(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_publish_then_read_back(files: Files) -> None:
    data = os.urandom(5000)
    path = write(files, KEY, data)
    assert files.key_of(path) == KEY
    info = files.publish(path)
    assert (info.key, info.size) == (KEY, 5000)
    assert files.exists(KEY) and files.list("datasets") == [KEY]
    files.discard_local(path)  # scratch once published (the object itself when local)
    local = files.local(KEY, size=5000)
    assert local.read_bytes() == data
    if files.remote:
        assert not path.exists()
        assert local.is_relative_to(files.settings.resolved_cache_dir)
        assert files.store.get_bytes(KEY) == data
    else:  # nothing copied, nothing cached: the data root's file is the object
        assert local == path
        assert not files.settings.resolved_cache_dir.exists()


def test_a_wrong_size_or_a_missing_object_is_refused(files: Files) -> None:
    files.publish(write(files, KEY, b"x" * 300))
    assert files.local(KEY, size=300).stat().st_size == 300  # cached (S3), then...
    # ...the object is overwritten with fewer bytes: the copy is not trusted either.
    files.put_bytes(b"x" * 100, KEY)
    with pytest.raises(TruncatedObject, match="recorded 300"):
        files.local(KEY, size=300)
    with pytest.raises(TruncatedObject):
        files.info(KEY, size=300)
    with pytest.raises(ObjectNotFound):
        files.local("datasets/x/missing.tfrecord", size=1)


def test_a_folder_is_read_as_a_tree(files: Files) -> None:
    names = ["a/1.jpg", "a/2.jpg", "b/3.jpg"]
    for name in names:
        files.publish(write(files, f"sources/tree/{name}", name.encode()))
    assert files.exists_any("sources/tree") and not files.exists("sources/tree")
    assert not files.exists_any("sources/other")
    tree = files.local_tree("sources/tree")
    found = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    assert found == names
    assert (tree / "b/3.jpg").read_bytes() == b"b/3.jpg"
    assert not files.local_tree("sources/other").exists()


def test_delete_removes_the_objects_and_the_local_copy(files: Files) -> None:
    shard = write(files, KEY, b"shard")
    files.publish(shard)
    files.publish(write(files, "datasets/x/manifest.json", b"{}"))
    files.publish(write(files, "datasets/y/manifest.json", b"{}"))
    files.delete("datasets/x")
    assert files.list("datasets") == ["datasets/y/manifest.json"]
    assert not shard.exists() and not files.path_of("datasets/x").exists()
    files.delete("datasets/nothing")  # nothing there is no error


def test_keys_are_relative_to_the_data_root(files: Files, tmp_path: Path) -> None:
    assert files.key_of(files.root / "uploads" / "a.zip") == "uploads/a.zip"
    with pytest.raises(ValueError, match="not under the data root"):
        files.key_of(tmp_path / "elsewhere.zip")
    with pytest.raises(ValueError):
        files.path_of("../escape")


def test_one_files_per_configuration(data_root: Path) -> None:
    settings = Settings(data_root=data_root)
    assert files_for(settings) is files_for(Settings(data_root=data_root))
    assert not files_for(settings).remote
    assert files_for(Settings(data_root=data_root / "other")) is not files_for(settings)
