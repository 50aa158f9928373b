"""The pure-Python version of the staging engine's batch copy of small local files
(``native/stagecopy.c``), reached through ``fsio.engine.copy_small_files``:
``copy_small_files(sources, dests, sizes, mtimes_ns)``.

For each file in order, until the first failure: read it whole (one byte more than listed, to
notice a grown file), check its size and mtime against the listing, take its xxh3-64, and write
it as a new file at its destination (O_EXCL: an older file or link there is unlinked first,
never written through; mode: the source's permission bits | 0600). Returns ``(xxh3s,
dest_mtimes_ns, failure)``: one item per file copied, and ``failure`` None or ``(index, errno,
step)`` with step one of ``STEPS``. The native version runs a whole batch without the GIL, so
batches on several threads copy in parallel (in Python, two threads copying small files are
slower than one: they spend their time handing the GIL over).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import xxhash

from .fullio import pwrite_all

__all__ = ["STEPS", "copy_small_files"]

STEPS = ("open_source", "read_source", "changed", "create_dest", "write_dest")
_MAX_SIZE = 1 << 30

Result = tuple[list[int], list[int], tuple[int, int, str] | None]


class _Failed(Exception):
    def __init__(self, code: int, step: str) -> None:
        self.code, self.step = code, step


def _copy_one(src: str, dst: str, size: int, mtime_ns: int, buffer: memoryview) -> tuple[int, int]:
    try:
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _Failed(exc.errno or 0, "open_source") from None
    try:
        want = size + 1
        n = 0
        while n < want:
            got = os.preadv(fd, [buffer[n:want]], n)
            if got == 0:
                break
            n += got
            if n == size:
                break
        st = os.fstat(fd)
    except OSError as exc:
        raise _Failed(exc.errno or 0, "read_source") from None
    finally:
        os.close(fd)
    if n != size or st.st_size != size or st.st_mtime_ns != mtime_ns:
        raise _Failed(0, "changed")
    data = buffer[:n]
    digest = xxhash.xxh3_64_intdigest(data)
    mode = (st.st_mode & 0o7777) | 0o600
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        try:
            out = os.open(dst, flags, mode)
        except FileExistsError:
            os.unlink(dst)
            out = os.open(dst, flags, mode)
    except OSError as exc:
        raise _Failed(exc.errno or 0, "create_dest") from None
    try:
        pwrite_all(out, data, 0)
        dest_mtime = os.fstat(out).st_mtime_ns
    except OSError as exc:
        os.close(out)
        try:
            os.unlink(dst)
        except OSError:
            pass
        raise _Failed(exc.errno or 0, "write_dest") from None
    os.close(out)
    return digest, dest_mtime


def copy_small_files(
    sources: Sequence[str], dests: Sequence[str], sizes: Sequence[int], mtimes_ns: Sequence[int]
) -> Result:
    if not len(sources) == len(dests) == len(sizes) == len(mtimes_ns):
        raise ValueError("sources, dests, sizes and mtimes_ns must have the same length")
    if any(not 0 <= size <= _MAX_SIZE for size in sizes):
        raise ValueError("sizes must be between 0 and 1 GiB")
    buffer = memoryview(bytearray(max(sizes, default=0) + 1))
    hashes: list[int] = []
    mtimes: list[int] = []
    for index, (src, dst, size, mtime_ns) in enumerate(zip(sources, dests, sizes, mtimes_ns)):
        try:
            digest, dest_mtime = _copy_one(src, dst, size, mtime_ns, buffer)
        except _Failed as failed:
            return hashes, mtimes, (index, failed.code, failed.step)
        hashes.append(digest)
        mtimes.append(dest_mtime)
    return hashes, mtimes, None
