from __future__ import annotations

from pathlib import Path

import pytest

from core.names import UnsafePathError, is_valid_name, resolve_under


@pytest.mark.parametrize("name", ["a", "tiny-imagenet_200", "A" * 64, "0x"])
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "-a", "_a", "a" * 65, "a/b", "a.b", "..", "a b", "é"])
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)


@pytest.mark.parametrize(
    "path", ["", "../x", "a/../../x", "/etc/passwd", "a\x00b", "a\\..\\b", ".."]
)
def test_paths_that_escape_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafePathError):
        resolve_under(tmp_path, path)


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "evil").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        resolve_under(root, "evil")
    (root / "ok").mkdir()
    assert resolve_under(root, "ok/sub") == root.resolve() / "ok" / "sub"
