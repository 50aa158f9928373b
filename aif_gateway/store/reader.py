"""Reading objects: what a key is (HEAD), and an open file plus the metadata read through it (GET).

Because the descriptor stays open, a GET that started before an overwrite or delete keeps
reading the version it opened (publish replaces the name, never the bytes of an open file).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import S3Error
from ..fsio.zerocopy import send_file_in_thread
from .base import ObjectInfo
from .meta import MetaStore, info_for
from .paths import BucketPaths, is_dir_key, open_checked

__all__ = ["FileReader", "PREFETCH_MAX", "meta_key", "object_info", "open_object"]

DEFAULT_CHUNK = 1 << 20
# Bodies up to this size are read in the same worker-thread call that opens the object, so a
# small GET costs one thread hop instead of two (the hop, not the read, dominates there). It
# matches the size below which GETs are copied rather than sent with sendfile
# (``s3/transport.py``'s SENDFILE_MIN_BYTES).
PREFETCH_MAX = 64 * 1024


def no_such_key(key: str) -> S3Error:
    """The NoSuchKey error for ``key``, for the caller to raise."""
    return S3Error("NoSuchKey", resource=key, extra={"Key": key})


def meta_key(bucket: BucketPaths, key: str, path: Path) -> str:
    """The key metadata is filed under.

    Sidecars are keyed by the resolved path, so a key reached through a symlink shares them.
    """
    return bucket.key_of(path) + ("/" if is_dir_key(key) else "")


def object_info(bucket: BucketPaths, meta: MetaStore, key: str, path: Path, fd: int | None = None) -> ObjectInfo:
    """The object at ``path`` (``bucket.resolve(key)``), read through ``fd`` when given (blocking);
    NoSuchKey when there is none (a missing file, a directory without a marker record, a FIFO...)."""
    try:
        st = os.fstat(fd) if fd is not None else os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise no_such_key(key) from None
    target = fd if fd is not None else path
    mkey = meta_key(bucket, key, path)
    if is_dir_key(key):
        record = meta.read(target, mkey) if stat.S_ISDIR(st.st_mode) else None
        if record is None or not record.dir_marker:
            raise no_such_key(key)
        return record.info(key, len(meta.read_tags(target, mkey)))
    if not stat.S_ISREG(st.st_mode):
        raise no_such_key(key)
    return info_for(key, st, meta.read(target, mkey), len(meta.read_tags(target, mkey)))


def open_object(bucket: BucketPaths, meta: MetaStore, key: str) -> FileReader:
    """Open the object (never leaving the bucket) and read its info through the descriptor
    (blocking)."""
    path = bucket.resolve(key)
    flags = os.O_RDONLY | os.O_NONBLOCK  # O_NONBLOCK: a FIFO in the tree must not hang us
    try:
        fd = open_checked(str(bucket.dir), str(path), flags)
    except (FileNotFoundError, NotADirectoryError):
        raise no_such_key(key) from None
    try:
        reader = FileReader(fd, object_info(bucket, meta, key, path, fd))
        if 0 < reader.info.size <= PREFETCH_MAX:
            data = os.pread(fd, reader.info.size, 0)
            # Shorter: truncated since the fstat; chunks() then reads and reports it.
            if len(data) == reader.info.size:
                reader.prefetched = data
        return reader
    except BaseException:
        os.close(fd)
        raise


class FileReader:
    """An open object: ``base.ObjectReader`` over its descriptor, with ``info`` read through it."""

    def __init__(self, fd: int, info: ObjectInfo) -> None:
        self._fd = fd
        self.info = info
        self.prefetched: bytes | None = None  # the whole body, when open_object read it already

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("reader is closed")
        return self._fd

    async def chunks(self, start: int, end: int, chunk_size: int = DEFAULT_CHUNK) -> AsyncIterator[bytes]:
        """Bytes ``start``..``end`` inclusive, read with ``os.pread`` in a worker thread, or sliced
        from ``prefetched`` (bodies up to ``PREFETCH_MAX``, read by ``open_object``)."""
        fd = self.fileno()
        if self.prefetched is not None and end < len(self.prefetched):
            for position in range(start, end + 1, chunk_size):
                yield self.prefetched[position : min(position + chunk_size, end + 1)]
            return
        position = start
        while position <= end:
            data = await asyncio.to_thread(os.pread, fd, min(chunk_size, end - position + 1), position)
            if not data:
                # Someone truncated the file in place. Raising (rather than ending quietly) lets the
                # protocol layer abort the response instead of sending a silently short body.
                raise S3Error("InternalError", "The object shrank while it was being read.")
            position += len(data)
            yield data

    async def send_to(self, sock_fd: int, offset: int, count: int) -> int:
        """``os.sendfile`` in a sender thread (``fsio.zerocopy``)."""
        return await send_file_in_thread(sock_fd, self.fileno(), offset, count)

    async def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
