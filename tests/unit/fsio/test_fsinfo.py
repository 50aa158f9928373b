"""Filesystem detection on real mounts: the test's own directory, a tmpfs and XFS on a loop device.

statfs(2) is the fast detector and /proc/self/mountinfo its Python fallback: every real mount here is
checked with both. Mounting needs root (as in CI) and mkfs.xfs (tests/run installs xfsprogs);
without them these tests fail saying so rather than skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aif_gateway.fsio import fsinfo, lustre
from aif_gateway.fsio.fsinfo import FsInfo

XFS_IMAGE_BYTES = 320 << 20  # mkfs.xfs refuses filesystems under 300 MiB; the image is sparse


def _run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}"
            " -- these tests mount filesystems: run them as root, with xfsprogs installed (tests/run does)"
        )


def _mounted(point: Path, *mount_args: str) -> Iterator[Path]:
    point.mkdir()
    _run("mount", *mount_args, str(point))
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=False)  # a loop mount detaches its device


@pytest.fixture
def tmpfs_dir(tmp_path: Path) -> Iterator[Path]:
    yield from _mounted(tmp_path / "tmpfs", "-t", "tmpfs", "-o", "size=16m", "tmpfs")


def _xfs(tmp_path: Path, reflink: int) -> Iterator[Path]:
    image = tmp_path / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(XFS_IMAGE_BYTES)
    _run("mkfs.xfs", "-q", "-m", f"reflink={reflink}", str(image))
    yield from _mounted(tmp_path / "xfs", "-o", "loop", str(image))


@pytest.fixture
def xfs_dir(tmp_path: Path) -> Iterator[Path]:
    yield from _xfs(tmp_path, reflink=1)


@pytest.fixture
def xfs_noreflink_dir(tmp_path: Path) -> Iterator[Path]:
    yield from _xfs(tmp_path, reflink=0)


def test_tmpfs_is_detected(tmpfs_dir: Path) -> None:
    info = fsinfo.detect(tmpfs_dir)
    assert (info.kind, info.magic, info.source) == ("tmpfs", 0x01021994, "statfs")
    assert info.block_size == os.statvfs(tmpfs_dir).f_bsize
    assert fsinfo.kind_by_mountinfo(tmpfs_dir) == ("tmpfs", info.block_size)
    assert not info.supports_reflink and not info.parallel


def test_xfs_with_reflink_is_detected(xfs_dir: Path) -> None:
    info = fsinfo.detect(xfs_dir)
    assert (info.kind, info.magic, info.block_size) == ("xfs", 0x58465342, 4096)
    assert info.supports_reflink
    assert fsinfo.kind_by_mountinfo(xfs_dir) == ("xfs", 4096)
    assert os.listdir(xfs_dir) == []  # the reflink probe leaves nothing behind


def test_xfs_without_reflink_says_so(xfs_noreflink_dir: Path) -> None:
    info = fsinfo.detect(xfs_noreflink_dir)
    assert info.kind == "xfs" and not info.supports_reflink


def test_statfs_and_mountinfo_agree_on_the_test_directory(tmp_path: Path) -> None:
    kind, block_size, magic = fsinfo.kind_by_statfs(tmp_path)
    assert fsinfo.MAGIC_KINDS.get(magic, "other") == kind
    assert fsinfo.kind_by_mountinfo(tmp_path) == (kind, block_size)


def test_a_filesystem_we_do_not_name_is_other() -> None:
    assert fsinfo.detect("/proc").kind == "other"
    assert fsinfo.kind_by_mountinfo("/proc")[0] == "other"


def test_detect_falls_back_to_mountinfo_without_statfs(tmpfs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsinfo, "_statfs", None)
    info = fsinfo.detect(tmpfs_dir)
    assert (info.kind, info.magic, info.source) == ("tmpfs", None, "mountinfo")


def test_statfs_of_a_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fsinfo.kind_by_statfs(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        fsinfo.detect(tmp_path / "missing")


def test_mountinfo_longest_mount_point_and_escapes(tmp_path: Path) -> None:
    inner = tmp_path / "data dir" / "x"
    inner.mkdir(parents=True)
    escaped = str(tmp_path / "data dir").replace(" ", "\\040")
    table = tmp_path / "mountinfo"
    table.write_text(
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        f"90 27 0:50 / {tmp_path} rw - xfs /dev/loop0 rw\n"
        f"91 90 0:51 / {escaped} rw,relatime shared:7 - lustre 10.0.0.1@tcp:/fs rw\n"
        f"92 90 0:52 / {escaped}x rw - gpfs gpfs0 rw\n"  # a sibling sharing the prefix: not a parent
    )
    assert fsinfo.kind_by_mountinfo(inner, str(table))[0] == "lustre"
    assert fsinfo.kind_by_mountinfo(tmp_path, str(table))[0] == "xfs"
    assert fsinfo.kind_by_mountinfo("/", str(table))[0] == "ext4"


def test_mountinfo_later_mount_on_the_same_point_wins(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(f"1 0 0:1 / {tmp_path} rw - ext4 /dev/a rw\n2 1 0:2 / {tmp_path} rw - nfs4 srv:/x rw\n")
    assert fsinfo.kind_by_mountinfo(tmp_path, str(table))[0] == "nfs"


def test_fs_info_is_cached_per_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_detect = fsinfo.detect

    def counting(directory):
        calls.append(str(directory))
        return real_detect(directory)

    monkeypatch.setattr(fsinfo, "detect", counting)
    monkeypatch.setattr(fsinfo, "_cache", {})
    (tmp_path / "a").mkdir()
    first = fsinfo.fs_info(tmp_path)
    assert fsinfo.fs_info(tmp_path) is first
    assert fsinfo.fs_info(str(tmp_path) + "/.") is first  # same directory, another spelling
    fsinfo.fs_info(tmp_path / "a")
    assert calls == [str(tmp_path), str(tmp_path / "a")]


def test_lustre_reads_the_default_layout_through_lfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # statfs cannot say "lustre" here; everything after it runs for real against a fake lfs.
    monkeypatch.setattr(fsinfo, "kind_by_statfs", lambda path: ("lustre", 4096, 0x0BD00BD0))
    lfs = tmp_path / "bin" / "lfs"
    lfs.parent.mkdir()
    lfs.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "print({'getstripe': 'stripe_count:  4 stripe_size:   2097152 pattern: raid0 stripe_offset: -1',"
        " 'osts': 'OBDS:\\n0: fs-OST0000_UUID ACTIVE\\n1: fs-OST0001_UUID ACTIVE'}[sys.argv[1]])\n"
    )
    lfs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{lfs.parent}{os.pathsep}{os.environ['PATH']}")
    info = fsinfo.detect(tmp_path)
    assert info == FsInfo("lustre", 4096, stripe_size=2 << 20, stripe_count=4, ost_count=2, magic=0x0BD00BD0)
    assert info.parallel
    assert info.summary() == {
        "kind": "lustre",
        "block_size": 4096,
        "stripe_size": 2 << 20,
        "stripe_count": 4,
        "ost_count": 2,
    }


def test_lustre_without_lfs_still_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsinfo, "kind_by_statfs", lambda path: ("lustre", 4096, 0x0BD00BD0))
    monkeypatch.setattr(lustre, "LFS", str(tmp_path / "no-such-lfs"))
    info = fsinfo.detect(tmp_path)
    assert (info.kind, info.stripe_size, info.stripe_count, info.ost_count) == ("lustre", None, None, None)


def test_gpfs_block_size_is_the_larger_of_statfs_and_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsinfo, "kind_by_statfs", lambda path: ("gpfs", 1024, 0x47504653))
    info = fsinfo.detect(tmp_path)
    assert info.kind == "gpfs" and info.parallel
    assert info.block_size == max(1024, os.stat(tmp_path).st_blksize)


def test_summary_of_a_local_filesystem(tmp_path: Path) -> None:
    summary = fsinfo.detect(tmp_path).summary()
    assert set(summary) <= {"kind", "block_size", "reflink"}
    assert summary["block_size"] == os.statvfs(tmp_path).f_bsize
