"""Where a multipart upload's bytes go, so that Complete seldom has to move them.

When an upload's parts have one size P (all but the last, as boto3, awscli, rclone, s5cmd and
aws-crt send them), part ``n`` is written straight into the upload's one data file at offset
``(n-1)*P``; Complete then truncates that file to the object's size and renames it into place:
O(1) whatever the size. P is decided by the first part of at least ``MIN_PART_SIZE`` bytes whose
size is known before its body (the request's decoded length), atomically cluster-wide
(``UploadState.claim_part_size``). A part that does not fit the layout (bigger than P, a part 1
smaller than P) switches the upload to a part file per part; a part of unknown or small size, or
whose range another writer holds (``multipart_slots``), gets a part file of its own. Complete
builds any other list of parts into a new file range by range: reflinked where the filesystem
shares extents (FICLONERANGE on block-aligned ranges), else ``copy_file_range`` (which XFS,
Btrfs, NFS 4.2 and Lustre serve without moving bytes through us), else copied.

Preallocation: each part's range gets ``fallocate(FALLOC_FL_KEEP_SIZE)`` as its body arrives,
in windows ahead of the bytes written (``fsio.reserve``: never for the declared size alone), so
the filesystem lays the range out in large pieces and a full disk fails the part early.
KEEP_SIZE because the object's total is unknown until Complete (the truncate there frees what
lies past it); not ``posix_fallocate``, whose glibc emulation on filesystems without fallocate
writes zeros block by block and would overwrite a concurrent writer's bytes. Where fallocate is
unsupported, nothing is preallocated.

Everything here blocks but ``in_place_plan``, which is pure.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import struct
from pathlib import Path
from typing import Any

from ..errors import S3Error
from ..fsio import gpfs
from ..fsio.dirdefaults import TEMP_FILE_MODE
from ..fsio.reserve import Reservation
from . import multipart_slots
from .multipart_state import DATA_FILE, PartRecord, UploadState, no_upload
from .paths import BucketPaths
from .publish import WRITE_BATCH, HashingWriter, TempObject, copy_range, discard

__all__ = [
    "MIN_PART_SIZE",
    "assemble",
    "clone_range",
    "copy_into",
    "in_place_plan",
    "move_into_place",
    "place_part",
    "truncate_in_place",
]

MIN_PART_SIZE = 5 * 1024 * 1024  # every part but the last; also the least P worth a layout

_FICLONERANGE = 0x4020940D  # _IOW(0x94, 13, struct file_clone_range) from linux/fs.h
# The filesystem (or this pair of files, or these offsets) cannot share extents: copy instead.
_NO_CLONE_ERRNOS = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF}


def copy_into(writer: HashingWriter, src_fd: int, offset: int, length: int, fsync: bool) -> TempObject:
    """UploadPartCopy into a part's range: ``length`` bytes of ``src_fd`` from ``offset``."""
    try:
        copied = 0
        while copied < length:
            data = os.pread(src_fd, min(WRITE_BATCH, length - copied), offset + copied)
            if not data:
                raise S3Error("InternalError", "The source object shrank while being copied; retry.")
            writer.write([data])
            copied += len(data)
        return writer.finish(fsync)
    except BaseException:
        writer.discard()
        raise


