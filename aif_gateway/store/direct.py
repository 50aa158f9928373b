"""Objects written and read straight on the shared tree, by processes that are not the gateway.

A training job on a node that mounts the gateway's root (checkpoint writers, ``aif_gateway.ckpt``)
writes here instead of sending its bytes through HTTP. The object is published exactly as a PUT
would publish it: a temp file in the bucket's tmp/ (``internal``), laid out for its filesystem (hashed on
the way where the caller asks: see below), then the same ``ObjectRecord`` and one rename under the same key lock
(``publish.publish_file``). Any gateway process serves it at once, with its ETag and checksum.

This module is the one seam through which peer packages (``ckpt``) reach the tree directly:
they name buckets, keys and filesystem paths, never the gateway's on-disk format (records,
internal directories), which stays behind these calls.

- ``check_bucket_name(name)``: ValueError (saying why) for a name S3 does not allow.
- ``DirectBucket.open(root, bucket, bucket_map=None, meta_backend=None)`` (blocking): the bucket's directory under
  ``root`` (or ``bucket_map``); ``FileNotFoundError`` when it is not there.
- ``DirectBucket.enclosing(path, meta_backend=None)`` (blocking): the bucket a filesystem path lies
  in, opened, and the key prefix of ``path`` in it; None when it lies in no bucket.
- on a bucket: ``name``, ``directory``, ``writer(key, expected_size=None, md5=False, checksum=False) -> DirectWriter``,
  ``path(key)`` (checked: no way out of the bucket), ``delete(key)`` (empty parents go too),
  ``exists(key)``, ``size(key)``, ``list(prefix) -> [key]``.
- ``DirectWriter``: ``write_at(view, offset, part)`` from any thread, with ``part`` the index of
  the stripe the bytes belong to (each stripe hashed on its own, so stripes are written in
  parallel); ``commit(part_sizes, content_type, fsync=False, content_digest=None) ->
  ObjectRecord`` once every stripe is written; ``discard()``.

What is computed while writing, by choice of the caller (each costs CPU on every byte):
- nothing (the default): the ETag is made from ``content_digest`` (a digest the caller has
  anyway: a checkpoint's xxh3 of its items), else it is unique to the write; a ``-N`` suffix
  marks it, as S3 marks ETags that are not MD5s, so no client checks a body against it.
- ``checksum=True``: a FULL_OBJECT CRC64NVME, computed per stripe while the stripe is in cache and
  combined arithmetically; AWS SDKs verify it on GET. About 0.17 s of CPU per GB.
- ``md5=True``: the ETag a multipart upload with these stripes as parts gets (the MD5 of the
  part MD5s, ``-N``; a plain MD5 for one stripe), part sizes recorded for ``partNumber`` reads.
  MD5 runs at about 0.5 GB/s per core: a fifth of what one core writes to memory.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..checksums import full_object_crc, multipart_etag
from ..errors import S3Error
from ..fsio.engine import Hasher, write_hashed
from ..fsio.fullio import pwrite_all
from ..fsio.newfile import create_new_file, space_reservation
from .base import WriteOptions
from .internal import bucket_state_dir, prepare_state
from .locks import key_lock
from .meta import BUCKET_XATTR, MetaStore, ObjectRecord, bucket_record_file, meta_store_for
from .paths import INTERNAL_DIR, BucketPaths, validate_bucket_name
from .publish import TEMP_PREFIX, discard, publish_file, remove_empty_parents

__all__ = ["DirectBucket", "DirectWriter", "check_bucket_name"]

CHECKSUM = "CRC64NVME"


def check_bucket_name(name: str) -> None:
    """ValueError, saying why, when ``name`` is not a bucket name S3 allows."""
    try:
        validate_bucket_name(name)
    except S3Error as exc:
        raise ValueError(str(exc)) from None


@dataclass
class DirectBucket:
    paths: BucketPaths
    meta: MetaStore

    @classmethod
    def open(
        cls, root: Path, bucket: str, bucket_map: dict[str, Path] | None = None, meta_backend: str | None = None
    ) -> DirectBucket:
        """``meta_backend``: as the gateway's (``AIF_META_BACKEND`` when it forces one; probed
        otherwise, as the gateway probes)."""
        if bucket_map and bucket in bucket_map:
            directory = Path(bucket_map[bucket])
        else:
            validate_bucket_name(bucket)
            directory = Path(root) / bucket
        if not directory.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such bucket directory", str(directory))
        paths = BucketPaths.at(bucket, directory, bucket_state_dir(Path(root), bucket, directory))
        # Nothing is created here: a reader may have the tree mounted read-only.
        return cls(paths, meta_store_for(paths, meta_backend))

    @classmethod
    def enclosing(
        cls, path: str | os.PathLike[str], meta_backend: str | None = None
    ) -> tuple[DirectBucket, str] | None:
        """The bucket directory above ``path`` (itself included), opened, and the key prefix of
        ``path`` in it; None when no directory above it is a bucket."""
        real = Path(os.path.realpath(path))
        for candidate in [real, *real.parents]:
            if _is_bucket_dir(candidate):
                bucket = cls.open(candidate.parent, candidate.name, {candidate.name: candidate}, meta_backend)
                prefix = real.relative_to(candidate).as_posix()
                return bucket, "" if prefix == "." else prefix  # the bucket's own directory: no prefix
        return None

    @property
    def name(self) -> str:
        return self.paths.name

    @property
    def directory(self) -> Path:
        return self.paths.dir

    def path(self, key: str) -> Path:
        return self.paths.resolve(key)

    def writer(
        self, key: str, expected_size: int | None = None, *, md5: bool = False, checksum: bool = False
    ) -> DirectWriter:
        self.paths.resolve(key)  # refuse a bad key before any byte is written
        self._state_ready()
        temp = self.paths.tmp / f"{TEMP_PREFIX}{os.getpid()}.{secrets.token_hex(8)}"
        fd = create_new_file(temp, expected_size)
        writer = DirectWriter(self, key, temp, fd, md5, checksum)
        try:
            reservation = space_reservation(temp, fd, expected_size)
            if reservation is not None:
                # The size is this process's own, its stripes land anywhere: reserve it all.
                reservation.reserve_all()
        except BaseException:
            writer.discard()
            raise
        return writer

    def _state_ready(self) -> None:
        if not self.paths.tmp.is_dir():
            # The gateway makes a bucket's state directory; a process with its ids may too. A job
            # running as someone else gets EACCES here: the gateway must have written to the
            # bucket once (CreateBucket or any PUT does).
            prepare_state(self.paths.state)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the object, and the directories it leaves empty (as DeleteObject does)."""
        path = self.path(key)
        self._state_ready()
        with key_lock(self.paths.state, key):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            self.meta.remove(key)
        remove_empty_parents(self.paths, self.meta, path.parent)

    def size(self, key: str) -> int:
        """The object's size; FileNotFoundError when it is not a file."""
        path = self.path(key)
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(errno.ENOENT, "not an object", str(path))
        return st.st_size

    def list(self, prefix: str) -> Iterator[str]:
        """Keys of the files under the directory ``prefix`` names (``a/b/`` or ``a/b``)."""
        top = self.paths.dir / prefix.strip("/") if prefix.strip("/") else self.paths.dir
        for directory, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d != INTERNAL_DIR]
            for name in files:
                yield self.paths.key_of(Path(directory) / name)


