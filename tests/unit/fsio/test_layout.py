"""Layout policy (pure, table-driven) and the narrow interface that applies it.

Lustre and GPFS cannot run here. What these tests check for them is our side only: the
``lfs`` command lines we build (against a fake ``lfs`` on PATH that records its argv), how we
read ``lfs`` output, what we do when ``lfs`` fails, and the calls we make into libgpfs (against
a fake libgpfs.so compiled here). Whether a real Lustre/GPFS accepts them is not tested.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from aif_gateway.fsio import gpfs, layout, lustre, newfile
from aif_gateway.fsio.creds import PosixIds, acting_as
from aif_gateway.fsio.fsinfo import FsInfo
from aif_gateway.fsio.layout import GiB, KiB, MiB, WritePlan, plan_write
from aif_gateway.fsio.lustre import Component, Layout
from aif_gateway.store import publish

from ..store_support import bucket_paths, state_dir

EXT4 = FsInfo("ext4", 4096)
TMPFS = FsInfo("tmpfs", 4096)
XFS = FsInfo("xfs", 4096, supports_reflink=True)
GPFS_4M = FsInfo("gpfs", 4 * MiB)
GPFS_16M = FsInfo("gpfs", 16 * MiB)
GPFS_256K = FsInfo("gpfs", 256 * KiB)
LUSTRE = FsInfo("lustre", 4096, stripe_size=1 * MiB, stripe_count=1, ost_count=16)
LUSTRE_WIDE_DEFAULT = FsInfo("lustre", 4096, stripe_size=1 * MiB, stripe_count=-1, ost_count=16)
LUSTRE_4_OSTS = FsInfo("lustre", 4096, stripe_size=1 * MiB, stripe_count=1, ost_count=4)
LUSTRE_1_OST = FsInfo("lustre", 4096, stripe_size=1 * MiB, stripe_count=1, ost_count=1)
LUSTRE_UNKNOWN = FsInfo("lustre", 4096)  # lfs missing or unreadable
LUSTRE_8M = FsInfo("lustre", 4096, stripe_size=8 * MiB, stripe_count=2, ost_count=64)
LUSTRE_3M = FsInfo("lustre", 4096, stripe_size=3 * MiB, stripe_count=1, ost_count=8)
LUSTRE_32M = FsInfo("lustre", 4096, stripe_size=32 * MiB, stripe_count=1, ost_count=8)


# ---- I/O size ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fs", "size", "expected"),
    [
        (EXT4, None, 4 * MiB),
        (EXT4, 0, 1 * MiB),
        (EXT4, 100, 1 * MiB),
        (EXT4, 3 * MiB + 1, 3 * MiB + 4 * KiB),  # no larger than the object, in whole blocks
        (EXT4, 10 * GiB, 4 * MiB),
        (TMPFS, 2 * MiB, 2 * MiB),
        (XFS, 1 * MiB + 5, 1 * MiB + 4 * KiB),
        (GPFS_4M, 100, 4 * MiB),  # a whole block even for a tiny object
        (GPFS_4M, None, 4 * MiB),
        (GPFS_16M, None, 16 * MiB),
        (GPFS_256K, None, 4 * MiB),
        (LUSTRE, None, 4 * MiB),
        (LUSTRE, 512 * KiB, 1 * MiB),
        (LUSTRE_8M, None, 8 * MiB),
        (LUSTRE_3M, None, 6 * MiB),  # two whole stripes
        (LUSTRE_3M, 1, 3 * MiB),
        (LUSTRE_32M, None, 16 * MiB),  # past the cap: the cap
        (LUSTRE_UNKNOWN, None, 4 * MiB),  # no stripe size known: the block size decides
    ],
)
def test_io_size_table(fs: FsInfo, size: int | None, expected: int) -> None:
    assert layout.io_size(fs, size) == expected


@pytest.mark.parametrize("unit", [512, 4096, 64 * KiB, 1 * MiB, 3 * MiB, 5 * MiB, 7 * MiB, 16 * MiB, 20 * MiB])
@pytest.mark.parametrize("size", [None, 0, 1, 4095, 1 * MiB, 6 * MiB + 1, 100 * GiB])
def test_io_size_is_whole_units_within_bounds(unit: int, size: int | None) -> None:
    chosen = layout.io_size(FsInfo("gpfs", unit), size)
    assert layout.IO_MIN <= chosen <= layout.IO_MAX
    if unit <= layout.IO_MAX:
        assert chosen % unit == 0


# ---- Lustre layout ------------------------------------------------------------------------------


def plain(count: int, stripe_size: int | None = None) -> Layout:
    return Layout((Component(None, count, stripe_size),))


@pytest.mark.parametrize(
    ("fs", "size", "expected"),
    [
        (EXT4, 10 * GiB, None),
        (GPFS_4M, 10 * GiB, None),
        # Below 1 GiB: one stripe, which is the usual default already, so no lfs at all.
        (LUSTRE, 0, None),
        (LUSTRE, 1 * GiB - 1, None),
        (LUSTRE_WIDE_DEFAULT, 10 * MiB, plain(1, 1 * MiB)),
        (LUSTRE_8M, 100 * MiB, plain(1, 8 * MiB)),
        (LUSTRE_UNKNOWN, 10 * MiB, None),
        # From 1 GiB: one stripe per started GiB, stripes of at least 4 MiB, capped at the OSTs.
        (LUSTRE, 1 * GiB, plain(1, 4 * MiB)),
        (LUSTRE, 1 * GiB + 1, plain(2, 4 * MiB)),
        (LUSTRE, 5 * GiB, plain(5, 4 * MiB)),
        (LUSTRE, 100 * GiB, plain(16, 4 * MiB)),
        (LUSTRE_4_OSTS, 100 * GiB, plain(4, 4 * MiB)),
        (LUSTRE_8M, 3 * GiB, plain(3, 8 * MiB)),
        (LUSTRE_UNKNOWN, 3 * GiB, plain(3, 4 * MiB)),  # OST count unknown: Lustre itself caps it
        (LUSTRE_1_OST, 100 * GiB, None),  # nothing to spread over
        (LUSTRE_1_OST, None, None),
        # Unknown size: a PFL layout that widens as the file grows.
        (
            LUSTRE,
            None,
            Layout((Component(64 * MiB, 1, 1 * MiB), Component(8 * GiB, 4, 1 * MiB), Component(None, -1, 1 * MiB))),
        ),
        (
            LUSTRE_4_OSTS,
            None,
            Layout((Component(64 * MiB, 1, 1 * MiB), Component(8 * GiB, 4, 1 * MiB), Component(None, -1, 1 * MiB))),
        ),
        (
            FsInfo("lustre", 4096, 1 * MiB, 1, ost_count=2),
            None,
            Layout((Component(64 * MiB, 1, 1 * MiB), Component(8 * GiB, 2, 1 * MiB), Component(None, -1, 1 * MiB))),
        ),
        (LUSTRE_UNKNOWN, None, Layout((Component(64 * MiB, 1), Component(8 * GiB, 4), Component(None, -1)))),
    ],
)
def test_lustre_layout_table(fs: FsInfo, size: int | None, expected: Layout | None) -> None:
    assert layout.lustre_layout(fs, size) == expected


# ---- GPFS preallocation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fs", "size", "expected"),
    [
        (GPFS_4M, None, 0),
        (GPFS_4M, 0, 0),
        (GPFS_4M, 16 * MiB - 1, 0),
        (GPFS_4M, 16 * MiB, 16 * MiB),
        (GPFS_4M, 10 * GiB + 3, 10 * GiB + 3),
        (GPFS_256K, 1 * MiB, 1 * MiB),
        (EXT4, None, 0),
        (EXT4, 32 * MiB - 1, 0),
        (EXT4, 32 * MiB, 32 * MiB),
        (EXT4, 10 * GiB, 10 * GiB),
        (TMPFS, 10 * GiB, 0),
        (XFS, 10 * GiB, 0),
        (LUSTRE, 10 * GiB, 0),
    ],
)
def test_preallocation_table(fs: FsInfo, size: int | None, expected: int) -> None:
    assert layout.preallocation(fs, size) == expected


def test_plan_write_combines_the_three() -> None:
    assert plan_write(EXT4, 5 * GiB) == WritePlan(4 * MiB, None, 5 * GiB)
    assert plan_write(TMPFS, 5 * GiB) == WritePlan(4 * MiB, None, 0)
    assert plan_write(GPFS_16M, 1 * GiB) == WritePlan(16 * MiB, None, 1 * GiB)
    assert plan_write(LUSTRE, 2 * GiB) == WritePlan(4 * MiB, plain(2, 4 * MiB), 0)


# ---- lfs command construction and output parsing ----------------------------------------------


@pytest.mark.parametrize(
    ("lay", "args"),
    [
        (plain(1), ["-c", "1"]),
        (plain(5, 4 * MiB), ["-c", "5", "-S", "4M"]),
        (plain(-1, 1536 * KiB), ["-c", "-1", "-S", "1536K"]),
        (plain(2, 65536 + 512), ["-c", "2", "-S", "66048"]),
        (
            Layout((Component(64 * MiB, 1, 1 * MiB), Component(8 * GiB, 4, 1 * MiB), Component(None, -1, 1 * MiB))),
            ["-E", "64M", "-c", "1", "-S", "1M", "-E", "8G", "-c", "4", "-S", "1M", "-E", "-1", "-c", "-1", "-S", "1M"],
        ),
        (Layout((Component(64 * MiB, 1), Component(None, -1))), ["-E", "64M", "-c", "1", "-E", "-1", "-c", "-1"]),
    ],
)
def test_setstripe_args(lay: Layout, args: list[str]) -> None:
    assert lustre.setstripe_args(lay) == args


GETSTRIPE_PLAIN = "stripe_count:  2 stripe_size:   4194304 pattern:       raid0 stripe_offset: -1\n"
GETSTRIPE_OLD = "stripe_count:   -1 stripe_size:    1M stripe_offset:  -1\n"
GETSTRIPE_PFL = """  lcm_layout_gen:    0
  lcm_mirror_count:  1
  lcm_entry_count:   2
    lcme_id:             N/A
    lcme_extent.e_start: 0
    lcme_extent.e_end:   67108864
      stripe_count:  1       stripe_size:   1048576       pattern:       raid0       stripe_offset: -1

    lcme_id:             N/A
    lcme_extent.e_start: 67108864
    lcme_extent.e_end:   EOF
      stripe_count:  -1       stripe_size:   4194304       pattern:       raid0       stripe_offset: -1
