"""The pure-Python version of ``native/posixcreds.c``: per-thread credentials and opens beneath a
directory, with the same rules and errors (``aif_gateway/_native.pyi`` states them).

Credentials: raw syscalls through ``ctypes`` (``setgroups`` in glibc, and ``os.setgroups`` on it,
change every thread of the process; the raw syscall changes only the calling thread). ctypes
releases the GIL around a foreign call, but the call still runs on the calling OS thread.

``open_beneath``: ``openat2`` (syscall 437) through ``ctypes`` where the kernel has it and
``AIF_OPENAT2`` is not ``0`` (read at each call), else the ``O_NOFOLLOW`` walk, which refuses
every symlink.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import operator
import os
import platform
import stat
from collections.abc import Iterable, Sequence

__all__ = [
    "RESOLVE_BENEATH",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "RESOLVE_NO_XDEV",
    "open_beneath",
    "open_beneath_mode",
    "restore_thread_creds",
    "set_thread_creds",
    "thread_creds",
]

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE_KNOWN = RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH

# (setfsuid, setfsgid, setgroups, getgroups): the 32-bit-id calls on both (x86_64 numbers its
# own; aarch64 uses the generic table of asm-generic/unistd.h).
_SYSCALLS = {"x86_64": (122, 123, 116, 115), "aarch64": (151, 152, 159, 158)}
_THIS_MACHINE = platform.machine()
_SYS_OPENAT2 = 437  # the same on every architecture but alpha
_MAX_ID = 0xFFFF_FFFE  # (uid_t)-1 means "no change" to the kernel
_NO_CHANGE = ctypes.c_long(-1)

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _numbers() -> tuple[int, int, int, int]:
    numbers = _SYSCALLS.get(_THIS_MACHINE)
    if numbers is None:
        raise OSError(errno.ENOSYS, f"no syscall numbers for {_THIS_MACHINE} in the Python engine")
    return numbers


def _call(number: int, count: int, groups: ctypes.c_void_p | ctypes.Array[ctypes.c_uint]) -> int:
    """setgroups or getgroups; OSError on -1."""
    result: int = _syscall(ctypes.c_long(number), ctypes.c_long(count), groups)
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _read_groups() -> tuple[int, ...]:
    getgroups = _numbers()[3]
    count = _call(getgroups, 0, ctypes.c_void_p())
    buffer = (ctypes.c_uint * max(count, 1))()
    count = _call(getgroups, count, buffer)
    return tuple(buffer[:count])


# What restore_thread_creds puts back: the process's groups when this module is imported.
_process_groups = _read_groups() if _THIS_MACHINE in _SYSCALLS else ()


def _set_groups(groups: Sequence[int]) -> None:
    """Without CAP_SETGID setgroups fails even when nothing would change: that is a success."""
    buffer = (ctypes.c_uint * max(len(groups), 1))(*groups)
    try:
        _call(_numbers()[2], len(groups), buffer)
    except PermissionError:
        if sorted(_read_groups()) != sorted(groups):
            raise


def _set_fs_id(number: int, wanted: int) -> None:
    """setfsuid/setfsgid return the previous id, success or not: read back the one in force."""
    _syscall(ctypes.c_long(number), ctypes.c_long(wanted))
    if _syscall(ctypes.c_long(number), _NO_CHANGE) & 0xFFFF_FFFF != wanted:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))


def _switch(uid: int, gid: int, groups: Sequence[int]) -> None:
    setfsuid, setfsgid, _, _ = _numbers()
    _set_groups(groups)
    _set_fs_id(setfsgid, gid)
    _set_fs_id(setfsuid, uid)


def _check_id(value: int, what: str) -> int:
    value = operator.index(value)
    if not 0 <= value <= _MAX_ID:
        raise ValueError(f"{what} must be between 0 and {_MAX_ID}")
    return value


def set_thread_creds(uid: int, gid: int, groups: Iterable[int], /) -> None:
    uid, gid = _check_id(uid, "uid"), _check_id(gid, "gid")
    try:
        items = list(groups)
    except TypeError:
        raise TypeError("groups must be a sequence of ints") from None
    wanted = [_check_id(g, "group") for g in items]
    try:
        _switch(uid, gid, wanted)
    except OSError as exc:
        # Never leave a thread half switched (one user's groups with another's fsuid).
        with contextlib.suppress(OSError):
            _restore()
        message = f"cannot switch this thread to uid {uid}, gid {gid} and {len(wanted)} groups: {exc.strerror}"
        raise OSError(exc.errno, message) from None


def _restore() -> None:
    _switch(os.geteuid(), os.getegid(), _process_groups)


def restore_thread_creds() -> None:
    try:
        _restore()
    except OSError as exc:
        raise OSError(exc.errno, f"cannot restore this thread's credentials: {exc.strerror}") from None


def thread_creds() -> tuple[int, int, tuple[int, ...]]:
    setfsuid, setfsgid, _, _ = _numbers()
    fsuid = _syscall(ctypes.c_long(setfsuid), _NO_CHANGE) & 0xFFFF_FFFF
    fsgid = _syscall(ctypes.c_long(setfsgid), _NO_CHANGE) & 0xFFFF_FFFF
    return fsuid, fsgid, _read_groups()


# ------------------------------------------------------------------------------------------------
# open_beneath


def _probe_openat2() -> bool:
    how = _OpenHow(os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, 0)
    fd = _syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_long(-100), b"/", ctypes.byref(how), ctypes.c_long(24))
    if fd < 0:
        return False  # ENOSYS, or a seccomp filter's EPERM/E2BIG: walk
    os.close(fd)
    return True


_kernel_has_openat2 = _probe_openat2()


def _openat2_in_use() -> bool:
    return _kernel_has_openat2 and os.environ.get("AIF_OPENAT2") != "0"


def open_beneath_mode() -> str:
    """engine_info's "openat2": "yes", or "walk" (the kernel lacks openat2, or AIF_OPENAT2=0)."""
    return "yes" if _openat2_in_use() else "walk"