class PartSlot:
    """Part ``part_number``'s range of the data file, held against other writers and Complete."""

    def __init__(self, state: UploadState, upload_id: str, part_number: int, offset: int, size: int) -> None:
        self.state = state
        self.upload_id = upload_id
        self.part_number = part_number
        self.offset = offset
        self.size = size  # the body's declared length: the most its range may reserve
        self.fd: int | None = None

    def writer(self, algorithms: frozenset[str]) -> HashingWriter:
        """The writer of the range, from ``offset``, for ``publish.receive_body`` or ``copy_into``."""
        assert self.fd is not None
        fd, self.fd = self.fd, None  # the writer closes it from now on
        # Discarding keeps the file: the range keeps what was written, and no record names it
        # (``forget_data_part``).
        reservation = Reservation(fd, self.offset, self.size, gpfs.reserve_keeping_size, "part preallocation")
        return HashingWriter(
            self.state.data_file(self.upload_id),
            fd,
            algorithms,
            offset=self.offset,
            unlink_on_discard=False,
            reservation=reservation,
        )

    def release(self) -> None:
        """Let other writers and Complete have the range again."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        multipart_slots.release_part(self.state.slots_file(self.upload_id), self.part_number)


def place_part(state: UploadState, key: str, upload_id: str, part_number: int, size: int | None) -> PartSlot | None:
    """Hold part ``part_number``'s range of the data file for a body of ``size`` bytes, or
    None: the part gets a file of its own. NoSuchUpload once the upload is gone."""
    if size is None or size == 0:
        return None
    try:
        layout = state.layout(upload_id)
        if layout is None:
            if size < MIN_PART_SIZE:
                return None  # the last part, or a small upload: P stays open
            layout = state.claim_part_size(upload_id, size)
        part_size = layout["part_size"]
        if layout["separate"]:
            return None
        if size > part_size or (part_number == 1 and size < part_size):
            state.leave_data_file(upload_id, layout)  # the parts are not uniform: stop using it
            return None
        if not multipart_slots.hold_part(state.slots_file(upload_id), part_number):
            return None  # another writer of this part, or a Complete, has the range
    except FileNotFoundError:
        raise no_upload(upload_id) from None
    slot = PartSlot(state, upload_id, part_number, (part_number - 1) * part_size, size)
    try:
        state.forget_data_part(key, upload_id, part_number)
        try:
            slot.fd = state.open_file(upload_id, DATA_FILE, os.O_WRONLY)
        except FileNotFoundError:
            raise no_upload(upload_id) from None
    except BaseException:
        slot.release()
        raise
    return slot


def in_place_plan(
    chosen: list[PartRecord], stored: dict[int, PartRecord], layout: dict[str, Any] | None
) -> list[PartRecord] | None:
    """Whether the data file can become the object: the chosen parts are parts 1..N with size P
    (the last at most P), and no recorded part lies past them (a truncate would cut it). Then
    the parts that sit elsewhere (a small last part that came before P was known, a retry that
    found its range busy) must be copied into their ranges first: those are returned, usually
    none. None: the object must be assembled."""
    if layout is None:
        return None
    part_size = layout["part_size"]
    misplaced = []
    for index, record in enumerate(chosen):
        fits = record["size"] <= part_size if index == len(chosen) - 1 else record["size"] == part_size
        if record["part_number"] != index + 1 or not fits:
            return None
        if record["file"] != DATA_FILE or record.get("offset") != index * part_size:
            misplaced.append(record)
    if any(r["file"] == DATA_FILE and r["part_number"] > len(chosen) for r in stored.values()):
        return None
    return misplaced


def move_into_place(state: UploadState, upload_id: str, misplaced: list[PartRecord], part_size: int) -> None:
    """Copy parts kept in files of their own into their ranges of the data file (writers are
    excluded by the caller)."""
    if not misplaced:
        return
    fd = state.open_file(upload_id, DATA_FILE, os.O_WRONLY)
    try:
        for record in misplaced:
            _copy_part(state, upload_id, record, fd, (record["part_number"] - 1) * part_size)
    finally:
        os.close(fd)


def _copy_part(state: UploadState, upload_id: str, record: PartRecord, dst_fd: int, dst_offset: int) -> None:
    src_offset = record.get("offset", 0)
    try:
        src = state.open_file(upload_id, record["file"], os.O_RDONLY)
    except FileNotFoundError:  # removed behind the gateway's back
        raise S3Error("InvalidPart", extra={"PartNumber": str(record["part_number"])}) from None
    try:
        size = record["size"]
        shared = clone_range(src, dst_fd, src_offset, size, dst_offset)
        copy_range(src, dst_fd, src_offset + shared, size - shared, dst_offset=dst_offset + shared)
    finally:
        os.close(src)


def clone_range(src_fd: int, dst_fd: int, offset: int, length: int, dst_offset: int) -> int:
    """Reflink the block-aligned head of ``length`` bytes of ``src_fd`` at ``offset`` to
    ``dst_fd`` at ``dst_offset``; how many bytes were shared (0 where not possible)."""
    block = os.fstat(dst_fd).st_blksize
    shared = length - length % block
    if shared == 0 or offset % block or dst_offset % block:
        return 0
    try:
        fcntl.ioctl(dst_fd, _FICLONERANGE, struct.pack("qQQQ", src_fd, offset, shared, dst_offset))
    except OSError as exc:
        if exc.errno in _NO_CLONE_ERRNOS:
            return 0
        raise
    return shared


def assemble(
    bucket: BucketPaths, state: UploadState, upload_id: str, chosen: list[PartRecord], fsync: bool
) -> tuple[Path, int, int]:
    """The chosen parts one after the other in a new temp file: (path, size, mtime_ns)."""
    path = bucket.tmp / f"complete.{os.getpid()}.{secrets.token_hex(8)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, TEMP_FILE_MODE)
    try:
        offset = 0
        for record in chosen:
            _copy_part(state, upload_id, record, fd, offset)
            offset += record["size"]
        if fsync:
            os.fsync(fd)
        mtime_ns = os.fstat(fd).st_mtime_ns
    except BaseException:
        discard(path)
        raise
    finally:
        os.close(fd)
    return path, offset, mtime_ns


def truncate_in_place(state: UploadState, upload_id: str, size: int, fsync: bool) -> int:
    """Cut the data file to the object's ``size`` (dropping preallocation past it); mtime_ns."""
    fd = state.open_file(upload_id, DATA_FILE, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        if fsync:
            os.fsync(fd)
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
