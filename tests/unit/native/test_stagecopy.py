"""The batch copy of small files: the native version against its pure-Python version, case by case,
on real files (content, xxh3, modes, destination mtimes, and where and why a batch stops)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import xxhash

from aif_gateway import _native
from aif_gateway.fsio import engine, pysmallcopy

COPIERS = {"native": _native.copy_small_files, "python": pysmallcopy.copy_small_files}
Copier = Callable[..., tuple[list[int], list[int], tuple[int, int, str] | None]]


@pytest.fixture(params=sorted(COPIERS))
def copy(request: pytest.FixtureRequest) -> Copier:
    return COPIERS[request.param]


def make(path: Path, data: bytes, mode: int = 0o640) -> tuple[str, int, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def test_the_stage_uses_the_native_copier() -> None:
    if os.environ.get("AIF_ENGINE", "auto") != "python":
        assert engine.copy_small_files is _native.copy_small_files


def test_a_batch_is_copied_hashed_and_timed(copy: Copier, tmp_path: Path) -> None:
    datas = [b"", b"x", os.urandom(4096), os.urandom(1 << 20), "é".encode() * 1000]
    sources = [make(tmp_path / "src" / f"f{i}", d, 0o600 + i) for i, d in enumerate(datas)]
    dests = [str(tmp_path / f"d{i}") for i in range(len(datas))]
    hashes, mtimes, failure = copy([s[0] for s in sources], dests, [s[1] for s in sources], [s[2] for s in sources])
    assert failure is None
    assert hashes == [xxhash.xxh3_64_intdigest(d) for d in datas]
    umask = os.umask(0)
    os.umask(umask)
    for dest, data, mtime, (src, _, _) in zip(dests, datas, mtimes, sources):
        assert Path(dest).read_bytes() == data and os.stat(dest).st_mtime_ns == mtime
        assert stat.S_IMODE(os.stat(dest).st_mode) == (stat.S_IMODE(os.stat(src).st_mode) | 0o600) & ~umask


def test_an_existing_file_or_link_at_the_destination_is_replaced_not_written_through(
    copy: Copier, tmp_path: Path
) -> None:
    src = make(tmp_path / "src", b"new")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    dest = tmp_path / "dest"
    dest.symlink_to(victim)
    assert copy([src[0]], [str(dest)], [src[1]], [src[2]])[2] is None
    assert not dest.is_symlink() and dest.read_bytes() == b"new" and victim.read_bytes() == b"keep me"


@pytest.mark.parametrize("change", ["grown", "shrunk", "touched"])
def test_a_source_unlike_its_listing_stops_the_batch_there(copy: Copier, tmp_path: Path, change: str) -> None:
    first = make(tmp_path / "a", b"first")
    second = make(tmp_path / "b", b"second")
    size, mtime = second[1], second[2]
    if change == "grown":
        size -= 1
    elif change == "shrunk":
        size += 1
    else:
        mtime += 1
    dests = [str(tmp_path / "da"), str(tmp_path / "db")]
    hashes, mtimes, failure = copy([first[0], second[0]], dests, [first[1], size], [first[2], mtime])
    assert len(hashes) == len(mtimes) == 1 and failure == (1, 0, "changed")
    assert Path(dests[0]).read_bytes() == b"first" and not Path(dests[1]).exists()


def test_a_missing_source_or_destination_directory_is_named_by_its_step(copy: Copier, tmp_path: Path) -> None:
    src = make(tmp_path / "a", b"data")
    assert copy([str(tmp_path / "nope")], [str(tmp_path / "d")], [1], [1])[2] == (0, 2, "open_source")  # ENOENT
    failure = copy([src[0]], [str(tmp_path / "no-dir" / "d")], [src[1]], [src[2]])[2]
    assert failure == (0, 2, "create_dest")


def test_a_directory_as_source_fails_reading(copy: Copier, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    st = (tmp_path / "dir").stat()
    failure = copy([str(tmp_path / "dir")], [str(tmp_path / "d")], [st.st_size], [st.st_mtime_ns])[2]
    assert failure == (0, 21, "read_source")  # EISDIR


def test_bad_arguments_are_refused_alike(copy: Copier) -> None:
    with pytest.raises(ValueError):
        copy(["a"], ["b", "c"], [1], [1])
    with pytest.raises(ValueError):
        copy(["a"], ["b"], [-1], [1])