def _is_bucket_dir(directory: Path) -> bool:
    # A bucket the gateway made carries its record (an xattr, or a file in the root's internal
    # directory); one it has written to has a state directory (``internal``).
    if (directory / INTERNAL_DIR / "tmp").is_dir() or bucket_state_dir(
        directory.parent, directory.name, directory
    ).is_dir():
        return True
    if directory.parent == directory or not directory.is_dir():
        return False
    try:
        os.getxattr(directory, BUCKET_XATTR)
        return True
    except OSError:
        return bucket_record_file(directory.parent, directory.name).is_file()


class DirectWriter:
    def __init__(self, bucket: DirectBucket, key: str, temp: Path, fd: int, md5: bool, checksum: bool) -> None:
        self.bucket = bucket
        self.key = key
        self.temp = temp
        self.fd: int | None = fd
        self.md5 = md5
        self.checksum = checksum
        self._hashers: dict[int, Hasher] = {}
        self._lock = threading.Lock()

    def _hasher(self, part: int) -> Hasher:
        with self._lock:
            if part not in self._hashers:
                self._hashers[part] = Hasher([CHECKSUM] if self.checksum else [], md5=self.md5)
            return self._hashers[part]

    def write_at(self, view: memoryview, offset: int, part: int) -> None:
        """Write ``view`` at ``offset``; the bytes of one part must arrive in order (one thread
        per part at a time), parts in any order."""
        if self.fd is None:
            raise OSError(errno.EBADF, "writer already committed or discarded")
        if self.md5 or self.checksum:
            write_hashed(self.fd, view, offset, self._hasher(part))
            return
        pwrite_all(self.fd, view, offset)  # nothing to hash: plain pwrite, the GIL released

    def commit(
        self,
        part_sizes: list[int],
        content_type: str = "application/octet-stream",
        *,
        fsync: bool = False,
        content_digest: bytes | None = None,
    ) -> ObjectRecord:
        """Publish the file as the object ``key`` (replacing what was there). ``content_digest``:
        a digest of the content the caller computed anyway (the ETag is made from it when no MD5
        is computed here; else the ETag is unique to this write)."""
        assert self.fd is not None
        size = sum(part_sizes)
        try:
            if fsync:
                os.fsync(self.fd)
            st = os.fstat(self.fd)
            if st.st_size != size:
                raise OSError(errno.EIO, f"{self.key}: wrote {st.st_size} bytes, expected {size}")
        except BaseException:
            self.discard()
            raise
        os.close(self.fd)
        self.fd = None
        digests = [self._hasher(i).digests() for i in range(len(part_sizes))]
        checksums: dict[str, str] = {}
        if self.checksum:
            checksums[CHECKSUM] = full_object_crc(CHECKSUM, [(d[CHECKSUM], n) for d, n in zip(digests, part_sizes)])
        if self.md5:
            etag = multipart_etag([d["MD5"] for d in digests]) if len(part_sizes) != 1 else digests[0]["MD5"].hex()
        else:
            # Not an MD5, and marked so as S3 marks such ETags (a -N suffix): no client checks a
            # body against it. From the caller's digest, else unique to this write.
            etag = f"{(content_digest or secrets.token_bytes(16)).hex()[:32]}-{max(1, len(part_sizes))}"
        record = ObjectRecord(
            etag=etag,
            size=size,
            mtime_ns=st.st_mtime_ns,
            content_type=content_type,
            checksums=checksums,
            checksum_type="FULL_OBJECT" if checksums else None,
            part_sizes=tuple(part_sizes) if self.md5 and len(part_sizes) > 1 else None,
        )
        try:
            publish_file(
                self.bucket.paths, self.bucket.meta, self.temp, self.key, record, None, WriteOptions(), fsync=fsync
            )
        except BaseException:
            discard(self.temp)
            raise
        return record

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        discard(self.temp)
