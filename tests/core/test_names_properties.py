"""Properties of name and path validation (core/names.py), over generated input.

The data root used here holds the traps a client could aim at: a symlink to a folder
outside the root, one to `/`, one that escapes through `..`, a symlink loop, a dangling
symlink, and a symlink that stays inside (which is fine to follow).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.schemas import ShardRequest
from core.names import NAME_PATTERN, UnsafePathError, is_valid_name, is_within, resolve_under
from core.train_config import TrainConfig

# The contract, written out again (not imported), so a change to NAME_PATTERN shows here.
CONTRACT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

names = st.from_regex(CONTRACT_NAME, fullmatch=True)
# Any text at all: every Unicode category, lone surrogates, NUL and control characters.
any_text = st.text(st.characters(codec=None), max_size=80)
# Paths built from the pieces an attacker would use, mixed with arbitrary text.
_atoms = st.sampled_from(
    [
        "..",
        ".",
        "",
        "out",
        "root-link",
        "escape",
        "loop",
        "dangling",
        "in",
        "up",
        "etc",
        "passwd",
        "%2e%2e",
        "..%2f",
        "%2e%2e%2f",
        "%252e%252e",
        "..\\..",
        "\\",
        "\x00",
        "~",
        "é",
        "\u2025",  # two-dot leader
        "\uff0e\uff0e",  # fullwidth dots
        "\ud800",
        "x" * 256,
    ]
)
hostile_paths = st.builds(
    lambda prefix, parts: prefix + "/".join(parts),
    st.sampled_from(["", "", "/", "//", "./", "~/"]),
    st.lists(_atoms | any_text, min_size=1, max_size=6),
)


@pytest.fixture(scope="module")
def trap_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("names")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    root = base / "root"
    (root / "in" / "deeper").mkdir(parents=True)
    (root / "out").symlink_to(outside)
    (root / "root-link").symlink_to("/")
    (root / "in" / "escape").symlink_to("../../outside")
    (root / "escape").symlink_to("in/escape")
    (root / "loop").symlink_to("loop")
    (root / "dangling").symlink_to(base / "nowhere")
    (root / "in" / "up").symlink_to("..")  # back to the root: inside, allowed
    return root


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clean")


def _inside(root: Path, path: Path) -> bool:
    real = Path(os.path.realpath(path))
    root = Path(os.path.realpath(root))
    return real == root or root in real.parents


@given(names)
def test_valid_names_match_the_contract_and_round_trip(clean_root: Path, name: str) -> None:
    assert is_valid_name(name)
    assert re.fullmatch(CONTRACT_NAME, name) and re.fullmatch(NAME_PATTERN, name)
    # URL-safe: it is its own percent-encoding, so /datasets/<name> needs no escaping.
    assert quote(name, safe="") == name
    # The request models take it, unchanged.
    assert ShardRequest(source="s", dataset=name).dataset == name
    assert TrainConfig(dataset=name, resume_from=name, initial_epoch=0).resume_from == name
    # As a path: exactly one component under the root, with that name.
    path = resolve_under(clean_root, name)
    assert path == clean_root.resolve() / name
    assert path.name == name and path.parent == clean_root.resolve()


@given(any_text)
@example("a\n")
@example("a" * 64)
@example("a" * 65)
@example("é")
@example("٣")  # a Unicode digit: not [0-9]
@example("K")  # Kelvin sign: matches [A-Za-z] under re.IGNORECASE, must not here
def test_is_valid_name_is_exactly_the_contract(text: str) -> None:
    by_hand = (
        1 <= len(text) <= 64
        and text[0] in NAME_CHARS.replace("_", "").replace("-", "")
        and all(c in NAME_CHARS for c in text)
    )
    assert is_valid_name(text) == by_hand


@settings(max_examples=300)
@given(hostile_paths | any_text)
@example("../outside/secret.txt")
@example("out/secret.txt")
@example("escape/secret.txt")
@example("in/escape")
@example("root-link/etc/passwd")
@example("in/up/in/up/out")
@example("loop/x")
@example("/etc/passwd")
@example("a\x00b")
@example("..\\outside")
@example("x" * 5000)
@example("\ud800")
def test_resolve_under_never_leaves_the_root(trap_root: Path, text: str) -> None:
    try:
        path = resolve_under(trap_root, text)
    except UnsafePathError:
        return
    root = trap_root.resolve()
    assert path == root or root in path.parents
    assert _inside(trap_root, path), f"{text!r} resolved to {path}, outside {root}"
    assert path == Path(os.path.realpath(path))  # fully resolved: no symlink left to follow
    assert is_within(trap_root, path)
    # What resolve_under accepts has no NUL, backslash, `..` or absolute form.
    assert "\x00" not in text and "\\" not in text
    assert not text.startswith("/") and ".." not in text.split("/")


@given(
    st.lists(
        st.sampled_from(["%2e", "%2E", "%2f", "%5c", "%00", ".", "a"]), min_size=1, max_size=20
    )
)
def test_percent_escapes_are_names_not_paths(clean_root: Path, pieces: list[str]) -> None:
    """resolve_under takes the text as it is: `%2e%2e%2f` is one odd file name, never `../`."""
    text = "".join(pieces)
    if text in (".", ".."):
        return
    if set(text) == {"."}:  # "..." and longer are plain names
        assert resolve_under(clean_root, text) == clean_root.resolve() / text
        return
    path = resolve_under(clean_root, text)
    assert path.parent == clean_root.resolve() and path.name == text


@given(hostile_paths | any_text)
def test_is_within_never_says_inside_for_what_is_outside(trap_root: Path, text: str) -> None:
    candidate = trap_root / text.lstrip("/")
    try:
        real_inside = _inside(trap_root, candidate)
    except (OSError, ValueError):  # NUL, unencodable: no such path, is_within says outside
        assert not is_within(trap_root, candidate)
        return
    if is_within(trap_root, candidate):
        assert real_inside, f"{text!r}: is_within says inside, realpath says outside"
    elif "loop" not in text:  # a loop is refused, though realpath stops inside the root
        assert not real_inside, f"{text!r}: inside, yet refused"


def test_the_traps_are_refused(trap_root: Path) -> None:
    for text in ("out", "out/secret.txt", "escape", "in/escape", "root-link", "loop"):
        with pytest.raises(UnsafePathError):
            resolve_under(trap_root, text)
    assert resolve_under(trap_root, "in/up/in") == trap_root.resolve() / "in"
    # A dangling symlink to outside the root is refused before anything is created there.
    with pytest.raises(UnsafePathError):
        resolve_under(trap_root, "dangling/new")