def _creates(flags: int) -> bool:
    return bool(flags & os.O_CREAT) or flags & os.O_TMPFILE == os.O_TMPFILE


def _open_with_openat2(dir_fd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
    """An fd, or -errno."""
    how = _OpenHow((flags | os.O_CLOEXEC) & 0xFFFF_FFFF, mode if _creates(flags) else 0, resolve)
    fd: int = _syscall(
        ctypes.c_long(_SYS_OPENAT2), ctypes.c_long(dir_fd), path, ctypes.byref(how), ctypes.c_long(ctypes.sizeof(how))
    )
    return -ctypes.get_errno() if fd < 0 else fd


def _is_symlink_at(dir_fd: int, name: bytes) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _device(fd: int) -> int:
    return os.fstat(fd).st_dev


def _walk(dir_fd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
    """The O_NOFOLLOW walk of posixcreds.c; an fd, or OSError without a filename."""
    if not path:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
    names = [name for name in path.split(b"/") if name not in (b"", b".")]
    if path.startswith(b"/"):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
    for name in names:  # refused before anything is opened
        if name == b"..":
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        if len(name) > 255:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
    device = os.stat(b".", dir_fd=dir_fd).st_dev if resolve & RESOLVE_NO_XDEV else None
    # "x/" and "x/." name a directory, as the kernel reads them.
    names_directory = path.rsplit(b"/", 1)[-1] in (b"", b".")
    last_flags = flags | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if names_directory else 0)
    *directories, last = names or [b"."]
    current = dir_fd
    try:
        for name in directories:
            try:
                opened = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink_at(current, name):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
                raise
            if current != dir_fd:
                os.close(current)
            current = opened
            if device is not None and _device(current) != device:
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        try:
            fd = os.open(last, last_flags, mode, dir_fd=current)
        except NotADirectoryError:
            if _is_symlink_at(current, last):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
            raise
        try:
            # O_PATH|O_NOFOLLOW opens a symlink itself, which the caller did not ask for.
            if flags & (os.O_PATH | os.O_NOFOLLOW) == os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
            if device is not None and _device(fd) != device:
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        except OSError:
            os.close(fd)
            raise
        return fd
    finally:
        if current != dir_fd:
            os.close(current)


def open_beneath(
    dir_fd: int,
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    flags: int,
    mode: int = 0o666,
    resolve: int = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
) -> int:
    global _kernel_has_openat2
    if not 0 <= mode <= 0o7777:
        raise ValueError("mode must be between 0 and 0o7777")
    if resolve & ~_RESOLVE_KNOWN:
        raise ValueError(
            "resolve takes RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, RESOLVE_NO_MAGICLINKS and RESOLVE_NO_XDEV only"
        )
    encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise ValueError("embedded null byte")
    if _openat2_in_use():
        fd = _open_with_openat2(dir_fd, encoded, flags, mode, resolve)
        if fd != -errno.ENOSYS:
            if fd < 0:
                raise OSError(-fd, os.strerror(-fd), path)
            return fd
        _kernel_has_openat2 = False
    try:
        return _walk(dir_fd, encoded, flags, mode, resolve)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
