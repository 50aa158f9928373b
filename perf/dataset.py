"""The data set, laid directly on disk once and served by all three servers.

Layout under the benchmark directory (each top-level directory is a bucket for the S3 servers and
a URL prefix for nginx):

    data/big/whole        one large object (1 GiB in the full run)
    data/big/shard-0..7   eight objects for the concurrent rows (256 MiB each)
    data/small-4k/dNN/kNNNNNN, data/small-64k/...   small objects, 100 per directory
    list/dNNN/fNNNN       the listing tree (100 x 1000 empty files)
    put-<server>/         empty buckets that receive each server's uploads, emptied after each phase
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
SHARDS = 8
# Random bytes repeated: incompressible for anything that might compress, cheap to lay out.
_BLOCK = os.urandom(16 * MiB)


@dataclass(frozen=True)
class Sizes:
    whole: int
    shard: int
    small_count: int
    s5cmd_small_count: int  # s5cmd's small rows run slower and give only a total: fewer suffice
    list_dirs: int
    list_files_per_dir: int
    mpu_part: int
    mpu_small_part: int
    mpu_parts: int
    repeats: int

    @property
    def list_keys(self) -> int:
        return self.list_dirs * self.list_files_per_dir


FULL = Sizes(
    whole=GiB,
    shard=256 * MiB,
    small_count=20_000,
    s5cmd_small_count=5_000,
    list_dirs=100,
    list_files_per_dir=1000,
    mpu_part=512 * MiB,
    mpu_small_part=8 * MiB,
    mpu_parts=8,
    repeats=3,
)
QUICK = Sizes(
    whole=128 * MiB,
    shard=32 * MiB,
    small_count=2_000,
    s5cmd_small_count=1_000,
    list_dirs=20,
    list_files_per_dir=500,
    mpu_part=32 * MiB,
    mpu_small_part=8 * MiB,
    mpu_parts=8,
    repeats=1,
)
SMALL_SIZES = {"4 KiB": 4096, "64 KiB": 65536}


def pattern(size: int) -> bytes:
    """``size`` bytes of the repeated random block, for bodies a client sends from memory."""
    return (_BLOCK * (size // len(_BLOCK) + 1))[:size]


def write_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = min(left, len(_BLOCK))
            out.write(memoryview(_BLOCK)[:chunk])
            left -= chunk


def small_key(label: str, index: int) -> str:
    return f"small-{label.split()[0]}k/d{index % 100:02d}/k{index:06d}"


def lay_out(root: Path, sizes: Sizes, put_buckets: list[str]) -> None:
    data = root / "data"
    write_file(data / "big" / "whole", sizes.whole)
    for shard in range(SHARDS):
        write_file(data / "big" / f"shard-{shard}", sizes.shard)
    for label, size in SMALL_SIZES.items():
        body = _BLOCK[:size]
        for index in range(sizes.small_count):
            path = data / small_key(label, index)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
    for d in range(sizes.list_dirs):
        directory = root / "list" / f"d{d:03d}"
        directory.mkdir(parents=True)
        for f in range(sizes.list_files_per_dir):
            (directory / f"f{f:04d}").touch()
    for bucket in put_buckets:
        (root / bucket).mkdir()


def empty_bucket(root: Path, bucket: str) -> None:
    """Drop what a phase uploaded (memory is the limit on tmpfs); the gateway's hidden state stays."""
    for entry in (root / bucket).iterdir():
        if entry.name == ".aifgw":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