"""
OSTS = """OBDS:
0: fs-OST0000_UUID ACTIVE
1: fs-OST0001_UUID ACTIVE
2: fs-OST0002_UUID INACTIVE
3: fs-OST0003_UUID ACTIVE
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GETSTRIPE_PLAIN, (4 * MiB, 2)),
        (GETSTRIPE_OLD, (1 * MiB, -1)),
        (GETSTRIPE_PFL, (1 * MiB, 1)),  # the first component: where a new file's bytes start
        ("", (None, None)),
        ("error: no such directory\n", (None, None)),
    ],
)
def test_parse_getstripe(text: str, expected: tuple[int | None, int | None]) -> None:
    assert lustre.parse_getstripe(text) == expected


def test_parse_osts_counts_active_ones() -> None:
    assert lustre.parse_osts(OSTS) == 3
    assert lustre.parse_osts("OBDS:\n") is None


# ---- a fake lfs on PATH -------------------------------------------------------------------------

FAKE_LFS = r'''#!{python}
"""Fake lfs: records its argv as one JSON line, answers from environment variables."""
import json, os, sys
with open(os.environ["FAKE_LFS_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
cmd = sys.argv[1]
if cmd == "setstripe" and os.environ.get("FAKE_LFS_CREATE", "1") == "1":
    open(sys.argv[-1], "x").close()
sys.stdout.write(os.environ.get("FAKE_LFS_" + cmd.upper(), ""))
sys.stderr.write(os.environ.get("FAKE_LFS_STDERR", ""))
sys.exit(int(os.environ.get("FAKE_LFS_RC", "0")))
'''


