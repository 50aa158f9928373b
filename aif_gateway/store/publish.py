"""Writing objects atomically: temp file, hashes, metadata, then one rename under the key lock.

Conditional writes are one atomic step across processes and nodes: the check and the rename
happen while holding the key's ``fcntl`` lock, and ``If-None-Match: *`` publishes with
``link()``, which fails if anything (even a writer that bypasses the gateway) created the name
first.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checksums import MultiHasher, b64
from ..errors import S3Error, chunked_body_error
from ..fsio.dirdefaults import take_directory_defaults
from ..fsio.engine import ChunkedError, recv_hashed, write_hashed
from ..fsio.newfile import create_new_file, space_reservation
from ..fsio.reserve import Reservation
from ..fsio.sockrecv import ReceiveUnavailable, receive_in_thread
from .base import CHECKSUM_ALGORITHMS, BodyOnSocket, ByteStream, Digests, ObjectAttrs, WriteOptions
from .locks import key_lock
from .meta import EMPTY_MD5, MetaStore, ObjectRecord, info_for
from .oserrors import as_caller
from .paths import BucketPaths, conflict_error, is_dir_key, open_parent_checked

__all__ = [
    "HashingWriter",
    "TEMP_PREFIX",
    "TempObject",
    "WRITE_BATCH",
    "check_body",
    "check_conditions",
    "cleanup_stale_temp",
    "copy_range",
    "copy_to_temp",
    "discard",
    "publish_dir_marker",
    "publish_file",
    "receive_body",
    "record_for",
    "remove_empty_parents",
    "remove_older_than",
]

WRITE_BATCH = 1 << 20  # bytes handed to a worker thread at a time
TEMP_PREFIX = "put."
_RENAME_RETRIES = 5  # a concurrent delete may remove the empty parent we just created


@dataclass(frozen=True)
class TempObject:
    path: Path
    size: int
    mtime_ns: int
    digests: Digests


class HashingWriter:
    """A file written from worker threads at ``offset`` onwards, hashing what it writes.

    Used for new temp files (``new_temp_writer``, which unlinks the file on discard) and for a
    part's range of a multipart upload's shared data file (which keeps the file).
    The lock makes ``discard`` wait for a write still running in a thread (a cancelled
    ``to_thread`` does not stop its thread), so the descriptor is never closed under it.
    """

    def __init__(
        self,
        path: Path,
        fd: int,
        algorithms: Iterable[str],
        *,
        offset: int = 0,
        unlink_on_discard: bool = True,
        reservation: Reservation | None = None,
    ) -> None:
        self.path = path
        self.fd: int | None = fd
        self.offset = offset
        self.unlink_on_discard = unlink_on_discard
        self.hasher = MultiHasher(algorithms)
        self.size = 0
        self.lock = threading.Lock()
        # Blocks reserved as the bytes arrive (``offset`` is the reservation's start too).
        self.reservation = reservation

    def write(self, batch: list[bytes | memoryview]) -> None:
        data = memoryview(b"".join(batch))
        with self.lock:
            if self.fd is None:
                raise OSError(errno.EBADF, "writer already discarded")
            if self.reservation is not None:
                self.reservation.cover(self.size + len(data))
            # One call hashes and writes the batch (native: without the GIL, each block hashed
            # while still in cache, then written).
            self.size += write_hashed(self.fd, data, self.offset + self.size, self.hasher)

    def receive(self, sock_fd: int, count: int, stall_timeout_s: float, decoder: Any = None) -> int:
        """Reads ``count`` bytes from the socket and writes them (or, with an aws-chunked
        ``decoder``, their data) into the file after what is there, hashing what it writes.

        With a reservation, in steps: each reads at most what is reserved ahead (data is
        never longer than the raw bytes it decodes from), then reserves the next window."""
        stall_ms = max(1, int(stall_timeout_s * 1000))
        with self.lock:
            if self.fd is None:
                raise OSError(errno.EBADF, "writer already discarded")
            got = 0
            left = count
            while left > 0:
                step = left if self.reservation is None else min(left, self.reservation.receive_step(self.size))
                written = recv_hashed(sock_fd, self.fd, self.offset + self.size, step, self.hasher, stall_ms, decoder)
                self.size += written
                got += written
                left -= step
                if self.reservation is not None and left:
                    self.reservation.cover(self.size)
            return got

    def finish(self, fsync: bool) -> TempObject:
        with self.lock:
            assert self.fd is not None
            if fsync:
                os.fsync(self.fd)
            mtime_ns = os.fstat(self.fd).st_mtime_ns
            os.close(self.fd)
            self.fd = None
        return TempObject(self.path, self.size, mtime_ns, self.hasher.digests())

    def discard(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            if self.unlink_on_discard:
                discard(self.path)


def new_temp_writer(bucket: BucketPaths, algorithms: Iterable[str], expected_size: int | None = None) -> HashingWriter:
    # In the shared, sticky tmp/ (internal.py), created with the caller's ids: the file is theirs.
    path = bucket.tmp / f"{TEMP_PREFIX}{os.getpid()}.{secrets.token_hex(8)}"
    # Laid out for its filesystem and size (Lustre stripes) before any byte; blocks (ext4, GPFS)
    # are reserved only as bytes arrive.
    fd = create_new_file(path, expected_size)
    try:
        reservation = space_reservation(path, fd, expected_size)
    except BaseException:
        os.close(fd)
        discard(path)
        raise
    return HashingWriter(path, fd, algorithms, reservation=reservation)


def discard(path: Path) -> None:
    """Remove the file ``path`` if it is there (blocking)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def receive_body(
    bucket: BucketPaths,
    body: ByteStream,
    algorithms: Iterable[str],
    *,
    fsync: bool = False,
    expected_size: int | None = None,
    writer: HashingWriter | None = None,
) -> TempObject:
    """Stream ``body`` into a new temp file in the bucket's tmp/ from a worker thread, hashing MD5
    plus ``algorithms`` on the way. On any failure the temp file is removed.

    ``expected_size``: the declared length, when known; it picks the file's layout, caps the blocks
    reserved as bytes arrive (``fsio.reserve``) and cuts off a body that outgrows it
    (InvalidRequest). ``writer``: another destination with HashingWriter's write/finish/discard
    (multipart's writer into a part's range of an upload's shared data file). A ``BodyOnSocket``
    at the end of the stream is read by the engine's native receive loop in a receiver thread
    (``fsio.sockrecv``).
    """
    if writer is None:
        writer = await as_caller(new_temp_writer, bucket, algorithms, expected_size)
    pending: asyncio.Future[None] | None = None
    try:
        batch: list[bytes | memoryview] = []
        batched = received = 0
        # Writes and finish touch only the open descriptor, which keeps the rights it was
        # opened with: those threads need no identity switch.
        async for chunk in body:
            if isinstance(chunk, BodyOnSocket):
                # Everything before the rest must be on disk first: it precedes it in the file.
                if pending is not None:
                    await pending
                    pending = None
                if batch:
                    await asyncio.to_thread(writer.write, batch)
                    batch, batched = [], 0
                await _receive_from_socket(writer, chunk)
                continue
            if not chunk:
                continue
            received += len(chunk)
            if expected_size is not None and received > expected_size:
                # The protocol layer's decoders stop at the declared length; this is the store's
                # own guard that no body outgrows its claim (and the space reserved for it).
                raise S3Error("InvalidRequest", "The request body is longer than its declared length.")
            batch.append(chunk)
            batched += len(chunk)
            if batched >= WRITE_BATCH:
                # Receive the next batch while a thread writes this one.
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(writer.write, batch))
                batch, batched = [], 0
        if pending is not None:
            await pending
        if batch:
            await asyncio.to_thread(writer.write, batch)
        return await asyncio.to_thread(writer.finish, fsync)
    except BaseException:
        if pending is not None and not pending.done():
            # Let the in-flight write finish (its thread cannot be stopped) and drop its
            # outcome: the body already failed, and an unretrieved error would only be logged.
            await asyncio.wait([pending])
        if pending is not None and not pending.cancelled():
            pending.exception()
        await as_caller(writer.discard)
        raise


