"""Which filesystem a directory lives on, and the facts about it that decide how to write there.

statfs is the fast path because it is one syscall on the directory itself and names the
filesystem as the kernel's superblock knows it. mountinfo is the fallback where libc's ``statfs``
cannot be called (another C library, an architecture whose struct we do not lay out).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import lustre

__all__ = ["FsInfo", "MAGIC_KINDS", "detect", "fs_info", "kind_by_mountinfo", "kind_by_statfs"]

# statfs(2) f_type values (linux/magic.h, plus the two parallel filesystems' own).
MAGIC_KINDS = {
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",  # "GPFS"
    0x58465342: "xfs",  # "XFSB"
    0xEF53: "ext4",  # ext2, ext3 and ext4 share it
    0x01021994: "tmpfs",
    0x6969: "nfs",
    0x9123683E: "btrfs",
    0x794C7630: "overlay",
    0x2FC12FC1: "zfs",
    0xFF534D42: "cifs",
    0x65735546: "fuse",
}
# mountinfo's filesystem type names for the same kinds.
MOUNT_KINDS = {
    "lustre": "lustre",
    "gpfs": "gpfs",
    "xfs": "xfs",
    "ext2": "ext4",
    "ext3": "ext4",
    "ext4": "ext4",
    "tmpfs": "tmpfs",
    "nfs": "nfs",
    "nfs4": "nfs",
    "btrfs": "btrfs",
    "overlay": "overlay",
    "zfs": "zfs",
    "cifs": "cifs",
    "smb3": "cifs",
}
# Filesystems that can share extents between files (FICLONE); others are never probed.
_REFLINK_CANDIDATES = {"xfs", "btrfs"}
_FICLONE = 0x40049409  # _IOW(0x94, 9, int)


@dataclass(frozen=True)
class FsInfo:
    """What ``detect`` found about a directory's filesystem.

    ``kind``: a value of ``MAGIC_KINDS``, or "other". ``stripe_size`` / ``stripe_count`` /
    ``ost_count``: on Lustre, the directory's default layout and the OSTs; None elsewhere or when
    ``lfs`` cannot say. ``magic``: statfs ``f_type``, or None when found through mountinfo.
    ``source``: "statfs" or "mountinfo".
    """

    kind: str
    block_size: int
    stripe_size: int | None = None
    stripe_count: int | None = None
    ost_count: int | None = None
    supports_reflink: bool = False
    magic: int | None = None
    source: str = "statfs"

    @property
    def parallel(self) -> bool:
        """Lustre or GPFS: the filesystems whose layout the gateway chooses."""
        return self.kind in ("lustre", "gpfs")

    def summary(self) -> dict[str, object]:
        """What a start log line shows: kind and block size, then whatever else is known."""
        fields: dict[str, object] = {"kind": self.kind, "block_size": self.block_size}
        for name in ("stripe_size", "stripe_count", "ost_count"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        if self.supports_reflink:
            fields["reflink"] = True
        return fields


class _StatFs(ctypes.Structure):
    # struct statfs on 64-bit Linux (glibc and musl, x86_64 and aarch64): every field is a
    # long-sized word except f_fsid (two ints).
    _fields_ = [
        ("f_type", ctypes.c_long),
        ("f_bsize", ctypes.c_long),
        ("f_blocks", ctypes.c_ulong),
        ("f_bfree", ctypes.c_ulong),
        ("f_bavail", ctypes.c_ulong),
        ("f_files", ctypes.c_ulong),
        ("f_ffree", ctypes.c_ulong),
        ("f_fsid", ctypes.c_int * 2),
        ("f_namelen", ctypes.c_long),
        ("f_frsize", ctypes.c_long),
        ("f_flags", ctypes.c_long),
        ("f_spare", ctypes.c_long * 4),
    ]


def _load_statfs() -> Callable[[bytes, Any], int] | None:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.statfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_char_p, ctypes.POINTER(_StatFs)]
    func.restype = ctypes.c_int
    return func


_statfs = _load_statfs()


def kind_by_statfs(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    """``(kind, f_bsize, f_type)`` of the filesystem holding ``path``; OSError on failure.

    The fast detector: statfs(2) magic numbers, through libc. ``kind_by_mountinfo`` is its slow
    fallback; tests compare them.
    """
    if _statfs is None:
        raise OSError(errno.ENOSYS, "statfs is not callable through ctypes on this platform")
    buf = _StatFs()
    if _statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    magic = buf.f_type & 0xFFFFFFFF
    return MAGIC_KINDS.get(magic, "other"), buf.f_bsize, magic


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as octal escapes (\040...).
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")


def kind_by_mountinfo(path: str | os.PathLike[str], mountinfo: str = "/proc/self/mountinfo") -> tuple[str, int]:
    """``(kind, block_size)`` from the mount covering ``path`` (the longest matching mount
    point; the last one listed wins where mounts stack): the Python fallback of ``kind_by_statfs``."""
    real = os.path.realpath(path)
    best_point, best_type = "", "other"
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) < 5 or not right:
                continue
            point = _unescape(fields[4])
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best_point):
                best_point, best_type = point, right.split()[0]
    return MOUNT_KINDS.get(best_type, "other"), os.statvfs(path).f_bsize


def detect(directory: str | os.PathLike[str]) -> FsInfo:
    """What ``directory``'s filesystem is and how it is laid out (blocking, uncached)."""
    try:
        kind, block_size, magic = kind_by_statfs(directory)
        source = "statfs"
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
        (kind, block_size), magic, source = kind_by_mountinfo(directory), None, "mountinfo"
    stripe = lustre.default_layout(directory) if kind == "lustre" else None
    if kind == "gpfs":
        # GPFS reports its (large, often 4-16 MiB) block size as both f_bsize and st_blksize;
        # take the larger in case one of them is the 4 KiB subblock-era value.
        block_size = max(block_size, os.stat(directory).st_blksize)
    return FsInfo(
        kind=kind,
        block_size=block_size,
        stripe_size=stripe.stripe_size if stripe else None,
        stripe_count=stripe.stripe_count if stripe else None,
        ost_count=stripe.ost_count if stripe else None,
        supports_reflink=kind in _REFLINK_CANDIDATES and _probe_reflink(directory),
        magic=magic,
        source=source,
    )


def _probe_reflink(directory: str | os.PathLike[str]) -> bool:
    """Whether FICLONE works in ``directory`` (XFS made without reflink=1 refuses it).

    Two unnamed O_TMPFILE files, so nothing ever appears in the directory.
    """
    import fcntl  # Linux-only; imported where it is used

    fds: list[int] = []
    try:
        for _ in range(2):
            fds.append(os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600))
        os.write(fds[0], b"\0" * 4096)
        fcntl.ioctl(fds[1], _FICLONE, fds[0])
        return True
    except OSError:
        return False
    finally:
        for fd in fds:
            os.close(fd)


_cache: dict[tuple[int, int], FsInfo] = {}
_cache_lock = threading.Lock()


def fs_info(directory: str | os.PathLike[str]) -> FsInfo:
    """``detect(directory)``, remembered per directory (by ``st_dev`` and ``st_ino``); blocking.

    Per directory, not per filesystem: on Lustre each directory may carry its own default
    layout. The cost after the first call is one stat.
    """
    st = os.stat(directory)
    key = (st.st_dev, st.st_ino)
    info = _cache.get(key)
    if info is None:
        info = detect(directory)
        with _cache_lock:
            info = _cache.setdefault(key, info)
    return info