class FakeLfs:
    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log = directory / "lfs.log"
        self.monkeypatch = monkeypatch
        script = directory / "bin" / "lfs"
        script.parent.mkdir()
        script.write_text(FAKE_LFS.format(python=sys.executable))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_LFS_LOG", str(self.log))

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def answer(self, **env: str) -> None:
        for name, value in env.items():
            self.monkeypatch.setenv(f"FAKE_LFS_{name.upper()}", value)


@pytest.fixture
def fake_lfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLfs:
    return FakeLfs(tmp_path, monkeypatch)


def test_create_with_layout_runs_lfs_setstripe(fake_lfs: FakeLfs, tmp_path: Path) -> None:
    target = tmp_path / "obj"
    lustre.create_with_layout(target, plain(3, 4 * MiB))
    assert fake_lfs.calls() == [["setstripe", "-c", "3", "-S", "4M", str(target)]]
    assert target.is_file() and target.stat().st_size == 0


def test_create_with_layout_reports_lfs_failure(fake_lfs: FakeLfs, tmp_path: Path) -> None:
    fake_lfs.answer(rc="22", stderr="lfs setstripe: invalid stripe count\n", create="0")
    with pytest.raises(lustre.LayoutError, match="exited 22: lfs setstripe: invalid stripe count"):
        lustre.create_with_layout(tmp_path / "obj", plain(3))


