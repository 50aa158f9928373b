"""``FsStore``: the S3 storage interface over a POSIX directory tree.

A bucket is ``root/<name>`` or, for mapped buckets, any directory named in ``bucket_map`` (an HPC
tree exposed in place). An object is a regular file, its key the path relative to the bucket;
a key ending in ``/`` is a directory marker. Internal state lives in ``<bucket>/.aifgw/``
(paths.py), metadata in xattrs or sidecars (meta.py), writes go through publish.py, and every
blocking call runs in a worker thread so the event loop never waits on the disk.

Public API: ``FsStore(root, bucket_map=None, *, fsync=False, meta_backend=None)`` implementing
``base.Store``; ``validate_tags(tags) -> None`` (S3 tag limits, ``InvalidTag``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from ..errors import S3Error
from . import listing
from .base import (
    BucketInfo, ByteStream, CompletedPart, ListPage, ObjectAttrs, ObjectInfo, PartInfo, PartsPage,
    Store, UploadsPage, WriteOptions,
)
from .locks import key_lock
from .meta import (
    EMPTY_MD5, SIDECAR, MetaStore, ObjectRecord, bucket_record_file, info_for, meta_store_for, read_bucket_record,
    write_bucket_record,
)
from .multipart import MultipartUploads
from .paths import INTERNAL_DIR, BucketPaths, is_dir_key, open_checked, validate_bucket_name
from .publish import (
    check_body, check_conditions, cleanup_stale_temp, copy_to_temp, discard, publish_dir_marker,
    publish_file, receive_body, record_for, remove_empty_parents,
)
from .reader import FileReader

MAX_TAGS = 10
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256


def validate_tags(tags: dict[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise S3Error("InvalidTag", f"Object tags cannot be greater than {MAX_TAGS}")
    for tag_key, value in tags.items():
        if not 1 <= len(tag_key) <= MAX_TAG_KEY:
            raise S3Error("InvalidTag", f"The TagKey you have provided is invalid: 1 to {MAX_TAG_KEY} characters.")
        if len(value) > MAX_TAG_VALUE:
            raise S3Error("InvalidTag", f"The TagValue you have provided is invalid: at most {MAX_TAG_VALUE} characters.")
        if tag_key.startswith("aws:"):
            raise S3Error("InvalidTag", "Your TagKey cannot be prefixed with aws:")


T = TypeVar("T")

# errno -> (S3 code, message): the one place where filesystem failures become S3 errors.
_ERRNO_ERRORS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("AccessDenied", "Access Denied: the gateway may not access this path on the filesystem."),
    errno.EPERM: ("AccessDenied", "Access Denied: the gateway may not access this path on the filesystem."),
    errno.EROFS: ("AccessDenied", "Access Denied: this part of the filesystem is read-only."),
    errno.ENAMETOOLONG: ("KeyTooLongError", "The key is too long for the underlying filesystem."),
    errno.ENOSPC: ("InternalError", "The storage filesystem is full."),
    errno.EDQUOT: ("InternalError", "The storage quota of the gateway is exhausted."),
}


def _translated(exc: OSError) -> BaseException:
    mapped = _ERRNO_ERRORS.get(exc.errno or 0)
    return S3Error(*mapped) if mapped is not None else exc


async def _in_thread(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run blocking filesystem work off the event loop, translating errno into S3 errors."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except OSError as exc:
        raise _translated(exc) from exc


def _any_entry(directory: Path, predicate: Callable[[os.DirEntry[str]], bool]) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(predicate(entry) for entry in entries)
    except FileNotFoundError:
        return False


def _no_such_key(key: str) -> S3Error:
    return S3Error("NoSuchKey", resource=key, extra={"Key": key})


class FsStore(Store):
    def __init__(
        self, root: Path, bucket_map: dict[str, Path] | None = None, *, fsync: bool = False,
        meta_backend: str | None = None,
    ) -> None:
        """``meta_backend`` forces ``"xattr"`` or ``"sidecar"``; by default each bucket is probed."""
        self.root = Path(root)
        self.bucket_map = {name: Path(path) for name, path in (bucket_map or {}).items()}
        self.fsync = fsync
        self.meta_backend = meta_backend
        self._prepared: set[Path] = set()  # buckets whose internal dirs exist and temp was swept

    # -- helpers (blocking) -----------------------------------------------------------------
    def _bucket(self, name: str) -> BucketPaths:
        if name in self.bucket_map:
            path = self.bucket_map[name]
        else:
            try:
                validate_bucket_name(name)
            except S3Error:
                raise S3Error("NoSuchBucket", resource=name, extra={"BucketName": name}) from None
            path = self.root / name
        if not path.is_dir():
            raise S3Error("NoSuchBucket", resource=name, extra={"BucketName": name})
        return BucketPaths.at(name, path)

    def _meta(self, bucket: BucketPaths) -> MetaStore:
        return meta_store_for(bucket, self.meta_backend)

    def _writable(self, name: str) -> tuple[BucketPaths, MetaStore]:
        bucket = self._bucket(name)
        if bucket.dir not in self._prepared:
            bucket.ensure_internal()
            meta = self._meta(bucket)
            cleanup_stale_temp(bucket.dir)
            MultipartUploads(bucket, meta).cleanup_done_records()
            self._prepared.add(bucket.dir)
            return bucket, meta
        return bucket, self._meta(bucket)

    @staticmethod
    def _meta_key(bucket: BucketPaths, key: str, path: Path) -> str:
        """Sidecars are keyed by the resolved path, so a key reached through a symlink shares them."""
        return bucket.key_of(path) + ("/" if is_dir_key(key) else "")

    def _info(self, bucket: BucketPaths, meta: MetaStore, key: str, path: Path, fd: int | None = None) -> ObjectInfo:
        try:
            st = os.fstat(fd) if fd is not None else os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise _no_such_key(key) from None
        target = fd if fd is not None else path
        mkey = self._meta_key(bucket, key, path)
        if is_dir_key(key):
            record = meta.read(target, mkey) if stat.S_ISDIR(st.st_mode) else None
            if record is None or not record.dir_marker:
                raise _no_such_key(key)
            return record.info(key, len(meta.read_tags(target, mkey)))
        if not stat.S_ISREG(st.st_mode):
            raise _no_such_key(key)
        return info_for(key, st, meta.read(target, mkey), len(meta.read_tags(target, mkey)))

    def _open(self, bucket: BucketPaths, meta: MetaStore, key: str) -> FileReader:
        path = bucket.resolve(key)
        flags = os.O_RDONLY | os.O_NONBLOCK  # O_NONBLOCK: a FIFO in the tree must not hang us
        try:
            fd = open_checked(str(bucket.dir), str(path), flags)
        except (FileNotFoundError, NotADirectoryError):
            raise _no_such_key(key) from None
        try:
            return FileReader(fd, self._info(bucket, meta, key, path, fd))
        except BaseException:
            os.close(fd)
            raise

    # -- bucket operations ------------------------------------------------------------------
    def _bucket_info(self, name: str, path: Path) -> BucketInfo:
        owner, created_ns = read_bucket_record(self.root, name, path)
        return BucketInfo(name=name, created_ns=created_ns, owner=owner)

    def _list_buckets(self) -> list[BucketInfo]:
        found = {name: path for name, path in self.bucket_map.items() if path.is_dir()}
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name in found or not entry.is_dir():
                continue
            try:
                validate_bucket_name(entry.name)
            except S3Error:
                continue  # not a bucket: hidden state, or a directory S3 could not name
            found[entry.name] = Path(entry.path)
        return [self._bucket_info(name, found[name]) for name in sorted(found)]

    def _create_bucket(self, name: str, owner: str) -> None:
        if name not in self.bucket_map:
            validate_bucket_name(name)
            os.makedirs(self.root, exist_ok=True)
            try:
                os.mkdir(self.root / name)
            except FileExistsError:
                pass
            else:
                write_bucket_record(self.root, name, self.root / name, owner, sidecar=self.meta_backend == SIDECAR)
                return
        existing = self._bucket_info(name, self._bucket(name).dir)
        if existing.owner == owner:
            raise S3Error("BucketAlreadyOwnedByYou", resource=name, extra={"BucketName": name})
        raise S3Error("BucketAlreadyExists", resource=name, extra={"BucketName": name})

    def _delete_bucket(self, name: str) -> None:
        if name in self.bucket_map:
            raise S3Error("MethodNotAllowed", "This bucket maps an existing directory; it cannot be deleted over S3.")
        bucket = self._bucket(name)
        not_empty = S3Error("BucketNotEmpty", resource=name, extra={"BucketName": name})
        if _any_entry(bucket.dir, lambda entry: entry.name != INTERNAL_DIR):
            raise not_empty
        if _any_entry(bucket.uploads, lambda entry: entry.is_dir()):
            raise not_empty  # an upload in progress (each is a directory)
        shutil.rmtree(bucket.internal, ignore_errors=True)
        try:
            os.rmdir(bucket.dir)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise not_empty from None  # an object arrived meanwhile
            raise
        bucket_record_file(self.root, name).unlink(missing_ok=True)
        self._prepared.discard(bucket.dir)

    async def list_buckets(self) -> list[BucketInfo]:
        return await _in_thread(self._list_buckets)

    async def create_bucket(self, bucket: str, owner: str) -> None:
        await _in_thread(self._create_bucket, bucket, owner)

    async def head_bucket(self, bucket: str) -> BucketInfo:
        return await _in_thread(lambda: self._bucket_info(bucket, self._bucket(bucket).dir))

    async def delete_bucket(self, bucket: str) -> None:
        await _in_thread(self._delete_bucket, bucket)

    # -- object operations ------------------------------------------------------------------
    async def head_object(self, bucket: str, key: str) -> ObjectInfo:
        def head() -> ObjectInfo:
            b = self._bucket(bucket)
            return self._info(b, self._meta(b), key, b.resolve(key))

        return await _in_thread(head)

    async def open_object(self, bucket: str, key: str) -> FileReader:
        def open_() -> FileReader:
            b = self._bucket(bucket)
            return self._open(b, self._meta(b), key)

        return await _in_thread(open_)

    async def put_object(
        self, bucket: str, key: str, body: ByteStream, attrs: ObjectAttrs, options: WriteOptions
    ) -> ObjectInfo:
        if attrs.tags:
            validate_tags(attrs.tags)

        def prepare() -> tuple[BucketPaths, MetaStore]:
            b, meta = self._writable(bucket)
            b.resolve(key)  # reject a bad key before reading any of the body
            return b, meta

        b, meta = await _in_thread(prepare)
        algorithms = sorted(options.hash_algorithms)
        try:
            temp = await receive_body(b, body, algorithms, fsync=self.fsync)
        except OSError as exc:  # the disk's errors (ENOSPC...); a client's own pass through
            raise _translated(exc) from exc
        try:
            check_body(temp, options)
            record = record_for(temp, attrs, algorithms)
            if is_dir_key(key):
                if temp.size:
                    raise S3Error("InvalidArgument", "A key ending in '/' is a directory marker and must be empty.")
                record = replace(record, dir_marker=True)
                await _in_thread(publish_dir_marker, b, meta, key, record, attrs.tags, options)
            else:
                await _in_thread(
                    publish_file, b, meta, temp.path, key, record, attrs.tags, options, fsync=self.fsync
                )
        finally:
            await _in_thread(discard, temp.path)
        return record.info(key, len(attrs.tags or {}))

    def _delete_object(self, bucket: str, key: str) -> None:
        b = self._bucket(bucket)
        meta = self._meta(b)
        path = b.resolve(key)
        mkey = self._meta_key(b, key, path)
        with key_lock(b.internal, key):
            if is_dir_key(key):
                record = meta.read(path, mkey) if path.is_dir() else None
                if record is None or not record.dir_marker:
                    return
                try:
                    os.rmdir(path)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    meta.remove(mkey, target=path)  # keep the directory: other keys live in it
                    return
            else:
                try:
                    if not stat.S_ISREG(os.stat(path).st_mode):
                        return
                    os.unlink(path)
                except (FileNotFoundError, NotADirectoryError):
                    return
            meta.remove(mkey)
            remove_empty_parents(b, meta, path.parent)

    async def delete_object(self, bucket: str, key: str) -> None:
        await _in_thread(self._delete_object, bucket, key)

    def _replace_metadata(
        self, b: BucketPaths, meta: MetaStore, key: str, path: Path, attrs: ObjectAttrs, options: WriteOptions
    ) -> ObjectInfo:
        """Copy onto itself: new metadata for the same bytes, no data copied."""
        mkey = self._meta_key(b, key, path)
        with key_lock(b.internal, key):
            check_conditions(b, meta, key, path, options)
            current = self._info(b, meta, key, path)
            record = ObjectRecord(
                etag=current.etag, size=current.size, mtime_ns=current.mtime_ns,
                content_type=attrs.content_type or "application/octet-stream",
                headers=dict(attrs.headers), user_meta=dict(attrs.user_meta),
                checksums=current.checksums, checksum_type=current.checksum_type,
                part_sizes=current.part_sizes, dir_marker=current.is_dir_marker,
            )
            meta.write(path, mkey, record)
            if attrs.tags is not None:
                meta.write_tags(path, mkey, attrs.tags)
            return record.info(key, len(meta.read_tags(path, mkey)))

    def _copy_object(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, attrs: ObjectAttrs | None,
        options: WriteOptions, check_source: Callable[[ObjectInfo], None] | None,
    ) -> ObjectInfo:
        src_b = self._bucket(src_bucket)
        src_meta = self._meta(src_b)
        dst_b, dst_meta = self._writable(dst_bucket)
        dst_path = dst_b.resolve(dst_key)
        reader = self._open(src_b, src_meta, src_key)
        try:
            source = reader.info
            if check_source is not None:
                check_source(source)
            src_path = src_b.resolve(src_key)
            if src_path == dst_path and is_dir_key(src_key) == is_dir_key(dst_key):
                kept = attrs or ObjectAttrs(source.content_type, source.headers, source.user_meta)
                return self._replace_metadata(dst_b, dst_meta, dst_key, dst_path, kept, options)
            if is_dir_key(dst_key) and source.size:
                raise S3Error("InvalidArgument", "A key ending in '/' is a directory marker and must be empty.")
            src_mkey = self._meta_key(src_b, src_key, src_path)
            tags = src_meta.read_tags(reader.fileno(), src_mkey)
            if attrs is not None and attrs.tags is not None:
                tags = attrs.tags
            return self._publish_copy(reader, dst_b, dst_meta, dst_key, attrs, tags, options)
        finally:
            os.close(reader.fileno())

    def _publish_copy(
        self, reader: FileReader, b: BucketPaths, meta: MetaStore, key: str, attrs: ObjectAttrs | None,
        tags: dict[str, str], options: WriteOptions,
    ) -> ObjectInfo:
        source = reader.info
        # The bytes are the source's, so its ETag and checksums stay true without reading them,
        # unless the caller must verify the bytes or wants a checksum the source lacks.
        wanted = set(options.hash_algorithms) | set(source.checksums)
        must_hash = options.verify is not None or not set(options.hash_algorithms) <= set(source.checksums)
        algorithms = sorted(wanted) if must_hash else None
        temp = copy_to_temp(b, reader.fileno(), 0, source.size, algorithms, fsync=self.fsync)
        described = attrs or ObjectAttrs(source.content_type, source.headers, source.user_meta)
        try:
            if algorithms is not None:
                check_body(temp, options)
                record = record_for(temp, described, algorithms)
            else:
                record = ObjectRecord(
                    etag=source.etag, size=temp.size, mtime_ns=temp.mtime_ns,
                    content_type=described.content_type or "application/octet-stream",
                    headers=dict(described.headers), user_meta=dict(described.user_meta),
                    checksums=dict(source.checksums), checksum_type=source.checksum_type,
                    part_sizes=source.part_sizes,
                )
            if is_dir_key(key):
                record = replace(record, dir_marker=True, etag=EMPTY_MD5)
                publish_dir_marker(b, meta, key, record, tags, options)
            else:
                publish_file(b, meta, temp.path, key, record, tags, options, fsync=self.fsync)
        finally:
            discard(temp.path)
        return record.info(key, len(tags))

    async def copy_object(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, attrs: ObjectAttrs | None,
        options: WriteOptions, check_source: Callable[[ObjectInfo], None] | None = None,
    ) -> ObjectInfo:
        if attrs is not None and attrs.tags:
            validate_tags(attrs.tags)
        return await _in_thread(
            self._copy_object, src_bucket, src_key, dst_bucket, dst_key, attrs, options, check_source
        )

    # -- tags -------------------------------------------------------------------------------
    def _with_object(
        self, bucket: str, key: str, action: Callable[[MetaStore, Path, str], T], *, lock: bool
    ) -> T:
        """``action(meta, path, meta_key)`` on an existing object (NoSuchKey otherwise); writers
        hold the key lock so the object cannot be replaced between the check and the action."""
        b = self._bucket(bucket)
        meta = self._meta(b)
        path = b.resolve(key)
        with key_lock(b.internal, key) if lock else nullcontext():
            self._info(b, meta, key, path)
            return action(meta, path, self._meta_key(b, key, path))

    async def get_tags(self, bucket: str, key: str) -> dict[str, str]:
        return await _in_thread(self._with_object, bucket, key, lambda m, p, k: m.read_tags(p, k), lock=False)

    async def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        validate_tags(tags)
        await _in_thread(self._with_object, bucket, key, lambda m, p, k: m.write_tags(p, k, tags), lock=True)

    async def delete_tags(self, bucket: str, key: str) -> None:
        await _in_thread(self._with_object, bucket, key, lambda m, p, k: m.write_tags(p, k, None), lock=True)

    # -- listing ----------------------------------------------------------------------------
    def _list_objects(self, bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int) -> ListPage:
        b = self._bucket(bucket)
        meta = self._meta(b)

        def info(path: Path, key: str, st: os.stat_result) -> ObjectInfo | None:
            mkey = key
            if meta.backend == SIDECAR:
                mkey = self._meta_key(b, key, Path(os.path.realpath(path)))
            if is_dir_key(key):
                record = meta.read(path, mkey) if stat.S_ISDIR(st.st_mode) else None
                return record.info(key) if record is not None and record.dir_marker else None
            if not stat.S_ISREG(st.st_mode):
                return None
            return info_for(key, st, meta.read(path, mkey))

        return listing.list_objects(
            b.dir, prefix=prefix, delimiter=delimiter, start_after=start_after, max_keys=max_keys, info_for=info
        )

    async def list_objects(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "", max_keys: int = 1000
    ) -> ListPage:
        return await _in_thread(self._list_objects, bucket, prefix, delimiter, start_after, max_keys)

    # -- multipart operations (multipart.py) --------------------------------------------------
    async def _uploads(self, bucket: str) -> MultipartUploads:
        def uploads() -> MultipartUploads:
            b, meta = self._writable(bucket)
            return MultipartUploads(b, meta, fsync=self.fsync)

        return await _in_thread(uploads)

    async def create_multipart(
        self, bucket: str, key: str, attrs: ObjectAttrs, checksum_algorithm: str | None = None,
        checksum_type: str | None = None, owner: str | None = None,
    ) -> str:
        if attrs.tags:
            validate_tags(attrs.tags)
        uploads = await self._uploads(bucket)
        return await uploads.create(key, attrs, checksum_algorithm, checksum_type, owner)

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: ByteStream, options: WriteOptions,
    ) -> PartInfo:
        uploads = await self._uploads(bucket)
        return await uploads.upload_part(key, upload_id, part_number, body, options)

    async def upload_part_copy(
        self, bucket: str, key: str, upload_id: str, part_number: int, src_bucket: str, src_key: str,
        src_range: tuple[int, int] | None, check_source: Callable[[ObjectInfo], None] | None = None,
    ) -> PartInfo:
        uploads = await self._uploads(bucket)
        source = await self.open_object(src_bucket, src_key)
        try:
            return await uploads.upload_part_copy(key, upload_id, part_number, source, src_range, check_source)
        finally:
            await source.close()

    async def complete_multipart(
        self, bucket: str, key: str, upload_id: str, parts: list[CompletedPart], options: WriteOptions,
    ) -> ObjectInfo:
        uploads = await self._uploads(bucket)
        return await uploads.complete(key, upload_id, parts, options)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        uploads = await self._uploads(bucket)
        await uploads.abort(key, upload_id)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int = 0, max_parts: int = 1000,
    ) -> PartsPage:
        uploads = await self._uploads(bucket)
        return await uploads.list_parts(key, upload_id, part_number_marker, max_parts)

    async def list_uploads(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
        upload_id_marker: str = "", max_uploads: int = 1000,
    ) -> UploadsPage:
        uploads = await self._uploads(bucket)
        return await uploads.list_uploads(
            prefix=prefix, delimiter=delimiter, key_marker=key_marker, upload_id_marker=upload_id_marker,
            max_uploads=max_uploads,
        )