async def _receive_from_socket(writer: HashingWriter, rest: BodyOnSocket) -> None:
    def receive(own_sock: int) -> int:
        rest.started = True  # from here on, bytes may be gone from the socket
        return writer.receive(own_sock, rest.count, rest.stall_timeout_s, rest.decoder)

    try:
        await receive_in_thread(rest.fd, receive)
    except ReceiveUnavailable:
        pass  # not started: the stream goes on with bytes
    except ChunkedError as exc:
        raise chunked_body_error(exc.kind, exc.message) from None
    except ConnectionError as exc:
        # The client went away mid-body: the same outcome as through aiohttp.
        raise S3Error("IncompleteBody", f"The body ended early: {exc}") from exc
    except TimeoutError:
        raise S3Error("RequestTimeout") from None  # it stalled: as through aiohttp


def check_body(temp: TempObject, options: WriteOptions) -> None:
    """Check the body against ``options.expected_size`` (IncompleteBody) and ``options.verify``
    (the S3Error it raises)."""
    if options.expected_size is not None and temp.size != options.expected_size:
        raise S3Error(
            "IncompleteBody", f"Received {temp.size} bytes where the request declared {options.expected_size}."
        )
    if options.verify is not None:
        options.verify(temp.digests)


def record_for(temp: TempObject, attrs: ObjectAttrs, algorithms: Iterable[str]) -> ObjectRecord:
    """The record of a single-part PUT."""
    checksums = {name: b64(temp.digests[name]) for name in algorithms if name in CHECKSUM_ALGORITHMS}
    return ObjectRecord(
        etag=temp.digests["MD5"].hex(),
        size=temp.size,
        mtime_ns=temp.mtime_ns,
        content_type=attrs.content_type or "application/octet-stream",
        headers=dict(attrs.headers),
        user_meta=dict(attrs.user_meta),
        checksums=checksums,
        checksum_type="FULL_OBJECT" if checksums else None,
    )


