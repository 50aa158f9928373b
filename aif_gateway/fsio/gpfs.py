"""Reserve a new file's blocks before writing it: GPFS's own call (IBM Storage Scale), and
fallocate(2), which is GPFS's fallback and what ext4 gets.

``gpfs_prealloc`` is GPFS's own call, present in every installation's libgpfs.so. Where that
library is missing (a client without the GPFS development files) ``fallocate(2)`` does the same
on GPFS 5 and later. It is the plain mode: the file has its final size at once, which is
harmless because a body that ends short is discarded (IncompleteBody). ``posix_fallocate`` is
not used: where the filesystem refuses fallocate, glibc would emulate it by writing every block.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable

__all__ = ["fallocate", "load_libgpfs", "preallocate", "reserve_keeping_size"]

_PreallocFn = Callable[[int, int, int], int]


def load_libgpfs(path: str | None = None) -> _PreallocFn | None:
    """The ``gpfs_prealloc`` function of libgpfs (``path``, else the library the linker finds),
    or None where it is missing."""
    name = path or ctypes.util.find_library("gpfs")
    if not name:
        return None
    try:
        func = ctypes.CDLL(name, use_errno=True).gpfs_prealloc
    except (OSError, AttributeError):
        return None
    # int gpfs_prealloc(gpfs_file_t fileDesc, gpfs_off64_t startOffset, gpfs_off64_t bytesToPrealloc)
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    func.restype = ctypes.c_int
    return func


def _load_fallocate() -> Callable[[int, int, int, int], int] | None:
    try:
        func = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    # int fallocate(int fd, int mode, off_t offset, off_t len)
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    func.restype = ctypes.c_int
    return func


_libgpfs = load_libgpfs()
_fallocate = _load_fallocate()
FALLOC_FL_KEEP_SIZE = 0x01


def fallocate(fd: int, offset: int, length: int, *, keep_size: bool = False) -> None:
    """fallocate(2): reserve blocks without writing them; ``keep_size`` leaves the file's size
    alone (the blocks sit past EOF until written). Raises OSError where refused."""
    if _fallocate is None:
        raise OSError(errno.ENOSYS, "fallocate is not callable through ctypes here")
    if _fallocate(fd, FALLOC_FL_KEEP_SIZE if keep_size else 0, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def reserve_keeping_size(fd: int, offset: int, length: int) -> None:
    """fallocate(2) with KEEP_SIZE: the file grows only with the bytes written, as without it
    (what ext4 and multipart part ranges get)."""
    fallocate(fd, offset, length, keep_size=True)


def preallocate(fd: int, offset: int, length: int) -> str:
    """Reserve ``length`` bytes from ``offset`` and say how ("gpfs_prealloc" or "fallocate");
    OSError when neither could. Called window by window as a body arrives
    (``reserve.Reservation``), never for a declared length at once."""
    failures: list[str] = []
    errnos: list[int] = []
    if _libgpfs is not None:
        if _libgpfs(fd, offset, length) == 0:
            return "gpfs_prealloc"
        errnos.append(ctypes.get_errno())
        failures.append(f"gpfs_prealloc: {os.strerror(errnos[-1])}")
    try:
        fallocate(fd, offset, length)
        return "fallocate"
    except OSError as exc:
        errnos.append(exc.errno or 0)
        failures.append(f"fallocate: {exc.strerror}")
    # The last call's errno: a full disk (ENOSPC, EDQUOT) is then told apart from "unsupported".
    raise OSError(errnos[-1], "; ".join(failures))
