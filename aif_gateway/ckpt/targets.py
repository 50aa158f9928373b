"""Where a checkpoint's files are stored: on the shared filesystem (a gateway bucket, or a plain
directory), or over S3 to a gateway.

Every target stores named files under one checkpoint location and gives the same calls, so the
checkpoint formats (``dcp``, ``zarrfmt``) never know which one they use.

- ``BucketTarget``: the checkpoint is a prefix of a gateway bucket whose directory this node mounts.
  Files are written with ``store.direct`` (temp file, stripes written in parallel, the gateway's
  metadata record, an atomic rename), so the gateway serves them at once.
- ``DirectoryTarget``: a plain directory outside any bucket (a scratch filesystem): temp file, parallel
  stripe writes, rename. No gateway metadata: there is no gateway.
- ``S3Target``: anywhere else: stripes become parts of a multipart upload sent in parallel (a file
  of one stripe is one PutObject), each with a CRC64NVME the gateway checks.
A missing file raises ``FileNotFoundError`` from every target.
"""

from __future__ import annotations

import os
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore import exceptions as bexc

from ..checksums import full_object_crc
from ..fsio.engine import Hasher, pread_striped
from ..fsio.fullio import pread_full, pwrite_all
from ..store.direct import DirectBucket, DirectWriter
from .s3io import S3Bucket
from .writer import FileWriter, Piece

__all__ = ["BucketTarget", "CheckpointTarget", "DirectoryTarget", "MiB", "S3Target"]

MiB = 1 << 20
READ_STRIPE = 8 * MiB
MIN_PART = 5 * MiB  # S3's smallest part but the last (EntityTooSmall otherwise)


class CheckpointTarget(ABC):
    """Named files under one checkpoint location. ``kind``: "filesystem" or "s3"; ``location``:
    where, in words (for messages)."""

    kind: str
    location: str

    def __init__(self, threads: int, part_size: int) -> None:
        self.part_size = part_size
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix=f"aif-ckpt-{self.kind}")

    @abstractmethod
    def open_file(self, name: str, size_hint: int | None = None) -> FileWriter:
        """A new file; ``size_hint``, about how large it will be, lets a filesystem target lay it
        out (Lustre stripes, GPFS preallocation) before the first byte."""

    def put_bytes(self, name: str, data: bytes) -> None:
        file = self.open_file(name, len(data))
        file.write(data)
        file.commit()

    @abstractmethod
    def read_into(self, name: str, offset: int, view: memoryview) -> None:
        """Fill ``view`` with the file's bytes from ``offset`` (all of them: EOFError if short)."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def size(self, name: str) -> int:
        """The file's size in bytes; FileNotFoundError when there is none."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def list(self) -> Iterator[str]: ...

    def close(self) -> None:
        self.pool.shutdown(wait=True)


# -- the filesystem ------------------------------------------------------------------------------
def _read_file_into(path: Path, offset: int, view: memoryview, threads: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        got = (
            pread_striped(fd, view, offset, READ_STRIPE, threads)
            if len(view) > READ_STRIPE
            else pread_full(fd, view, offset)
        )
    finally:
        os.close(fd)
    if got != len(view):
        raise EOFError(f"{path}: {len(view)} bytes asked at {offset}, {got} there")


class _BucketFileWriter(FileWriter):
    def __init__(self, target: BucketTarget, writer: DirectWriter) -> None:
        super().__init__(target.pool, target.part_size)
        self._writer = writer
        self._fsync = target.fsync

    def _send(self, part: int, offset: int, pieces: list[Piece], last: bool) -> None:
        for piece in pieces:
            self._writer.write_at(memoryview(piece), offset, part)
            offset += len(piece)

    def _publish(self, part_sizes: list[int], results: list[Any], single: list[Piece], digest: bytes | None) -> None:
        if single:
            self._send(0, 0, single, True)
        self._writer.commit(part_sizes, fsync=self._fsync, content_digest=digest)

    def _discard(self) -> None:
        self._writer.discard()


class BucketTarget(CheckpointTarget):
    kind = "filesystem"

    def __init__(
        self,
        bucket: DirectBucket,
        prefix: str,
        *,
        threads: int = 8,
        part_size: int = 32 * MiB,
        md5: bool = False,
        checksum: bool = False,
        fsync: bool = False,
    ) -> None:
        super().__init__(threads, part_size)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.md5 = md5
        self.checksum = checksum
        self.fsync = fsync
        self.location = f"{bucket.directory}/{self.prefix} (bucket {bucket.name}, written as objects)"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def open_file(self, name: str, size_hint: int | None = None) -> FileWriter:
        return _BucketFileWriter(
            self, self.bucket.writer(self.key(name), size_hint, md5=self.md5, checksum=self.checksum)
        )

    def read_into(self, name: str, offset: int, view: memoryview) -> None:
        _read_file_into(self.bucket.path(self.key(name)), offset, view, self.threads)

    def read_bytes(self, name: str) -> bytes:
        return self.bucket.path(self.key(name)).read_bytes()

    def exists(self, name: str) -> bool:
        return self.bucket.exists(self.key(name))

    def size(self, name: str) -> int:
        return self.bucket.size(self.key(name))

    def delete(self, name: str) -> None:
        self.bucket.delete(self.key(name))

    def list(self) -> Iterator[str]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        return (key[cut:] for key in self.bucket.list(self.prefix))


class _DirectoryFileWriter(FileWriter):
    def __init__(self, target: DirectoryTarget, final: Path) -> None:
        super().__init__(target.pool, target.part_size)
        self._final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        self._temp = final.parent / f".{final.name}.aif-tmp.{secrets.token_hex(6)}"
        self._fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._fsync = target.fsync

    def _send(self, part: int, offset: int, pieces: list[Piece], last: bool) -> None:
        for piece in pieces:
            pwrite_all(self._fd, memoryview(piece), offset)
            offset += len(piece)

    def _publish(self, part_sizes: list[int], results: list[Any], single: list[Piece], digest: bytes | None) -> None:
        if single:
            self._send(0, 0, single, True)
        if self._fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self._temp, self._final)

    def _discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            os.unlink(self._temp)
        except FileNotFoundError:
            pass


