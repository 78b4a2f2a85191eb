"""The folder-as-tar stream: exact length, any offset readable again, a valid archive."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from cli.tarstream import FolderTar


def test_the_stream_is_the_folders_tar(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    files = {
        "a/b/x.bin": os.urandom(1000),
        "empty": b"",
        ("long" * 40) + ".bin": os.urandom(70_000),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    stream = FolderTar(tmp_path)
    whole = stream.read()
    assert len(whole) == stream.size and stream.files == 3
    stream.seek(0)
    pieces = iter(lambda: stream.read(777), b"")
    assert b"".join(pieces) == whole
    stream.seek(12_345)
    assert stream.read(5000) == whole[12_345:17_345]
    with tarfile.open(fileobj=io.BytesIO(whole)) as archive:
        for name, data in files.items():
            member = archive.extractfile(name)
            assert member is not None and member.read() == data
