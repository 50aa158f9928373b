"""``FsStore``: the S3 storage interface over a POSIX directory tree.

A bucket is ``root/<name>`` or, for mapped buckets, any directory named in ``bucket_map`` (an HPC
tree exposed in place). An object is a regular file, its key the path relative to the bucket;
a key ending in ``/`` is a directory marker. Internal state lives in the gateway's own tree
(internal.py says where and why), metadata in xattrs or sidecars (meta.py), writes go through publish.py, reads
through reader.py; copies (copy.py), tags (tags.py) and multipart uploads (multipart.py) have
modules of their own. Every blocking call runs in a worker thread via ``oserrors.in_thread``, so
the event loop never waits on the disk, errno becomes an S3 error in one place, and the thread
holds the requesting user's POSIX ids (``base.CALLER``) while it works: the kernel decides what
the user may touch.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from ..errors import S3Error
from ..fsio.creds import as_gateway
from . import copy, listing
from .base import (
    CALLER,
    BucketInfo,
    ByteStream,
    CompletedPart,
    ExpectedObject,
    ListPage,
    ObjectAttrs,
    ObjectInfo,
    PartInfo,
    PartsPage,
    Store,
    UploadsPage,
    WriteOptions,
)
from .internal import STATE_LAYOUT, bucket_state_dir, check_dir, prepare_state
from .locks import key_lock
from .meta import (
    SIDECAR,
    MetaStore,
    bucket_record_file,
    info_for,
    meta_store_for,
    read_bucket_record,
    write_bucket_record,
)
from .multipart import MultipartUploads
from .oserrors import in_thread, s3_errors
from .paths import INTERNAL_DIR, BucketPaths, is_dir_key, open_parent_checked, validate_bucket_name
from .publish import (
    check_body,
    cleanup_stale_temp,
    discard,
    publish_dir_marker,
    publish_file,
    receive_body,
    record_for,
    remove_empty_parents,
)
from .reader import FileReader, meta_key, object_info, open_object
from .tags import read_tags, validate_tags, write_tags

__all__ = ["FsStore"]


def _any_entry(directory: Path, predicate: Callable[[os.DirEntry[str]], bool]) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(predicate(entry) for entry in entries)
    except FileNotFoundError:
        return False


class FsStore(Store):
    """``base.Store`` over the directory tree at ``root``; ``bucket_map`` names the mapped buckets."""

    def __init__(
        self,
        root: Path,
        bucket_map: dict[str, Path] | None = None,
        *,
        fsync: bool = False,
        meta_backend: str | None = None,
    ) -> None:
        """``meta_backend`` forces ``"xattr"`` or ``"sidecar"``; by default each bucket is probed."""
        self.root = Path(root)
        self.bucket_map = {name: Path(path) for name, path in (bucket_map or {}).items()}
        self.fsync = fsync
        self.meta_backend = meta_backend
        self._prepared: set[Path] = set()  # buckets whose internal dirs exist and temp was swept
        self._state_dirs: dict[tuple[str, Path], Path] = {}

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
        state = self._state_dirs.get((name, path))
        if state is None:
            state = self._state_dirs[(name, path)] = bucket_state_dir(self.root, name, path)
        return BucketPaths.at(name, path, state)

    def _meta(self, bucket: BucketPaths) -> MetaStore:
        return meta_store_for(bucket, self.meta_backend)

    def _writable(self, name: str) -> tuple[BucketPaths, MetaStore]:
        bucket = self._bucket(name)
        if bucket.dir in self._prepared:
            try:
                # Checked on every write: a state directory inside a bucket (a mapped bucket on
                # another filesystem) can be renamed away by anyone who may write the bucket.
                check_dir(bucket.state, STATE_LAYOUT[""])
                return bucket, self._meta(bucket)
            except FileNotFoundError:
                self._prepared.discard(bucket.dir)  # deleted with its bucket (by another process)
        with as_gateway():
            prepare_state(bucket.state)
            cleanup_stale_temp(bucket)
            MultipartUploads(bucket, self._meta(bucket)).cleanup_done_records()
        self._prepared.add(bucket.dir)
        return bucket, self._meta(bucket)

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
            path = self.root / name
            # The root is the gateway's: the directory is made with its ids, then given to the
            # caller, as if they had run mkdir there (same mode, their uid and primary group).
            with as_gateway():
                os.makedirs(self.root, exist_ok=True)
                try:
                    os.mkdir(path)
                except FileExistsError:
                    pass
                else:
                    try:
                        caller = CALLER.get()
                        if caller is not None:
                            os.chown(path, caller.uid, caller.gid, follow_symlinks=False)
                        write_bucket_record(self.root, name, path, owner, sidecar=self.meta_backend == SIDECAR)
                        # Made now, so that processes writing the tree directly (checkpoints)
                        # find it without being able to make it.
                        prepare_state(bucket_state_dir(self.root, name, path))
                    except BaseException:
                        os.rmdir(path)
                        raise
                    return
        existing = self._bucket_info(name, self._bucket(name).dir)
        if existing.owner == owner:
            raise S3Error("BucketAlreadyOwnedByYou", resource=name, extra={"BucketName": name})
        raise S3Error("BucketAlreadyExists", resource=name, extra={"BucketName": name})

    def _delete_bucket(self, name: str) -> None:
        if name in self.bucket_map:
            raise S3Error("MethodNotAllowed", "This bucket maps an existing directory; it cannot be deleted over S3.")
        bucket = self._bucket(name)
        caller = CALLER.get()
        if caller is not None and os.stat(bucket.dir).st_uid != caller.uid:
            raise S3Error("AccessDenied", "Access Denied: only the owner of the bucket's directory may delete it.")
        not_empty = S3Error("BucketNotEmpty", resource=name, extra={"BucketName": name})
        if _any_entry(bucket.dir, lambda entry: entry.name != INTERNAL_DIR):  # as the caller: EACCES if unreadable
            raise not_empty
        with as_gateway():
            if _any_entry(bucket.uploads, lambda entry: True):
                raise not_empty  # an upload in progress (each is a directory)
            try:
                os.rmdir(bucket.dir)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise not_empty from None  # an object arrived meanwhile: the state stays
                raise
            shutil.rmtree(bucket.state, ignore_errors=True)
            bucket_record_file(self.root, name).unlink(missing_ok=True)
        self._prepared.discard(bucket.dir)

    async def list_buckets(self) -> list[BucketInfo]:
        return await in_thread(self._list_buckets)

    async def create_bucket(self, bucket: str, owner: str) -> None:
        await in_thread(self._create_bucket, bucket, owner)

    async def head_bucket(self, bucket: str) -> BucketInfo:
        return await in_thread(lambda: self._bucket_info(bucket, self._bucket(bucket).dir))

    async def delete_bucket(self, bucket: str) -> None:
        await in_thread(self._delete_bucket, bucket)

    # -- object operations ------------------------------------------------------------------
    async def head_object(self, bucket: str, key: str) -> ObjectInfo:
        def head() -> ObjectInfo:
            b = self._bucket(bucket)
            return object_info(b, self._meta(b), key, b.resolve(key))

        return await in_thread(head)

    async def open_object(self, bucket: str, key: str) -> FileReader:
        def open_() -> FileReader:
            b = self._bucket(bucket)
            return open_object(b, self._meta(b), key)

        return await in_thread(open_)

    async def put_object(
        self, bucket: str, key: str, body: ByteStream, attrs: ObjectAttrs, options: WriteOptions
    ) -> ObjectInfo:
        if attrs.tags:
            validate_tags(attrs.tags)

        def prepare() -> tuple[BucketPaths, MetaStore]:
            b, meta = self._writable(bucket)
            b.resolve(key)  # reject a bad key before reading any of the body
            return b, meta

        b, meta = await in_thread(prepare)
        with s3_errors():  # the disk's errors (ENOSPC...); a client's own pass through
            temp = await receive_body(
                b, body, sorted(options.computed_algorithms), fsync=self.fsync, expected_size=options.expected_size
            )
        try:
            check_body(temp, options)
            record = record_for(temp, attrs, sorted(options.hash_algorithms))
            if is_dir_key(key):
                if temp.size:
                    raise S3Error("InvalidArgument", "A key ending in '/' is a directory marker and must be empty.")
                record = replace(record, dir_marker=True)
                await in_thread(publish_dir_marker, b, meta, key, record, attrs.tags, options)
            else:
                await in_thread(publish_file, b, meta, temp.path, key, record, attrs.tags, options, fsync=self.fsync)
        finally:
            await in_thread(discard, temp.path)
        return record.info(key, len(attrs.tags or {}))

    def _delete_object(self, bucket: str, key: str) -> None:
        b, meta = self._writable(bucket)
        path = b.resolve(key)
        mkey = meta_key(b, key, path)
        with key_lock(b.state, key):
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
                # Relative to a checked descriptor of its directory: a directory on the way
                # swapped for a symlink since ``resolve`` cannot send the unlink elsewhere.
                try:
                    parent_fd = open_parent_checked(str(b.dir), str(path))
                except (FileNotFoundError, NotADirectoryError):
                    return
                try:
                    if not stat.S_ISREG(os.stat(path.name, dir_fd=parent_fd, follow_symlinks=False).st_mode):
                        return
                    os.unlink(path.name, dir_fd=parent_fd)
                except (FileNotFoundError, NotADirectoryError):
                    return
                finally:
                    os.close(parent_fd)
            meta.remove(mkey)
            remove_empty_parents(b, meta, path.parent)

    async def delete_object(self, bucket: str, key: str) -> None:
        await in_thread(self._delete_object, bucket, key)

    async def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        attrs: ObjectAttrs | None,
        options: WriteOptions,
        check_source: Callable[[ObjectInfo], None] | None = None,
    ) -> ObjectInfo:
        if attrs is not None and attrs.tags:
            validate_tags(attrs.tags)

        def copy_() -> ObjectInfo:
            src_b = self._bucket(src_bucket)
            dst_b, dst_meta = self._writable(dst_bucket)
            return copy.copy_object(
                src_b,
                self._meta(src_b),
                src_key,
                dst_b,
                dst_meta,
                dst_key,
                attrs,
                options,
                check_source,
                fsync=self.fsync,
            )

        return await in_thread(copy_)

    # -- tags -------------------------------------------------------------------------------
    async def get_tags(self, bucket: str, key: str) -> dict[str, str]:
        def get() -> dict[str, str]:
            b = self._bucket(bucket)
            return read_tags(b, self._meta(b), key)

        return await in_thread(get)

    async def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        validate_tags(tags)
        await in_thread(self._write_tags, bucket, key, tags)

    async def delete_tags(self, bucket: str, key: str) -> None:
        await in_thread(self._write_tags, bucket, key, None)

    def _write_tags(self, bucket: str, key: str, tags: dict[str, str] | None) -> None:
        b, meta = self._writable(bucket)
        write_tags(b, meta, key, tags)

    # -- listing ----------------------------------------------------------------------------
    def _list_objects(self, bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int) -> ListPage:
        b = self._bucket(bucket)
        meta = self._meta(b)

        def info(path: Path, key: str, st: os.stat_result) -> ObjectInfo | None:
            mkey = key
            if meta.backend == SIDECAR:
                mkey = meta_key(b, key, Path(os.path.realpath(path)))
            if is_dir_key(key):
                record = meta.read(path, mkey) if stat.S_ISDIR(st.st_mode) else None
                return record.info(key) if record is not None and record.dir_marker else None
            if not stat.S_ISREG(st.st_mode):
                return None
            return info_for(key, st, meta.read(path, mkey))

        return listing.list_objects(
            b.dir,
            prefix=prefix,
            delimiter=delimiter,
            start_after=start_after,
            max_keys=max_keys,
            info_for=info,
            describe_files=meta.describe_listed,
        )

    async def list_objects(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "", max_keys: int = 1000
    ) -> ListPage:
        return await in_thread(self._list_objects, bucket, prefix, delimiter, start_after, max_keys)

    # -- multipart operations (multipart.py) --------------------------------------------------
    async def _uploads(self, bucket: str) -> MultipartUploads:
        def uploads() -> MultipartUploads:
            b, meta = self._writable(bucket)
            return MultipartUploads(b, meta, fsync=self.fsync)

        return await in_thread(uploads)

    async def create_multipart(
        self,
        bucket: str,
        key: str,
        attrs: ObjectAttrs,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
        owner: str | None = None,
    ) -> str:
        if attrs.tags:
            validate_tags(attrs.tags)
        uploads = await self._uploads(bucket)
        return await uploads.create(key, attrs, checksum_algorithm, checksum_type, owner)

    @asynccontextmanager
    async def _upload(self, bucket: str, upload_id: str) -> AsyncIterator[MultipartUploads]:
        """The bucket's uploads, for a call on upload ``upload_id``.

        A caller acting with the gateway's own ids (a user without POSIX ids) acts on a user's
        upload with that user's ids: the upload's directory is its owner's to rearrange, so
        whatever it names is reached with no more than its owner's rights."""
        uploads = await self._uploads(bucket)
        owner = await in_thread(uploads.state.owner_ids, upload_id) if CALLER.get() is None else None
        token = CALLER.set(owner) if owner is not None else None
        try:
            yield uploads
        finally:
            if token is not None:
                CALLER.reset(token)

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: ByteStream, options: WriteOptions
    ) -> PartInfo:
        async with self._upload(bucket, upload_id) as uploads:
            return await uploads.upload_part(key, upload_id, part_number, body, options)

    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        src_bucket: str,
        src_key: str,
        src_range: tuple[int, int] | None,
        check_source: Callable[[ObjectInfo], None] | None = None,
    ) -> PartInfo:
        async with self._upload(bucket, upload_id) as uploads:
            source = await self.open_object(src_bucket, src_key)
            try:
                return await uploads.upload_part_copy(key, upload_id, part_number, source, src_range, check_source)
            finally:
                await source.close()

    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        options: WriteOptions,
        expected: ExpectedObject = ExpectedObject(),
    ) -> ObjectInfo:
        async with self._upload(bucket, upload_id) as uploads:
            return await uploads.complete(key, upload_id, parts, options, expected)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        async with self._upload(bucket, upload_id) as uploads:
            await uploads.abort(key, upload_id)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int = 0, max_parts: int = 1000
    ) -> PartsPage:
        async with self._upload(bucket, upload_id) as uploads:
            return await uploads.list_parts(key, upload_id, part_number_marker, max_parts)

    async def list_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> UploadsPage:
        uploads = await self._uploads(bucket)
        return await uploads.list_uploads(
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            upload_id_marker=upload_id_marker,
            max_uploads=max_uploads,
        )
