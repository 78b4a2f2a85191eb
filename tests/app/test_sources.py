"""GET /sources and DELETE /sources/{path}: what a shard job can read, listed from the
real files under the data root."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings
from core.jobs import JobStore
from tests.app.conftest import ClientFactory
from tools.datasets import make_class_folders, make_digits_tiny_imagenet, zip_dir

pytestmark = pytest.mark.anyio


def _settings(root: Path) -> Settings:
    return Settings(data_root=root)


async def test_sources_lists_folders_and_archives(
    tmp_path: Path, client_for: ClientFactory
) -> None:
    make_digits_tiny_imagenet(tmp_path / "sources" / "tiny" / "tiny-imagenet-200", classes=2)
    folders = make_class_folders(tmp_path / "sources" / "pets", per_class=2)
    zip_dir(folders, tmp_path / "sources" / "pets.zip")
    (tmp_path / "sources" / "notes").mkdir()  # no images: not a source
    (tmp_path / "sources" / "readme.txt").write_text("not an archive")
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "up.tar.gz").write_bytes(b"x" * 7)
    async with client_for(_settings(tmp_path)) as client:
        answer = await client.get("/sources")
        assert answer.status_code == 200
        listed = {s["path"]: s for s in answer.json()["sources"]}
        assert set(listed) == {
            "sources/pets",
            "sources/pets.zip",
            "sources/tiny",
            "uploads/up.tar.gz",
        }
        assert listed["sources/tiny"]["kind"] == "folder"
        assert listed["sources/pets.zip"]["kind"] == "zip"
        assert listed["uploads/up.tar.gz"] == {
            "path": "uploads/up.tar.gz",
            "kind": "tar",
            "bytes": 7,
            "origin": "upload",
        }
        assert listed["sources/pets"]["origin"] == "disk"
        assert listed["sources/pets"]["bytes"] > 0


async def test_delete_source(tmp_path: Path, client_for: ClientFactory) -> None:
    make_class_folders(tmp_path / "sources" / "pets", per_class=2)
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "busy.zip").write_bytes(b"PK")
    settings = _settings(tmp_path)
    async with client_for(settings) as client:
        assert (await client.delete("/sources/sources/pets")).status_code == 403
        assert (await client.delete("/sources/uploads/none.zip")).status_code == 404
        assert (await client.delete("/sources/../etc/passwd")).status_code == 404
        store = JobStore(settings.effective_database_url)
        try:
            store.create("shard", {"source": "uploads/busy.zip", "dataset": "busy"})
        finally:
            store.engine.dispose()
        refused = await client.delete("/sources/uploads/busy.zip")
        assert refused.status_code == 409
        assert "reads uploads/busy.zip" in refused.json()["detail"]
    assert (tmp_path / "uploads" / "busy.zip").exists()