def current_etag(bucket: BucketPaths, meta: MetaStore, key: str, path: Path) -> str | None:
    """The etag ``key`` has now (None when it is no object); blocking, call under the key lock."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if is_dir_key(key):
        if not os.path.isdir(path):
            return None
        record = meta.read(path, key)
        return EMPTY_MD5 if record is not None and record.dir_marker else None
    if not os.path.isfile(path):
        return None
    return info_for(key, st, meta.read(path, key)).etag


def check_conditions(bucket: BucketPaths, meta: MetaStore, key: str, path: Path, options: WriteOptions) -> None:
    """``If-None-Match: *`` / ``If-Match`` against the key's current state (blocking; call under
    the key lock)."""
    if not options.if_none_match and options.if_match is None:
        return
    etag = current_etag(bucket, meta, key, path)
    if options.if_none_match and etag is not None:
        raise S3Error("PreconditionFailed", "If-None-Match: * failed: the object already exists.", resource=key)
    if options.if_match is not None:
        if etag is None:
            raise S3Error("NoSuchKey", resource=key, extra={"Key": key})
        if options.if_match != "*" and options.if_match != etag:
            raise S3Error("PreconditionFailed", "If-Match failed: the object's ETag differs.", resource=key)


def _make_dirs(key: str, directory: Path) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise conflict_error(key) from None


def _clear_directory_in_the_way(meta: MetaStore, key: str, path: Path) -> None:
    """A file may replace an empty, unmarked directory (left over by an HPC job); nothing else."""
    if not os.path.isdir(path) or os.path.islink(path):
        return
    record = meta.read(path, key + "/")
    if record is not None and record.dir_marker:
        raise conflict_error(key)
    try:
        os.rmdir(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise conflict_error(key) from None
        raise


def _rename_into_place(bucket: BucketPaths, key: str, src: Path, path: Path, exclusive: bool, fsync: bool) -> None:
    for _attempt in range(_RENAME_RETRIES):
        _make_dirs(key, path.parent)
        try:
            parent_fd = open_parent_checked(str(bucket.dir), str(path))
        except FileNotFoundError:
            continue
        try:
            take_directory_defaults(src, parent_fd)
            if exclusive:
                os.link(src, path.name, dst_dir_fd=parent_fd)
                os.unlink(src)
            else:
                os.replace(src, path.name, dst_dir_fd=parent_fd)
            if fsync:
                os.fsync(parent_fd)
            return
        except FileExistsError:
            raise S3Error(
                "PreconditionFailed", "If-None-Match: * failed: the object already exists.", resource=key
            ) from None
        except IsADirectoryError:
            raise conflict_error(key) from None
        except FileNotFoundError:
            if not src.exists():
                raise
            # The parent was removed by a concurrent delete's cleanup after we created it.
        finally:
            os.close(parent_fd)
    raise S3Error("ConditionalRequestConflict", "The key's parent directory kept disappearing; retry.", resource=key)


def publish_file(
    bucket: BucketPaths,
    meta: MetaStore,
    src: Path,
    key: str,
    record: ObjectRecord,
    tags: dict[str, str] | None,
    options: WriteOptions,
    *,
    fsync: bool = False,
) -> None:
    """Attach the metadata to ``src`` and rename it to ``key`` under the key lock (blocking),
    honouring ``options.if_none_match`` / ``options.if_match``.

    ``src`` must be a file on the same filesystem (in the bucket's state directory) whose
    mtime_ns and size the record matches. It is consumed on success and left in place on failure
    (the caller removes or keeps it).
    """
    path = bucket.resolve(key)
    meta.stage(src, record, tags)
    with key_lock(bucket.state, key):
        check_conditions(bucket, meta, key, path, options)
        _clear_directory_in_the_way(meta, key, path)
        if os.path.exists(path) and not os.path.isfile(path):
            raise conflict_error(key)
        if meta.writes_records_apart:
            _may_publish_into(key, path.parent)
        meta.commit(key, record, tags)
        _rename_into_place(bucket, key, src, path, options.if_none_match, fsync)


def _may_publish_into(key: str, directory: Path) -> None:
    """Refuse (AccessDenied) before a record kept apart from the file (a sidecar, written with the
    gateway's ids) replaces the one of an object the caller may not replace: the kernel decides
    on the rename only after it. faccessat(AT_EACCESS) checks with the thread's fsuid."""
    _make_dirs(key, directory)
    if not os.access(directory, os.W_OK | os.X_OK, effective_ids=True):
        raise S3Error("AccessDenied", "Access Denied: you may not write the key's directory.")


def publish_dir_marker(
    bucket: BucketPaths,
    meta: MetaStore,
    key: str,
    record: ObjectRecord,
    tags: dict[str, str] | None,
    options: WriteOptions,
) -> None:
    """Publish the directory marker ``key`` with ``record`` and ``tags`` under the key lock (blocking)."""
    path = bucket.resolve(key)
    with key_lock(bucket.state, key):
        check_conditions(bucket, meta, key, path, options)
        _make_dirs(key, path)
        if not os.path.isdir(path):
            raise conflict_error(key)
        meta.write(path, key, record)
        meta.write_tags(path, key, tags)


def remove_empty_parents(bucket: BucketPaths, meta: MetaStore, directory: Path) -> None:
    """Remove ``directory`` and its ancestors while empty, stopping at the bucket or a marker (blocking)."""
    while directory != bucket.dir and bucket.dir in directory.parents:
        if directory == bucket.state:
            return
        record = meta.read(directory, bucket.key_of(directory) + "/")
        if record is not None and record.dir_marker:
            return
        try:
            os.rmdir(directory)
        except OSError:
            return  # not empty (or not ours to remove): stop here
        directory = directory.parent


def cleanup_stale_temp(bucket: BucketPaths, older_than_s: float = 3600) -> int:
    """Remove what crashed writers left in the bucket's tmp/ (temp files, and directories
    renamed there to be deleted); returns how many entries went (blocking). Run with the
    gateway's ids: the entries belong to many users."""
    return remove_older_than(bucket.tmp, older_than_s)


def remove_older_than(directory: Path, older_than_s: float) -> int:
    """Remove the entries of ``directory`` (files or whole trees) last modified more than
    ``older_than_s`` ago; returns how many went (blocking). Other processes may sweep at the same
    time."""
    cutoff_ns = time.time_ns() - int(older_than_s * 1e9)
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime_ns >= cutoff_ns:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        except FileNotFoundError:
            pass  # another process cleaned it first
    return removed


# copy_file_range cannot serve this pair of files (another filesystem, an old kernel, a special
# file): copy through the process instead.
_COPY_FALLBACK_ERRNOS = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}
_KERNEL_COPY_CHUNK = 64 * 1024 * 1024  # bytes per copy_file_range call, so each call ends soon


def copy_to_temp(
    bucket: BucketPaths, src_fd: int, offset: int, length: int, algorithms: Iterable[str] | None, *, fsync: bool = False
) -> TempObject:
    """Copy ``length`` bytes of ``src_fd`` from ``offset`` into a new temp file (blocking).

    With ``algorithms=None`` nothing is hashed and ``copy_range`` lets the kernel copy;
    ``digests`` is then empty. Otherwise the bytes pass through this process to hash MD5 plus
    ``algorithms``. The temp file is removed on failure.
    """
    writer = new_temp_writer(bucket, algorithms or (), length)
    try:
        assert writer.fd is not None
        if writer.reservation is not None:
            writer.reservation.reserve_all()  # the source's bytes exist: no client's claim
        if algorithms is None:
            copy_range(src_fd, writer.fd, offset, length)
            writer.size = length
        else:
            copied = 0
            while copied < length:
                data = os.pread(src_fd, min(WRITE_BATCH, length - copied), offset + copied)
                if not data:
                    raise _source_shrank()
                writer.write([data])
                copied += len(data)
        temp = writer.finish(fsync)
    except BaseException:
        writer.discard()
        raise
    return temp if algorithms is not None else TempObject(temp.path, temp.size, temp.mtime_ns, {})


def copy_range(src_fd: int, dst_fd: int, offset: int, length: int, dst_offset: int = 0) -> None:
    """Copy ``length`` bytes of ``src_fd`` from ``offset`` to ``dst_fd`` at ``dst_offset`` (blocking).

    The kernel copies where it can (``copy_file_range``: server-side on Lustre/GPFS/NFS 4.2,
    reflinks on XFS); the rest goes through this process with ``pread``/``pwrite``. A source
    shorter than ``offset + length`` is an InternalError.

    The store's one kernel-side copy, for copies and for Complete concatenating parts.
    """
    copied = _kernel_copy(src_fd, dst_fd, offset, length, dst_offset)
    while copied < length:
        data = os.pread(src_fd, min(WRITE_BATCH, length - copied), offset + copied)
        if not data:
            raise _source_shrank()
        copied += os.pwrite(dst_fd, data, dst_offset + copied)


def _kernel_copy(src_fd: int, dst_fd: int, offset: int, length: int, dst_offset: int) -> int:
    """Bytes copied by ``copy_file_range`` (fewer, maybe 0, where it is unsupported)."""
    copied = 0
    while copied < length:
        try:
            n = os.copy_file_range(
                src_fd, dst_fd, min(length - copied, _KERNEL_COPY_CHUNK), offset + copied, dst_offset + copied
            )
        except OSError as exc:
            if exc.errno in _COPY_FALLBACK_ERRNOS:
                break
            raise
        if n == 0:
            break  # the end of the source, or a filesystem that copies nothing: pread decides
        copied += n
    return copied


def _source_shrank() -> S3Error:
    return S3Error("InternalError", "The source object shrank while being copied; retry.")
