"""core/archives.py: each unsafe archive is refused with its reason; good ones pass, and
the tar reader lists and reads the same bytes as the files archived."""

from __future__ import annotations

import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from core.archives import (
    ArchiveError,
    ArchiveLimits,
    TarMembers,
    archive_suffix,
    check_archive,
    safe_member_name,
)
from tests.utils.tus import attacks, digits_tar, digits_zip

LIMITS = ArchiveLimits(max_members=50, max_bytes=5_000_000)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("archives")
    return {
        ".zip": digits_zip(folder),
        ".tar.gz": digits_tar(folder, gz=True),
        ".tar": digits_tar(folder, gz=False),
    }


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz", ".tar"])
def test_good_archives_pass(good: dict[str, Path], suffix: str) -> None:
    summary = check_archive(good[suffix], suffix, LIMITS)
    assert summary.kind == ("zip" if suffix == ".zip" else "tar")
    assert summary.members >= 18
    assert summary.bytes > 0


def test_every_attack_is_refused_with_its_reason(good: dict[str, Path], tmp_path: Path) -> None:
    cases = attacks(tmp_path / "bad", good[".zip"], good[".tar.gz"])
    for name, (path, reason) in cases.items():
        suffix = archive_suffix(name)
        assert suffix is not None
        with pytest.raises(ArchiveError, match=reason):
            check_archive(path, suffix, LIMITS)


def test_a_zip_whose_headers_lie_about_sizes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/zeros.jpg", bytes(6_000_000))
    data = bytearray(path.read_bytes())
    # Declare 100 bytes uncompressed, in the local header (offset 22) and the central one.
    struct.pack_into("<I", data, 22, 100)
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 100)
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="corrupt"):
        check_archive(path, ".zip", LIMITS)


def test_the_wrong_kind_for_the_name_is_refused(good: dict[str, Path]) -> None:
    with pytest.raises(ArchiveError, match="not a gzip"):
        check_archive(good[".zip"], ".tar.gz", LIMITS)
    with pytest.raises(ArchiveError, match="not a zip"):
        check_archive(good[".tar"], ".zip", LIMITS)


@pytest.mark.parametrize(
    ("filename", "suffix"),
    [("a.zip", ".zip"), ("A.TGZ", ".tar.gz"), ("x.tar.gz", ".tar.gz"), ("x.tar", ".tar")],
)
def test_archive_suffix(filename: str, suffix: str) -> None:
    assert archive_suffix(filename) == suffix


@pytest.mark.parametrize("filename", ["a.rar", ".zip", "zip", "a.gz"])
def test_archive_suffix_refuses(filename: str) -> None:
    assert archive_suffix(filename) is None


@pytest.mark.parametrize("name", ["/x", "\\x", "C:/x", "a/../../x", "..", ""])
def test_unsafe_member_names(name: str) -> None:
    with pytest.raises(ArchiveError):
        safe_member_name(name)


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar"])
def test_tar_members_reads_what_was_archived(
    good: dict[str, Path], suffix: str, tmp_path: Path
) -> None:
    with tarfile.open(good[suffix]) as archive:
        expected = {
            m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile()
        }
    with TarMembers(good[suffix], spool_dir=tmp_path) as members:
        assert members.names() == list(expected)
        for name in reversed(members.names()):  # random access, not archive order
            assert members.read(name) == expected[name]
        with pytest.raises(KeyError):
            members.read("digits/nope.jpg")
    assert list(tmp_path.iterdir()) == []  # the spooled .tar is gone


def test_tar_members_refuses_links(good: dict[str, Path], tmp_path: Path) -> None:
    cases = attacks(tmp_path / "bad", good[".zip"], good[".tar.gz"])
    with pytest.raises(ArchiveError, match="link"):
        TarMembers(cases["symlink.tar.gz"][0], spool_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["bad"]


def test_a_truncated_plain_tar_is_refused(good: dict[str, Path], tmp_path: Path) -> None:
    data = good[".tar"].read_bytes()
    for cut in (len(data) // 2, len(data) // 3 + 100):
        path = tmp_path / "cut.tar"
        path.write_bytes(data[:cut])
        with pytest.raises(ArchiveError, match="truncated"):
            check_archive(path, ".tar", LIMITS)
