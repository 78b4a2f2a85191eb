"""The dataset side on an object store, end to end with real processes: a real SeaweedFS,
a private Redis, a SQLite job store outside every data root, the API (uvicorn) and
`celery worker`s, each with its own empty data root (another "host").

- an archive uploaded through tus is an object before the upload is complete, and is
  what GET /sources lists;
- a shard job of it, run by a worker, makes a dataset whose shards and manifest are
  objects (sizes as recorded), which the API lists and previews; the worker's data root
  then holds nothing but its cache;
- a truncated shard object is refused, with the key and both sizes, when it is read;
- two workers with different data roots write the pieces of one shard job of a folder
  source, and the one that ends the job finalizes it from the store.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tensorflow as tf

from app.dataset_catalog import dataset_preview_png
from core.manifest import Manifest
from core.storage import TruncatedObject
from tests.chaos.conftest import tail, wait_worker_ready
from tests.utils.seaweed import seaweed_fixture  # noqa: F401
from tests.utils.services import api_process, wait_for, worker_process
from tests.utils.store_hosts import StoreHosts, files_under, store_hosts_fixture  # noqa: F401
from tests.utils.tus import digits_zip
from tools.datasets import make_digits_tiny_imagenet

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

TUS = {"Tus-Resumable": "1.0.0"}
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def api(hosts: StoreHosts, tmp_path: Path) -> Iterator[str]:
    with api_process(hosts.env(hosts.root("api")), log=tmp_path / "api.log") as base:
        yield base


def upload(api: str, archive: Path, name: str) -> None:
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"name": name, "filename": archive.name}.items()
    )
    headers = {**TUS, "Upload-Length": str(archive.stat().st_size), "Upload-Metadata": meta}
    created = httpx.post(f"{api}/uploads", headers=headers)
    assert created.status_code == 201, created.text
    patched = httpx.patch(
        f"{api}{created.headers['Location']}",
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        content=archive.read_bytes(),
        timeout=60,
    )
    assert patched.status_code == 204, patched.text


def run_shard_job(api: str, source: str, dataset: str, shards: int) -> str:
    answer = httpx.post(
        f"{api}/jobs/shard", json={"source": source, "dataset": dataset, "num_shards": shards}
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def wait_finished(api: str, job_id: str, timeout: float = 180) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = httpx.get(f"{api}/jobs/{job_id}").json()
        return job if job["state"] in FINISHED else None

    return wait_for(finished, timeout=timeout, interval=0.3)  # type: ignore[return-value]


def not_dataset_files(path: str, job_id: str) -> bool:
    """Whether a file of a worker's data root is its cache, or the job's own log."""
    return path.startswith("cache/") or path == f"logs/{job_id}.log"


def count_records(path: Path, compression: str) -> int:
    kind = "" if compression == "NONE" else "GZIP"
    return sum(1 for _ in tf.data.TFRecordDataset(str(path), kind))


def test_upload_shard_list_preview_and_a_truncated_shard(
    api: str, hosts: StoreHosts, tmp_path: Path
) -> None:
    archive = digits_zip(tmp_path / "made", per_class=8)
    upload(api, archive, "digits")
    files = hosts.files(hosts.root("reader"))
    # Published before the upload was answered complete; the API keeps no copy of it.
    assert files.info("uploads/digits.zip").size == archive.stat().st_size
    assert not (hosts.root("api") / "uploads" / "digits.zip").exists()
    sources = httpx.get(f"{api}/sources").json()["sources"]
    assert sources == [
        {
            "path": "uploads/digits.zip",
            "kind": "zip",
            "bytes": archive.stat().st_size,
            "origin": "upload",
        }
    ]

    worker_root, log = hosts.root("worker"), tmp_path / "worker.log"
    with worker_process(hosts.env(worker_root), "datasets", log=log) as worker:
        wait_worker_ready(worker, log)
        job = wait_finished(api, run_shard_job(api, "uploads/digits.zip", "digits", 2))
    assert job["state"] == "succeeded", (job, tail(log))

    # The dataset is objects in the store: the manifest and its shards, nothing staged.
    keys = files.list("datasets")
    manifest = Manifest.from_json(files.get_bytes("datasets/digits/manifest.json"))
    shards = [s for split in manifest.splits.values() for s in split.shards]
    assert keys == sorted(
        ["datasets/digits/manifest.json", *(f"datasets/digits/{s.file}" for s in shards)]
    )
    for shard in shards:
        local = files.local(f"datasets/digits/{shard.file}", size=shard.bytes)
        assert count_records(local, manifest.compression) == shard.records
    assert manifest.count == job["result"]["counts"]["train"] > 0
    # The worker's data root holds its cache (the source archive it read, the entry's
    # recorded size and ETag, the entry's lock) and the job's log (not on the store yet):
    # no shard, plan, sidecar or manifest.
    held = files_under(worker_root)
    assert held and all(not_dataset_files(path, job["id"]) for path in held), held
    assert [p for p in held if "/objects/" in p] == [
        next(p for p in held if p.endswith("/objects/uploads/digits.zip"))
    ]

    listed = httpx.get(f"{api}/datasets").json()["datasets"]
    assert [d["name"] for d in listed] == ["digits"] and listed[0]["count"] == manifest.count
    preview = httpx.get(f"{api}/datasets/digits/preview.png", timeout=120)
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")

    # A shard object cut short in the store is refused where it is read, with the reason.
    first = manifest.splits["train"].shards[0]
    key = f"datasets/digits/{first.file}"
    files.put_bytes(files.get_bytes(key)[: first.bytes // 2], key)
    with pytest.raises(TruncatedObject, match=rf"{re.escape(key)}.*recorded {first.bytes}"):
        files.local(key, size=first.bytes)
    with pytest.raises(TruncatedObject, match="not trusted"):
        dataset_preview_png(hosts.settings(hosts.root("reader")), "digits")

    # Deleting the dataset removes its objects; the upload can go too.
    assert httpx.delete(f"{api}/datasets/digits").status_code == 204
    assert files.list("datasets") == [] and httpx.get(f"{api}/datasets").json()["datasets"] == []
    assert httpx.delete(f"{api}/sources/uploads/digits.zip").status_code == 204
    assert not files.exists("uploads/digits.zip")


def publish_folder(hosts: StoreHosts, folder: Path, key: str) -> int:
    """Put a local source folder into the store under `key`; returns its image count."""
    files = hosts.files(hosts.root("uploader"))
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files.publish(path, f"{key}/{path.relative_to(folder).as_posix()}")
        count += path.suffix == ".JPEG" or path.suffix == ".jpg"
    return count


def test_two_hosts_write_the_pieces_of_one_job(api: str, hosts: StoreHosts, tmp_path: Path) -> None:
    source = make_digits_tiny_imagenet(
        tmp_path / "made" / "tiny", classes=6, train_per_class=60, val_per_class=6
    )
    publish_folder(hosts, source, "sources/tiny")
    assert httpx.get(f"{api}/sources").json()["sources"][0]["path"] == "sources/tiny"
    roots = {name: hosts.root(name) for name in ("host-a", "host-b")}
    logs = {name: tmp_path / f"{name}.log" for name in roots}
    with (
        worker_process(hosts.env(roots["host-a"]), "datasets", log=logs["host-a"]) as a,
        worker_process(hosts.env(roots["host-b"]), "datasets", log=logs["host-b"]) as b,
    ):
        wait_worker_ready(a, logs["host-a"])
        wait_worker_ready(b, logs["host-b"])
        job = wait_finished(api, run_shard_job(api, "sources/tiny", "tiny", 6))
    assert job["state"] == "succeeded", (job, tail(logs["host-a"]), tail(logs["host-b"]))
    assert job["result"]["counts"] == {"train": 360, "val": 36}

    wrote = {
        name: re.findall(r"wrote (\S+\.tfrecord)", log.read_text(errors="replace"))
        for name, log in logs.items()
    }
    assert wrote["host-a"] and wrote["host-b"], wrote  # both hosts wrote pieces
    files = hosts.files(hosts.root("reader"))
    manifest = Manifest.from_json(files.get_bytes("datasets/tiny/manifest.json"))
    every = sorted(s.file for split in manifest.splits.values() for s in split.shards)
    assert sorted(wrote["host-a"] + wrote["host-b"]) == every
    total = 0
    for split in manifest.splits.values():
        for shard in split.shards:
            local = files.local(f"datasets/tiny/{shard.file}", size=shard.bytes)
            total += count_records(local, manifest.compression)
    assert total == manifest.count == 396
    assert not [k for k in files.list("datasets") if "/.staging/" in k]
    for root in roots.values():  # each host: its cache of the source, nothing else
        held = files_under(root)
        assert all(not_dataset_files(p, job["id"]) for p in held), held