def test_create_with_layout_insists_on_the_file(fake_lfs: FakeLfs, tmp_path: Path) -> None:
    fake_lfs.answer(create="0")
    with pytest.raises(lustre.LayoutError, match="did not create"):
        lustre.create_with_layout(tmp_path / "obj", plain(3))


def test_create_with_layout_without_lfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(lustre.LayoutError, match="not found"):
        lustre.create_with_layout(tmp_path / "obj", plain(3))


def test_default_layout_reads_getstripe_and_osts(fake_lfs: FakeLfs, tmp_path: Path) -> None:
    fake_lfs.answer(getstripe=GETSTRIPE_PLAIN, osts=OSTS)
    assert lustre.default_layout(tmp_path) == lustre.Defaults(4 * MiB, 2, 3)
    assert fake_lfs.calls() == [["getstripe", "-d", str(tmp_path)], ["osts", str(tmp_path)]]


def test_default_layout_when_lfs_fails_or_is_missing(
    fake_lfs: FakeLfs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_lfs.answer(rc="1", getstripe=GETSTRIPE_PLAIN, osts=OSTS)
    assert lustre.default_layout(tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert lustre.default_layout(tmp_path) is None


# ---- GPFS preallocation through a fake libgpfs --------------------------------------------------

FAKE_LIBGPFS = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
int gpfs_prealloc(int fd, long long start, long long bytes) {
    FILE *log = fopen(getenv("FAKE_GPFS_LOG"), "a");
    fprintf(log, "%d %lld %lld\n", fd, start, bytes);
    fclose(log);
    if (getenv("FAKE_GPFS_FAIL")) { errno = ENOSPC; return -1; }
    return 0;
}
"""


@pytest.fixture
def fake_libgpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A libgpfs.so whose gpfs_prealloc records its arguments; installed as gpfs's library."""
    source, lib, log = tmp_path / "fake_gpfs.c", tmp_path / "libgpfs.so", tmp_path / "gpfs.log"
    source.write_text(FAKE_LIBGPFS)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    monkeypatch.setenv("FAKE_GPFS_LOG", str(log))
    func = gpfs.load_libgpfs(str(lib))
    assert func is not None
    monkeypatch.setattr(gpfs, "_libgpfs", func)
    return log


def test_gpfs_prealloc_is_called_with_the_range(fake_libgpfs: Path, tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        assert gpfs.preallocate(fd, 4 * MiB, 5 * GiB + 1) == "gpfs_prealloc"
    finally:
        os.close(fd)
    assert fake_libgpfs.read_text() == f"{fd} {4 * MiB} {5 * GiB + 1}\n"


def test_gpfs_prealloc_failure_falls_back_to_fallocate(
    fake_libgpfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GPFS_FAIL", "1")
    with open(tmp_path / "f", "wb") as f:
        assert gpfs.preallocate(f.fileno(), 0, 3 * MiB) == "fallocate"
    assert (tmp_path / "f").stat().st_size == 3 * MiB
    assert fake_libgpfs.read_text().count("\n") == 1


def test_preallocate_without_libgpfs_uses_fallocate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpfs, "_libgpfs", None)
    with open(tmp_path / "f", "wb") as f:
        assert gpfs.preallocate(f.fileno(), 0, 2 * MiB) == "fallocate"
        assert os.fstat(f.fileno()).st_blocks * 512 >= 2 * MiB
    assert gpfs.load_libgpfs(str(tmp_path / "missing.so")) is None


def test_preallocate_reports_every_failure(fake_libgpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_GPFS_FAIL", "1")
    read, write = os.pipe()  # fallocate refuses a pipe
    try:
        with pytest.raises(OSError, match="gpfs_prealloc: No space left on device; fallocate: "):
            gpfs.preallocate(write, 0, 1 * MiB)
    finally:
        os.close(read)
        os.close(write)


# ---- create_new_file: the call the storage layer makes -----------------------------------------


def pretend(monkeypatch: pytest.MonkeyPatch, fs: FsInfo) -> None:
    """Make newfile see ``fs`` (statfs here can only ever say ext4, tmpfs, XFS...)."""
    monkeypatch.setattr(newfile, "fs_info", lambda directory: fs)


def test_create_new_file_on_a_local_filesystem_is_a_plain_exclusive_open(
    tmp_path: Path, fake_lfs: FakeLfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, TMPFS)
    fd = newfile.create_new_file(tmp_path / "obj", 5 * GiB)
    os.write(fd, b"abc")
    os.close(fd)
    assert (tmp_path / "obj").read_bytes() == b"abc"
    assert fake_lfs.calls() == []
    with pytest.raises(FileExistsError):
        newfile.create_new_file(tmp_path / "obj", None)


def test_create_new_file_on_lustre_sets_the_layout_first(
    tmp_path: Path, fake_lfs: FakeLfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, LUSTRE)
    fd = newfile.create_new_file(tmp_path / "big", 3 * GiB)
    os.write(fd, b"data")
    os.close(fd)
    assert (tmp_path / "big").read_bytes() == b"data"
    assert fake_lfs.calls() == [["setstripe", "-c", "3", "-S", "4M", str(tmp_path / "big")]]


def test_create_new_file_on_lustre_small_object_runs_no_lfs(
    tmp_path: Path, fake_lfs: FakeLfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, LUSTRE)
    os.close(newfile.create_new_file(tmp_path / "small", 4 * KiB))
    assert fake_lfs.calls() == []


def test_create_new_file_falls_back_when_lfs_fails(
    tmp_path: Path, fake_lfs: FakeLfs, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pretend(monkeypatch, LUSTRE)
    monkeypatch.setattr(newfile, "_warned", set())
    fake_lfs.answer(rc="1", stderr="Operation not permitted")  # it still leaves the file behind
    with caplog.at_level(logging.DEBUG, logger="aif_gateway.fsio"):
        for name in ("a", "b"):
            fd = newfile.create_new_file(tmp_path / name, None)
            os.write(fd, b"x")
            os.close(fd)
            assert (tmp_path / name).read_bytes() == b"x"
    assert len(fake_lfs.calls()) == 2
    levels = [r.levelno for r in caplog.records if "lfs setstripe failed" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG]  # one warning, not one per PUT


def test_create_new_file_reserves_nothing_before_a_byte_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, EXT4)  # fallocate KEEP_SIZE works on whatever filesystem tmp_path is
    fd = newfile.create_new_file(tmp_path / "big", 250 * MiB)
    try:
        assert newfile.space_reservation(tmp_path / "big", fd, 250 * MiB) is not None
        assert os.fstat(fd).st_blocks == 0  # a declared size alone reserves nothing
    finally:
        os.close(fd)


def test_ext4_reserves_large_objects_as_their_bytes_arrive_keeping_the_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, EXT4)
    big = newfile.create_new_file(tmp_path / "big", 250 * MiB)
    small = newfile.create_new_file(tmp_path / "small", 1 * MiB)
    try:
        assert newfile.space_reservation(tmp_path / "small", small, 1 * MiB) is None
        reservation = newfile.space_reservation(tmp_path / "big", big, 250 * MiB)
        assert reservation is not None
        os.write(big, b"x" * MiB)
        reservation.cover(MiB)  # 1 MiB in hand: at most as much again is reserved ahead
        assert MiB <= os.fstat(big).st_blocks * 512 <= 2 * MiB + 64 * KiB
        assert os.fstat(big).st_size == MiB  # a short body leaves a short file, not zeros
    finally:
        os.close(big)
        os.close(small)


def test_create_new_file_on_gpfs_reserves_in_windows(
    tmp_path: Path, fake_libgpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, GPFS_4M)
    fd = newfile.create_new_file(tmp_path / "big", 200 * MiB)
    try:
        reservation = newfile.space_reservation(tmp_path / "big", fd, 200 * MiB)
        assert reservation is not None
        for end in (4 * MiB, 8 * MiB, 24 * MiB, 150 * MiB, 200 * MiB):
            reservation.cover(end)
        assert newfile.space_reservation(tmp_path / "small", fd, 1 * MiB) is None
    finally:
        os.close(fd)
    calls = [[int(n) for n in line.split()[1:]] for line in fake_libgpfs.read_text().splitlines()]
    assert calls == [[0, 8 * MiB], [8 * MiB, 40 * MiB], [48 * MiB, 152 * MiB]]


def test_a_failed_preallocation_leaves_the_write_alone(
    tmp_path: Path, fake_libgpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, GPFS_4M)
    monkeypatch.setenv("FAKE_GPFS_FAIL", "1")
    monkeypatch.setattr(gpfs, "_fallocate", None)
    fd = newfile.create_new_file(tmp_path / "big", 64 * MiB)
    try:
        reservation = newfile.space_reservation(tmp_path / "big", fd, 64 * MiB)
        assert reservation is not None
        reservation.cover(MiB)  # ENOSYS from the missing fallocate: no reason to fail
        reservation.cover(40 * MiB)
    finally:
        os.close(fd)
    assert (tmp_path / "big").stat().st_size == 0
    assert fake_libgpfs.read_text().count("\n") == 1  # not tried again


# ---- wired into the store -----------------------------------------------------------------------


async def _body(data: bytes):
    yield data


@pytest.mark.parametrize(
    ("expected_size", "lfs_args"),
    [
        (3, [["setstripe", "-c", "1", "-S", "1M"]]),  # the directory's default is wide: narrow it
        (
            None,
            [
                [
                    "setstripe",
                    "-E",
                    "64M",
                    "-c",
                    "1",
                    "-S",
                    "1M",
                    "-E",
                    "8G",
                    "-c",
                    "4",
                    "-S",
                    "1M",
                    "-E",
                    "-1",
                    "-c",
                    "-1",
                    "-S",
                    "1M",
                ]
            ],
        ),
    ],
)
def test_receive_body_lays_out_the_temp_file_by_its_declared_size(
    tmp_path: Path,
    fake_lfs: FakeLfs,
    monkeypatch: pytest.MonkeyPatch,
    expected_size: int | None,
    lfs_args: list[list[str]],
) -> None:
    pretend(monkeypatch, LUSTRE_WIDE_DEFAULT)
    (tmp_path / "bucket").mkdir()
    bucket = bucket_paths(tmp_path, "bucket")
    temp = asyncio.run(publish.receive_body(bucket, _body(b"abc"), [], expected_size=expected_size))
    assert temp.path.read_bytes() == b"abc"
    assert [call[:-1] for call in fake_lfs.calls()] == lfs_args
    assert fake_lfs.calls()[0][-1] == str(temp.path)


def test_copy_to_temp_lays_out_the_copy_by_the_source_length(
    tmp_path: Path, fake_lfs: FakeLfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, LUSTRE_WIDE_DEFAULT)
    (tmp_path / "bucket").mkdir()
    (tmp_path / "src").write_bytes(b"0123456789")
    with open(tmp_path / "src", "rb") as src:
        temp = publish.copy_to_temp(bucket_paths(tmp_path, "bucket"), src.fileno(), 2, 5, None)
    assert temp.path.read_bytes() == b"23456"
    assert fake_lfs.calls() == [["setstripe", "-c", "1", "-S", "1M", str(temp.path)]]


def test_a_multipart_uploads_data_file_gets_the_unknown_size_layout(
    tmp_path: Path, fake_lfs: FakeLfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The object's size is unknown until Complete: the data file, made by CreateMultipartUpload
    # (the one creator, so the layout cannot race), widens as parts land further out.
    from aif_gateway.store.base import ObjectAttrs
    from aif_gateway.store.meta import meta_store_for
    from aif_gateway.store.multipart import MultipartUploads

    pretend(monkeypatch, LUSTRE)
    (tmp_path / "bucket").mkdir()
    bucket = bucket_paths(tmp_path, "bucket")
    upload_id = asyncio.run(MultipartUploads(bucket, meta_store_for(bucket)).create("big", ObjectAttrs()))
    data_file = state_dir(tmp_path, "bucket") / "uploads" / upload_id / "data"
    assert fake_lfs.calls() == [
        [
            "setstripe",
            "-E",
            "64M",
            "-c",
            "1",
            "-S",
            "1M",
            "-E",
            "8G",
            "-c",
            "4",
            "-S",
            "1M",
            "-E",
            "-1",
            "-c",
            "-1",
            "-S",
            "1M",
            str(data_file),
        ]
    ]
    assert data_file.stat().st_size == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_lfs_makes_the_file_as_the_user_the_thread_acts_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # The child gets the process's credentials unless told: the file must still be the user's.
    # A shell lfs in a directory any user reaches (pytest's temp tree and this interpreter may
    # not be).
    top = Path(tempfile.mkdtemp(prefix="aif-lfs-", dir="/tmp"))
    try:
        top.chmod(0o777)
        lfs = top / "lfs"
        lfs.write_text('#!/bin/sh\nfor last; do :; done\n: > "$last"\n')
        lfs.chmod(0o755)
        monkeypatch.setenv("PATH", f"{top}{os.pathsep}{os.environ['PATH']}")
        with acting_as(PosixIds(4101, 4102, (4103,))):
            lustre.create_with_layout(top / "obj", plain(2))
        st = (top / "obj").stat()
        assert (st.st_uid, st.st_gid) == (4101, 4102)
    finally:
        shutil.rmtree(top)
