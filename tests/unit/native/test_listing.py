"""The listing's batch stat: the C version (native/listing.c) against its Python version, case by case."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from aif_gateway import _native
from aif_gateway.fsio import engine, pylisting

ENGINES = {"native": _native.stat_entries, "python": pylisting.stat_entries}
XATTR = "user.aifgw.meta"


@pytest.fixture(params=sorted(ENGINES))
def stat_entries(request):
    return ENGINES[request.param]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A directory with one entry of each kind the walk meets, and xattr values of many sizes."""
    (tmp_path / "plain").write_bytes(b"abc")
    for size in (0, 1, 1023, 1024, 1025, 3000):
        path = tmp_path / f"value-{size}"
        path.write_bytes(b"x" * size)
        os.setxattr(path, XATTR, bytes(range(256)) * (size // 256) + b"v" * (size % 256))
    (tmp_path / "dir").mkdir()
    os.setxattr(tmp_path / "dir", XATTR, b"a directory's value is not read")
    (tmp_path / "link").symlink_to(tmp_path / "value-1")
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "é 日本\nname").write_bytes(b"")
    return tmp_path


NAMES = [
    "plain",
    "value-0",
    "value-1",
    "value-1023",
    "value-1024",
    "value-1025",
    "value-3000",
    "dir",
    "link",
    "dangling",
    "fifo",
    "é 日本\nname",
    "missing",
    "plain/below",
]


def test_the_listing_runs_the_c_version_when_the_engine_is_native() -> None:
    # Fails on an extension built without native/listing.c: `pip install -e .` rebuilds it.
    if engine.ENGINE == "native":
        assert engine.stat_entries is _native.stat_entries


def test_both_versions_give_the_same_columns(tree: Path) -> None:
    for xattr in (XATTR, None, "user.absent"):
        native = _native.stat_entries(str(tree), NAMES, xattr)
        assert native == pylisting.stat_entries(str(tree), NAMES, xattr), xattr


def test_columns_are_lstat_fields_and_the_regular_files_values(stat_entries, tree: Path) -> None:
    modes, sizes, mtimes, values = stat_entries(str(tree), NAMES, XATTR)
    for name, mode, size, mtime, value in zip(NAMES, modes, sizes, mtimes, values):
        path = tree / name
        if not os.path.lexists(path):
            assert (mode, size, mtime, value) == (0, 0, 0, None), name  # gone: mode 0
            continue
        st = os.lstat(path)
        assert (mode, size, mtime) == (st.st_mode, st.st_size, st.st_mtime_ns), name
        if name.startswith("value-"):
            assert value == os.getxattr(path, XATTR), name
        else:  # no value, or not a regular file (the directory's and the link target's are not read)
            assert value is None, name


def test_a_large_value_is_read_whole(stat_entries, tree: Path) -> None:
    values = stat_entries(str(tree), ["value-1025", "value-3000"], XATTR)[3]
    assert [len(v) for v in values] == [1025, 3000]


def test_a_vanished_directory_makes_every_name_gone(stat_entries, tmp_path: Path) -> None:
    assert stat_entries(str(tmp_path / "nothing"), ["a", "b"], XATTR) == ([0, 0], [0, 0], [0, 0], [None, None])
    (tmp_path / "file").write_bytes(b"")
    assert stat_entries(str(tmp_path / "file"), ["a"], XATTR) == ([0], [0], [0], [None])


def test_an_empty_batch_is_four_empty_columns(stat_entries, tmp_path: Path) -> None:
    assert stat_entries(str(tmp_path), [], XATTR) == ([], [], [], [])


def test_other_errors_raise_oserror(stat_entries, tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(OSError) as exc:
        stat_entries(str(loop), ["a"], XATTR)  # opening the directory meets the loop
    assert exc.value.errno == errno.ELOOP
    with pytest.raises(OSError) as exc:
        stat_entries(str(tmp_path), ["x" * 300], XATTR)  # longer than a name may be
    assert exc.value.errno == errno.ENAMETOOLONG


def test_a_name_with_a_nul_is_refused(stat_entries, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        stat_entries(str(tmp_path), ["a\0b"], XATTR)