class DirectoryTarget(CheckpointTarget):
    kind = "filesystem"

    def __init__(self, directory: Path, *, threads: int = 8, part_size: int = 32 * MiB, fsync: bool = False) -> None:
        super().__init__(threads, part_size)
        self.directory = Path(directory)
        self.fsync = fsync
        self.location = str(self.directory)

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"not a file name inside the checkpoint: {name!r}")
        return self.directory / name

    def open_file(self, name: str, size_hint: int | None = None) -> FileWriter:
        return _DirectoryFileWriter(self, self._path(name))

    def read_into(self, name: str, offset: int, view: memoryview) -> None:
        _read_file_into(self._path(name), offset, view, self.threads)

    def read_bytes(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        path = self._path(name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        return path.stat().st_size

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        # Directories the file leaves empty go too, as the gateway's DeleteObject does.
        parent = path.parent
        while parent != self.directory and self.directory in parent.parents:
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = parent.parent

    def list(self) -> Iterator[str]:
        for directory, _, files in os.walk(self.directory):
            for f in files:
                if ".aif-tmp." not in f:
                    yield os.path.relpath(os.path.join(directory, f), self.directory)


# -- S3 ------------------------------------------------------------------------------------------
def _crc64(pieces: list[Piece]) -> bytes:
    hasher = Hasher(["CRC64NVME"], md5=False)
    for piece in pieces:
        hasher.update(piece)
    return hasher.digests()["CRC64NVME"]


class _S3FileWriter(FileWriter):
    def __init__(self, target: S3Target, key: str) -> None:
        super().__init__(target.pool, target.part_size)
        self._s3 = target.s3
        self._key = key
        self._upload_id: str | None = None
        self._upload_lock = threading.Lock()

    def _upload(self) -> str:
        with self._upload_lock:
            if self._upload_id is None:
                self._upload_id = self._s3.create_upload(self._key)
            return self._upload_id

    def _send(self, part: int, offset: int, pieces: list[Piece], last: bool) -> tuple[int, str, bytes, int]:
        crc = _crc64(pieces)
        etag = self._s3.upload_part(self._key, self._upload(), part + 1, pieces, crc)
        return part + 1, etag, crc, sum(len(p) for p in pieces)

    def _publish(self, part_sizes: list[int], results: list[Any], single: list[Piece], digest: bytes | None) -> None:
        if not results:
            self._s3.put(self._key, single, _crc64(single))
            return
        full = full_object_crc("CRC64NVME", [(crc, size) for _, _, crc, size in results])
        self._s3.complete_upload(self._key, self._upload(), [(n, etag, crc) for n, etag, crc, _ in results], full)

    def _discard(self) -> None:
        if self._upload_id is not None:
            self._s3.abort_upload(self._key, self._upload_id)


class S3Target(CheckpointTarget):
    kind = "s3"

    def __init__(self, s3: S3Bucket, prefix: str, *, threads: int = 8, part_size: int = 32 * MiB) -> None:
        super().__init__(threads, max(part_size, MIN_PART))
        self.s3 = s3
        self.prefix = prefix.strip("/")
        self.location = f"s3://{s3.bucket}/{self.prefix} at {s3.settings.endpoint}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def open_file(self, name: str, size_hint: int | None = None) -> FileWriter:
        return _S3FileWriter(self, self.key(name))

    def read_into(self, name: str, offset: int, view: memoryview) -> None:
        if len(view) <= 2 * self.part_size:
            return self._missing_as_fnf(name, self.s3.read_into, self.key(name), offset, view)
        # Large ranges: parallel ranged GETs, each straight into its slice of the buffer.
        step = self.part_size
        futures = [
            self.pool.submit(
                self._missing_as_fnf, name, self.s3.read_into, self.key(name), offset + at, view[at : at + step]
            )
            for at in range(0, len(view), step)
        ]
        for f in futures:
            f.result()

    def read_bytes(self, name: str) -> bytes:
        return self._missing_as_fnf(name, self.s3.read_all, self.key(name))

    def exists(self, name: str) -> bool:
        return self.s3.exists(self.key(name))

    def size(self, name: str) -> int:
        return int(self._missing_as_fnf(name, self.s3.size, self.key(name)))

    def delete(self, name: str) -> None:
        self.s3.delete(self.key(name))

    def list(self) -> Iterator[str]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        return (key[cut:] for key in self.s3.list(self.prefix + "/" if self.prefix else ""))

    def _missing_as_fnf(self, name: str, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except bexc.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"{self.location}/{name}: no such object") from None
            raise

    def close(self) -> None:
        super().close()
        self.s3.close()
