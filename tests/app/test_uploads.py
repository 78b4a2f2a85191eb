"""tus uploads against the real API process (`python -m app` under uvicorn), with the real
tus client (tuspy) run as its own process: whole, interrupted by SIGKILL and resumed, and
every archive attack refused with nothing written outside the upload area."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.utils.services import api_process, service_env
from tests.utils.tus import CLIENT, attacks, digits_tar, digits_zip, sha256

pytestmark = pytest.mark.slow

TUS = {"Tus-Resumable": "1.0.0"}
MAX_UPLOAD = 50_000_000


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def api(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = service_env(
        data_root,
        TINYRES_MAX_ARCHIVE_MEMBERS="50",
        TINYRES_MAX_ARCHIVE_BYTES="5000000",
        TINYRES_MAX_UPLOAD_BYTES_DATASET=str(MAX_UPLOAD),
    )
    with api_process(env, log=tmp_path_factory.mktemp("logs") / "api.log") as base:
        yield base


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(api: str, length: int, **values: str) -> httpx.Response:
    headers = {**TUS, "Upload-Length": str(length), "Upload-Metadata": metadata(**values)}
    return httpx.post(f"{api}/uploads", headers=headers)


def patch(api: str, location: str, offset: int, body: bytes, **extra: str) -> httpx.Response:
    headers = {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        **extra,
    }
    return httpx.patch(f"{api}{location}", headers=headers, content=body, timeout=60)


def upload_whole(api: str, path: Path, name: str) -> httpx.Response:
    created = create(api, path.stat().st_size, name=name, filename=path.name)
    assert created.status_code == 201, created.text
    return patch(api, created.headers["Location"], 0, path.read_bytes())


def run_client(api: str, path: Path, name: str, store: Path, delay: float) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", CLIENT, f"{api}/uploads", str(path), name, "8192"]
    return subprocess.Popen(
        [*command, str(store), str(delay)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )


def test_options_advertise_the_protocol(api: str) -> None:
    answer = httpx.options(f"{api}/uploads")
    assert answer.status_code == 204
    assert answer.headers["Tus-Version"] == "1.0.0"
    assert {"creation", "termination"} <= set(answer.headers["Tus-Extension"].split(","))
    assert int(answer.headers["Tus-Max-Size"]) == MAX_UPLOAD


def test_tuspy_upload_is_byte_identical_and_listed(
    api: str, data_root: Path, tmp_path: Path
) -> None:
    archive = digits_zip(tmp_path)
    client = run_client(api, archive, "digits", tmp_path / "urls.json", 0)
    out, _ = client.communicate(timeout=120)
    assert client.returncode == 0, out
    assert sha256(data_root / "uploads" / "digits.zip") == sha256(archive)
    sources = httpx.get(f"{api}/sources").json()["sources"]
    assert {
        "path": "uploads/digits.zip",
        "kind": "zip",
        "bytes": archive.stat().st_size,
        "origin": "upload",
    } in sources
    # The name is now taken; the finished upload still answers HEAD with its full length.
    assert create(api, 10, name="digits", filename="x.zip").status_code == 409
    url = out.split("done ", 1)[1].strip()
    head = httpx.head(url, headers=TUS)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"]
    assert head.headers["Cache-Control"] == "no-store"


def test_killed_client_resumes_from_the_servers_offset(
    api: str, data_root: Path, tmp_path: Path
) -> None:
    archive = digits_tar(tmp_path, gz=False)  # uncompressed: big enough for many chunks
    store = tmp_path / "urls.json"
    first = run_client(api, archive, "resumed", store, 0.05)
    assert first.stdout is not None
    offsets = 0
    for line in first.stdout:
        offsets += line.startswith("offset")
        if offsets == 5:
            break
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = run_client(api, archive, "resumed", store, 0)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    start = int(out.splitlines()[0].split()[1])
    assert 5 * 8192 <= start < archive.stat().st_size  # resumed, not restarted
    assert sha256(data_root / "uploads" / "resumed.tar") == sha256(archive)


def _outside_uploads(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if "uploads" not in p.relative_to(root).parts[:1] and not p.name.endswith("-journal")
    }


def test_every_attack_is_refused_and_nothing_escapes(
    api: str, data_root: Path, tmp_path: Path
) -> None:
    cases = attacks(tmp_path / "bad", digits_zip(tmp_path), digits_tar(tmp_path))
    before = _outside_uploads(data_root)
    for index, (case, (path, reason)) in enumerate(cases.items()):
        answer = upload_whole(api, path, f"attack{index}")
        assert answer.status_code == 422, (case, answer.text)
        assert reason in answer.json()["detail"], case
    assert _outside_uploads(data_root) - before == set()
    # What the attacks would write: ../../evil.jpg climbs above the data root, the others
    # are absolute (other tests may well name a dataset "evil": only the files count).
    assert not list(data_root.parent.rglob("evil*.jpg"))
    assert not Path("/etc/evil.jpg").exists() and not Path("/abs/evil.jpg").exists()
    uploads = data_root / "uploads"
    assert not [p.name for p in uploads.iterdir() if p.name.startswith("attack")]
    assert not list((uploads / ".partial").glob("*.part"))
    listed = {s["path"] for s in httpx.get(f"{api}/sources").json()["sources"]}
    assert not {p for p in listed if "attack" in p}


@pytest.mark.parametrize(
    "values",
    [
        {"filename": "a.zip"},
        {"name": "bad name", "filename": "a.zip"},
        {"name": "../x", "filename": "a.zip"},
        {"name": "ok"},
        {"name": "ok", "filename": "a.rar"},
    ],
)
def test_bad_metadata_is_400(api: str, values: dict[str, str]) -> None:
    answer = create(api, 100, **values)
    assert answer.status_code == 400
    assert answer.json()["detail"]


def test_protocol_errors(api: str) -> None:
    garbled = {**TUS, "Upload-Length": "10", "Upload-Metadata": "name !!!"}
    assert httpx.post(f"{api}/uploads", headers=garbled).status_code == 400
    no_version = {"Upload-Length": "10", "Upload-Metadata": metadata(name="v", filename="v.zip")}
    refused = httpx.post(f"{api}/uploads", headers=no_version)
    assert refused.status_code == 412
    assert refused.headers["Tus-Version"] == "1.0.0"
    too_big = create(api, MAX_UPLOAD + 1, name="big", filename="big.zip")
    assert too_big.status_code == 413
    created = create(api, 100, name="pending", filename="p.tar.gz")
    location = created.headers["Location"]
    assert "Upload-Expires" in created.headers
    assert create(api, 100, name="pending", filename="q.zip").status_code == 409
    assert patch(api, location, 0, b"x" * 10).headers["Upload-Offset"] == "10"
    wrong = patch(api, location, 3, b"y")
    assert wrong.status_code == 409
    assert wrong.headers["Upload-Offset"] == "10"
    assert patch(api, location, 10, b"z" * 91).status_code == 413
    assert httpx.head(f"{api}{location}", headers=TUS).headers["Upload-Offset"] == "10"
    bad_type = patch(api, location, 10, b"z", **{"Content-Type": "application/json"})
    assert bad_type.status_code == 415
    assert httpx.delete(f"{api}{location}", headers=TUS).status_code == 204
    assert httpx.head(f"{api}{location}", headers=TUS).status_code == 404
    assert patch(api, location, 10, b"z").status_code == 404
    assert create(api, 100, name="pending", filename="p.zip").status_code == 201


def test_uploaded_sources_are_deleted_through_sources(
    api: str, data_root: Path, tmp_path: Path
) -> None:
    assert upload_whole(api, digits_zip(tmp_path), "todelete").status_code == 204
    (data_root / "sources" / "ondisk").mkdir(parents=True)
    assert httpx.delete(f"{api}/sources/sources/ondisk").status_code == 404  # not a source
    assert httpx.delete(f"{api}/sources/uploads/todelete.zip").status_code == 204
    assert httpx.delete(f"{api}/sources/uploads/todelete.zip").status_code == 404
    listed = {s["path"] for s in httpx.get(f"{api}/sources").json()["sources"]}
    assert "uploads/todelete.zip" not in listed
