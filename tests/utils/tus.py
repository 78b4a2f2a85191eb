"""Archives for upload tests (good ones from real images, and each attack), and a tus
client script run as its own process so that a test can kill it mid-upload."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

from tools.datasets import make_class_folders, zip_dir

# Run as `python -c CLIENT URL FILE NAME CHUNK STORE DELAY`: uploads FILE with tuspy,
# chunk by chunk, remembering the upload URL in STORE (so a second run resumes), and
# prints the offset of the first chunk it sends.
CLIENT = """
import sys, time
from tusclient import client
from tusclient.storage.filestorage import FileStorage
url, path, name, chunk, store, delay = sys.argv[1:7]
uploader = client.TusClient(url).uploader(
    path, chunk_size=int(chunk), metadata={"name": name, "filename": path.rsplit("/", 1)[-1]},
    store_url=True, url_storage=FileStorage(store), retries=0,
)
print("start", uploader.offset, flush=True)
size = uploader.get_file_size()
while uploader.offset < size:
    uploader.upload_chunk()
    print("offset", uploader.offset, flush=True)
    time.sleep(float(delay))
print("done", uploader.url, flush=True)
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digits_zip(folder: Path, per_class: int = 6) -> Path:
    """A class-per-folder dataset of real images (tools/datasets.py), zipped."""
    source = make_class_folders(folder / "src", per_class=per_class)
    return zip_dir(source, folder / "digits.zip")


def digits_tar(folder: Path, gz: bool = True) -> Path:
    source = make_class_folders(folder / "tsrc")
    path = folder / ("digits.tar.gz" if gz else "digits.tar")
    with tarfile.open(path, "w:gz" if gz else "w") as archive:
        archive.add(source, arcname="digits")
    return path


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"data of " + name.encode()


def _link(name: str, kind: bytes, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on a duplicate name: we want one
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for info, data in members:
                archive.writestr(info, data)
    return path


def _zip_symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _truncated(good: Path, path: Path) -> Path:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def attacks(folder: Path, good_zip: Path, good_tgz: Path) -> dict[str, tuple[Path, str]]:
    """Every archive the upload checks refuse: {case: (archive, words of the reason)}.

    The member and byte limits assume TINYRES_MAX_ARCHIVE_MEMBERS=50 and
    TINYRES_MAX_ARCHIVE_BYTES=5_000_000.
    """
    folder.mkdir(parents=True, exist_ok=True)
    image = b"x" * 100
    cases: dict[str, Callable[[Path], Path]] = {
        "not-archive.zip": lambda p: (p.write_bytes(b"just some text, no archive" * 50), p)[1],
        "truncated.zip": lambda p: _truncated(good_zip, p),
        "truncated.tar.gz": lambda p: _truncated(good_tgz, p),
        "absolute.tar.gz": lambda p: _tar(p, [_file("/etc/evil.jpg")]),
        "absolute.zip": lambda p: _zip(p, [(zipfile.ZipInfo("/abs/evil.jpg"), image)]),
        "dotdot.tar.gz": lambda p: _tar(p, [_file("cls/../../evil.jpg")]),
        "dotdot.zip": lambda p: _zip(p, [("cls/../../evil.jpg", image)]),
        "symlink.tar.gz": lambda p: _tar(
            p, [_file("a/x.jpg"), _link("a/y.jpg", tarfile.SYMTYPE, "/etc/passwd")]
        ),
        "hardlink.tar.gz": lambda p: _tar(
            p, [_file("a/x.jpg"), _link("a/y.jpg", tarfile.LNKTYPE, "a/x.jpg")]
        ),
        "symlink.zip": lambda p: _zip(p, [(_zip_symlink("a/y.jpg"), b"/etc/passwd")]),
        "members.tar.gz": lambda p: _tar(p, [_file(f"a/{i}.jpg") for i in range(60)]),
        "bomb.zip": lambda p: _zip(p, [("a/zeros.jpg", bytes(6_000_000))]),
        "duplicate.zip": lambda p: _zip(p, [("a/x.jpg", image), ("a/x.jpg", image)]),
        "duplicate.tar.gz": lambda p: _tar(p, [_file("a/x.jpg"), _file("a/x.jpg")]),
    }
    reasons = {
        "not-archive": "not a zip",
        "truncated": "truncated",
        "absolute": "absolute",
        "dotdot": "climbs out",
        "symlink": "symbolic link",
        "hardlink": "hard link",
        "members": "more than 50 members",
        "bomb": "more than 5000000 bytes",
        "duplicate": "duplicate",
    }
    built = {}
    for name, make in cases.items():
        built[name] = (make(folder / name), reasons[name.split(".")[0]])
    return built
