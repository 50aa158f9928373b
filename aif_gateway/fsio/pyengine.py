"""The pure-Python version of ``aif_gateway._native``: same functions, same signatures, same results.

It runs where the C extension did not build, under ``AIF_ENGINE=python``, and in the tests as the
reference the native engine is compared with byte for byte. Everything here is built from the
standard library, ``awscrt`` (CRC32C, CRC64NVME) and ``xxhash`` (XXH3_64).

The contract both engines keep, each function with its docstring, is ``aif_gateway/_native.pyi``;
the parts with code of their own come from the Python modules ``pychunked``, ``pylisting``,
``pysmallcopy`` and ``pyposixcreds``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import select
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import xxhash
from awscrt import checksums as crt

from . import pychunked, pylisting, pyposixcreds, pysmallcopy
from .fullio import pread_full, pwrite_all

__all__ = ["Hasher", "engine_info", "pread_striped"]

# aws-chunked decoding is part of this engine's API; its code lives in its own module.
ChunkedDecoder = pychunked.ChunkedDecoder
ChunkedError = pychunked.ChunkedError
# So is the listing's batch stat (pylisting).
stat_entries = pylisting.stat_entries
# So is the staging engine's batch copy of small files (pysmallcopy).
copy_small_files = pysmallcopy.copy_small_files
# So are per-thread credentials and opens beneath a directory (pyposixcreds).
set_thread_creds = pyposixcreds.set_thread_creds
restore_thread_creds = pyposixcreds.restore_thread_creds
thread_creds = pyposixcreds.thread_creds
open_beneath = pyposixcreds.open_beneath
RESOLVE_BENEATH = pyposixcreds.RESOLVE_BENEATH
RESOLVE_NO_SYMLINKS = pyposixcreds.RESOLVE_NO_SYMLINKS
RESOLVE_NO_MAGICLINKS = pyposixcreds.RESOLVE_NO_MAGICLINKS
RESOLVE_NO_XDEV = pyposixcreds.RESOLVE_NO_XDEV

# What the buffer protocol accepts here (collections.abc.Buffer arrives with Python 3.12).
Buffer = bytes | bytearray | memoryview

_DIGEST_SIZES = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8}
_HASHLIB_NAMES = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256"}
# (data, previous crc) -> crc
_CRC_UPDATE: dict[str, Callable[[Buffer, int], int]] = {
    "CRC32": zlib.crc32,
    "CRC32C": crt.crc32c,
    "CRC64NVME": crt.crc64nvme,
}
_ALGORITHMS = {*_HASHLIB_NAMES, *_CRC_UPDATE, "XXH3_64"}

_FICLONE = 0x40049409  # _IOW(0x94, 9, int) from linux/fs.h
# FICLONE answers these where the filesystem (or the pair of files) cannot share extents.
_NO_REFLINK_ERRNOS = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS}
# copy_file_range cannot serve this pair of files (another filesystem, an old kernel, a special
# file, an O_APPEND target): copy through the process instead.
_KERNEL_COPY_UNSUPPORTED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}
_COPY_BUFFER = 1 << 20
_MAX_STRIPE_THREADS = 64


class Hasher:
    """Feeds every buffer to MD5 (unless ``md5=False``) plus the requested algorithms in one pass."""

    def __init__(self, algorithms: Iterable[str], *, md5: bool = True) -> None:
        wanted = {"MD5"} if md5 else set()
        for name in algorithms:
            if name not in _ALGORITHMS:
                raise ValueError(f"unknown checksum algorithm {name!r}")
            wanted.add(name)
        self._hashes = {name: hashlib.new(_HASHLIB_NAMES[name]) for name in wanted if name in _HASHLIB_NAMES}
        self._crcs = {name: 0 for name in wanted if name in _CRC_UPDATE}
        self._xxh3 = xxhash.xxh3_64() if "XXH3_64" in wanted else None

    def update(self, data: Buffer) -> None:
        for h in self._hashes.values():
            h.update(data)
        for name, value in self._crcs.items():
            self._crcs[name] = _CRC_UPDATE[name](data, value)
        if self._xxh3 is not None:
            self._xxh3.update(data)

    def digests(self) -> dict[str, bytes]:
        out = {name: h.digest() for name, h in self._hashes.items()}
        for name, value in self._crcs.items():
            out[name] = value.to_bytes(_DIGEST_SIZES[name], "big")
        if self._xxh3 is not None:
            out["XXH3_64"] = self._xxh3.digest()
        return out


def _check_offset(offset: int) -> None:
    if offset < 0:
        raise ValueError("offset must be >= 0")


def write_hashed(fd: int, buffer: Buffer, offset: int, hasher: Hasher) -> int:
    """pwrite all of ``buffer`` at ``offset``, feeding it to ``hasher``; the byte count.

    On an error the hasher may have seen bytes that are not on disk: discard both.
    """
    _check_offset(offset)
    data = memoryview(buffer).cast("B")
    hasher.update(data)
    pwrite_all(fd, data, offset)
    return len(data)


_RECV_BUFFER = 1 << 20
_RECV_POLL_SLICE_MS = 500


def recv_hashed(
    sock_fd: int,
    file_fd: int,
    offset: int,
    count: int,
    hasher: Hasher,
    stall_timeout_ms: int,
    decoder: ChunkedDecoder | None = None,
) -> int:
    """Reads exactly ``count`` bytes from a non-blocking socket and writes them (with a
    ``decoder``, the aws-chunked data they decode to) at ``offset``, hashing what it writes;
    returns the bytes written. ``ConnectionResetError`` when the peer closes first,
    ``TimeoutError`` after ``stall_timeout_ms`` without a byte, the decoder's ``ChunkedError``
    for a refused body. The socket's flags are left as they are."""
    _check_offset(offset)
    if count < 0 or stall_timeout_ms <= 0:
        raise ValueError("count must be >= 0 and stall_timeout_ms > 0")
    done = written = 0
    poller: select.poll | None = None
    while done < count:
        try:
            data = os.read(sock_fd, min(count - done, _RECV_BUFFER))  # read(2) on a socket is recv(2)
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(sock_fd, select.POLLIN)
            _wait_readable(poller, stall_timeout_ms)
            continue
        if not data:
            raise ConnectionResetError(f"the client closed the connection after {done} of {count} body bytes")
        done += len(data)
        piece: Buffer = data
        if decoder is not None:
            buffer = bytearray(data)
            piece = memoryview(buffer)[: decoder.decode(buffer)]
        written += write_hashed(file_fd, piece, offset + written, hasher)
    return written


