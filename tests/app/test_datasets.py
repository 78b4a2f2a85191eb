"""GET /datasets, /datasets/{name} and its preview: only what lies inside the data root,
whatever a URL path or a symlink tries; nothing outside is even read."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from core import layout
from core.config import Settings
from core.jobs import JobStore
from tests.app.conftest import ClientFactory
from tests.app.hostile import manifest_json, raw, reads_of, running

pytestmark = pytest.mark.anyio


def test_the_read_recorder_sees_reads_through_symlinks(tmp_path: Path) -> None:
    """The instrument itself: a read through a symlink, in another thread, is seen."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "outside")
    with reads_of(tmp_path / "outside") as reads:
        reader = threading.Thread(target=(tmp_path / "link" / "f").read_text)
        reader.start()
        reader.join()
        os.listdir(tmp_path / "link")
    assert len(reads) == 2 and all("/link" in r for r in reads), reads


_SEGMENTS = [
    b"..",
    b"%2e%2e",
    b"%2E%2E",
    b"..%2f..%2fetc%2fpasswd",
    b"%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"..%5c..%5cetc",
    b"%252e%252e%252f",
    b"%00",
    b"a%00b",
    b"%2fetc%2fpasswd",
    b"%ff%fe",
    b"evil",
    b"sneaky",
    b"link",
    b"x" * 300,
    b"a" * 65,
]
_TEMPLATES = [
    ("GET", b"/datasets/{}"),
    ("GET", b"/datasets/{}/preview.png"),
    ("GET", b"/jobs/{}"),
    ("GET", b"/jobs/{}/history.png"),
    ("GET", b"/models/{}"),
    ("POST", b"/jobs/{}/cancel"),
    ("DELETE", b"/datasets/{}"),
    ("DELETE", b"/models/{}"),
]
_RAW_TARGETS = [
    b"/datasets/../../etc/passwd",
    b"/datasets/%2e%2e/%2e%2e/etc/passwd",
    b"/../../../etc/passwd",
    b"/datasets/evil/../../link/secret.txt",
    b"/datasets?name=../../etc/passwd",
    b"/jobs?kind=../../etc&state=%00",
]


async def test_traversal_in_url_paths_is_4xx_and_reads_nothing_outside(
    trapped_root: Path, outside: Path
) -> None:
    settings = Settings(data_root=trapped_root)
    answers: dict[bytes, int] = {}
    async with running(settings) as (app, _):
        with reads_of(outside) as reads:
            for method, template in _TEMPLATES:
                for segment in _SEGMENTS:
                    target = template.replace(b"{}", segment)
                    answers[target], body = await raw(app, method, target)
                    assert b"secret" not in body and b"stolen" not in body, target
            for target in _RAW_TARGETS:
                answers[target], body = await raw(app, "GET", target)
                assert b"secret" not in body and b"stolen" not in body, target
    bad = {t: code for t, code in answers.items() if not 400 <= code < 500}
    # Query strings that are not valid filters are 422; /datasets ignores unknown ones.
    assert bad == {b"/datasets?name=../../etc/passwd": 200}, bad
    assert reads == []
    assert (outside / "secret.txt").is_file() and (outside / "manifest.json").is_file()


async def test_a_dataset_folder_that_leads_outside_is_absent(
    trapped_root: Path, outside: Path
) -> None:
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        with reads_of(outside) as reads:
            listing = await client.get("/datasets")
            evil = await client.get("/datasets/evil")
            sneaky = await client.get("/datasets/sneaky")
            previews = [await client.get(f"/datasets/{n}/preview.png") for n in ("evil", "sneaky")]
            train = await client.post("/jobs/train", json={"dataset": "evil", "epochs": 1})
            train_sneaky = await client.post("/jobs/train", json={"dataset": "sneaky"})
            # Writing into it would write outside the data root: refused, with overwrite too.
            shard = await client.post(
                "/jobs/shard",
                json={"source": "sources/real", "dataset": "evil", "overwrite": True},
            )
            jobs = await client.get("/jobs")
    assert listing.status_code == 200, listing.text
    # The good dataset is listed; the symlinked, oddly named and broken ones are left out.
    assert [d["name"] for d in listing.json()["datasets"]] == ["good"]
    assert evil.status_code == 404 and sneaky.status_code == 404
    assert [p.status_code for p in previews] == [404, 404]
    assert train.status_code == 422 and "does not exist" in train.json()["detail"]
    assert train_sneaky.status_code == 422
    assert shard.status_code == 422 and "leaves the data root" in shard.json()["detail"]
    assert jobs.json() == {"jobs": []}
    assert reads == []


def _sharded(settings: Settings, name: str, shard_bytes: int) -> Path:
    """A dataset folder with a manifest and one shard file of `shard_bytes` bytes."""
    folder = layout.dataset_dir(settings, name)
    folder.mkdir(parents=True)
    (folder / "train-00000-of-00001.tfrecord.gz").write_bytes(b"x" * shard_bytes)
    manifest = json.loads(manifest_json(name))
    manifest["bytes"] = manifest["splits"]["train"]["bytes"] = shard_bytes
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


async def test_delete_a_dataset(settings: Settings, client_for: ClientFactory) -> None:
    folder = _sharded(settings, "doomed", 1234)
    kept = _sharded(settings, "kept", 10)
    store = JobStore(settings.effective_database_url)
    async with client_for(settings) as client:
        listing = (await client.get("/datasets")).json()["datasets"]
        assert {d["name"]: d["bytes"] for d in listing} == {"doomed": 1234, "kept": 10}
        for kind in ("train", "shard"):  # a job reading it, and one writing it
            job = store.create(kind, {"dataset": "doomed", "source": "sources/x"})
            used = await client.delete("/datasets/doomed")
            assert used.status_code == 409 and job.id in used.text, used.text
            store.request_cancel(job.id)
        assert (folder / "manifest.json").is_file()
        deleted = await client.delete("/datasets/doomed")
        assert deleted.status_code == 204, deleted.text
        assert not folder.exists() and kept.is_dir()
        assert (await client.get("/datasets/doomed")).status_code == 404
        assert [d["name"] for d in (await client.get("/datasets")).json()["datasets"]] == ["kept"]
        assert (await client.delete("/datasets/doomed")).status_code == 404
        # A folder without a manifest is no dataset (a shard job still writing it, say).
        (layout.dataset_dir(settings, "partial")).mkdir()
        assert (await client.delete("/datasets/partial")).status_code == 404
        assert layout.dataset_dir(settings, "partial").is_dir()
    store.engine.dispose()