def _wait_readable(poller: select.poll, stall_timeout_ms: int) -> None:
    waited = 0
    while not poller.poll(_RECV_POLL_SLICE_MS):
        waited += _RECV_POLL_SLICE_MS
        if waited >= stall_timeout_ms:
            raise TimeoutError(f"the client sent nothing for {stall_timeout_ms} ms")


def _pieces(offset: int, length: int, stripe_size: int) -> list[tuple[int, int]]:
    """(start within the buffer, length) of each stripe-aligned slice of [offset, offset+length)."""
    pieces = []
    start = 0
    while start < length:
        end = min(length, start + stripe_size - (offset + start) % stripe_size)
        pieces.append((start, end - start))
        start = end
    return pieces


def _striped(fd: int, view: memoryview, offset: int, stripe_size: int, threads: int, writing: bool) -> int:
    _check_offset(offset)
    if stripe_size <= 0 or threads <= 0:
        raise ValueError("stripe_size and threads must be > 0")
    pieces = _pieces(offset, len(view), stripe_size)

    def transfer(piece: tuple[int, int]) -> int:
        start, length = piece
        part = view[start : start + length]
        if writing:
            pwrite_all(fd, part, offset + start)
            return length
        return pread_full(fd, part, offset + start)

    workers = min(threads, _MAX_STRIPE_THREADS, len(pieces))
    if workers <= 1:
        counts = [transfer(piece) for piece in pieces]
    else:
        with ThreadPoolExecutor(workers) as pool:
            counts = list(pool.map(transfer, pieces))
    for (start, length), count in zip(pieces, counts):
        if count < length:
            return start + count  # the end of the file
    return len(view)


def pwrite_striped(fd: int, buffer: Buffer, offset: int, stripe_size: int, threads: int) -> int:
    """pwrite ``buffer`` at ``offset`` as stripe-aligned pieces, ``threads`` at a time; the byte count."""
    return _striped(fd, memoryview(buffer).cast("B"), offset, stripe_size, threads, writing=True)


def pread_striped(fd: int, buffer: Buffer, offset: int, stripe_size: int, threads: int) -> int:
    """Fill ``buffer`` from ``offset`` as stripe-aligned pieces; the bytes read before the end of file."""
    view = memoryview(buffer).cast("B")
    if view.readonly:
        raise TypeError("pread_striped needs a writable buffer")
    return _striped(fd, view, offset, stripe_size, threads, writing=False)


def copy_range(src_fd: int, dst_fd: int, src_offset: int, dst_offset: int, length: int) -> int:
    """Copy ``length`` bytes (fewer at the source's end); the kernel copies where it can."""
    for value in (src_offset, dst_offset, length):
        _check_offset(value)
    copied = 0
    while copied < length:
        try:
            n = os.copy_file_range(src_fd, dst_fd, length - copied, src_offset + copied, dst_offset + copied)
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno not in _KERNEL_COPY_UNSUPPORTED:
                raise
            break
        if n == 0:
            break  # the end of the source, or a filesystem that copies nothing: pread decides
        copied += n
    while copied < length:
        data = os.pread(src_fd, min(_COPY_BUFFER, length - copied), src_offset + copied)
        if not data:
            break
        pwrite_all(dst_fd, memoryview(data), dst_offset + copied)
        copied += len(data)
    return copied


def reflink(src_fd: int, dst_fd: int) -> bool:
    """Make ``dst_fd`` share ``src_fd``'s extents (FICLONE); False where that is unsupported."""
    try:
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _NO_REFLINK_ERRNOS:
            return False
        raise
    return True


def fallocate(fd: int, offset: int, length: int) -> None:
    os.posix_fallocate(fd, offset, length)


def aligned_buffer(size: int, alignment: int = 4096) -> memoryview:
    """Zeroed, writable memory whose address is a multiple of ``alignment`` (for O_DIRECT)."""
    if size < 0 or alignment < 8 or alignment & (alignment - 1):
        raise ValueError("size must be >= 0 and alignment a power of two >= 8")
    backing = bytearray(size + alignment)
    address = ctypes.addressof(ctypes.c_char.from_buffer(backing))
    # The memoryview keeps the bytearray exported, so it can neither be resized nor moved.
    start = -address % alignment
    return memoryview(backing)[start : start + size]


def engine_info() -> dict[str, str]:
    return {
        "engine": "python",
        "crc32c": "awscrt",
        "crc64nvme": "awscrt",
        "crc32": "zlib " + zlib.ZLIB_RUNTIME_VERSION,
        "md5": "hashlib",
        "xxh3": "xxhash " + xxhash.VERSION,
        "openat2": pyposixcreds.open_beneath_mode(),
    }
