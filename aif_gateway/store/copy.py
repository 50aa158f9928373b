"""CopyObject on the filesystem: a kernel-side copy published like any write, or new metadata
in place when an object is copied onto itself.

The source stays open for the whole copy, so a concurrent overwrite of it cannot mix two
versions into the destination.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import S3Error
from .base import ObjectAttrs, ObjectInfo, WriteOptions
from .locks import key_lock
from .meta import EMPTY_MD5, MetaStore, ObjectRecord
from .paths import BucketPaths, is_dir_key
from .publish import check_body, check_conditions, copy_to_temp, discard, publish_dir_marker, publish_file, record_for
from .reader import FileReader, meta_key, object_info, open_object

__all__ = ["copy_object"]


def copy_object(
    src_bucket: BucketPaths,
    src_meta: MetaStore,
    src_key: str,
    dst_bucket: BucketPaths,
    dst_meta: MetaStore,
    dst_key: str,
    attrs: ObjectAttrs | None,
    options: WriteOptions,
    check_source: Callable[[ObjectInfo], None] | None,
    *,
    fsync: bool = False,
) -> ObjectInfo:
    """``base.Store.copy_object`` on the filesystem (blocking): ``attrs=None`` keeps the source's
    metadata and tags; ``attrs.tags=None`` keeps its tags."""
    dst_path = dst_bucket.resolve(dst_key)
    reader = open_object(src_bucket, src_meta, src_key)
    try:
        source = reader.info
        if check_source is not None:
            check_source(source)
        src_path = src_bucket.resolve(src_key)
        if src_path == dst_path and is_dir_key(src_key) == is_dir_key(dst_key):
            kept = attrs or ObjectAttrs(source.content_type, source.headers, source.user_meta)
            return _replace_metadata(dst_bucket, dst_meta, dst_key, dst_path, kept, options)
        if is_dir_key(dst_key) and source.size:
            raise S3Error("InvalidArgument", "A key ending in '/' is a directory marker and must be empty.")
        tags = src_meta.read_tags(reader.fileno(), meta_key(src_bucket, src_key, src_path))
        if attrs is not None and attrs.tags is not None:
            tags = attrs.tags
        return _publish_copy(reader, dst_bucket, dst_meta, dst_key, attrs, tags, options, fsync=fsync)
    finally:
        os.close(reader.fileno())


def _replace_metadata(
    bucket: BucketPaths, meta: MetaStore, key: str, path: Path, attrs: ObjectAttrs, options: WriteOptions
) -> ObjectInfo:
    """Copy onto itself: new metadata for the same bytes, no data copied."""
    mkey = meta_key(bucket, key, path)
    with key_lock(bucket.state, key):
        check_conditions(bucket, meta, key, path, options)
        current = object_info(bucket, meta, key, path)
        record = ObjectRecord(
            etag=current.etag,
            size=current.size,
            mtime_ns=current.mtime_ns,
            content_type=attrs.content_type or "application/octet-stream",
            headers=dict(attrs.headers),
            user_meta=dict(attrs.user_meta),
            checksums=current.checksums,
            checksum_type=current.checksum_type,
            part_sizes=current.part_sizes,
            dir_marker=current.is_dir_marker,
        )
        meta.write(path, mkey, record)
        if attrs.tags is not None:
            meta.write_tags(path, mkey, attrs.tags)
        return record.info(key, len(meta.read_tags(path, mkey)))


def _publish_copy(
    reader: FileReader,
    bucket: BucketPaths,
    meta: MetaStore,
    key: str,
    attrs: ObjectAttrs | None,
    tags: dict[str, str],
    options: WriteOptions,
    *,
    fsync: bool,
) -> ObjectInfo:
    source = reader.info
    # The bytes are the source's, so its ETag and checksums stay true without reading them,
    # unless the caller must verify the bytes or wants a checksum the source lacks.
    stored = sorted(options.hash_algorithms | set(source.checksums))
    must_hash = options.verify is not None or not options.hash_algorithms <= set(source.checksums)
    hashed = sorted(set(stored) | options.verify_algorithms) if must_hash else None
    temp = copy_to_temp(bucket, reader.fileno(), 0, source.size, hashed, fsync=fsync)
    described = attrs or ObjectAttrs(source.content_type, source.headers, source.user_meta)
    try:
        if hashed is not None:
            check_body(temp, options)
            record = record_for(temp, described, stored)
        else:
            record = ObjectRecord(
                etag=source.etag,
                size=temp.size,
                mtime_ns=temp.mtime_ns,
                content_type=described.content_type or "application/octet-stream",
                headers=dict(described.headers),
                user_meta=dict(described.user_meta),
                checksums=dict(source.checksums),
                checksum_type=source.checksum_type,
                part_sizes=source.part_sizes,
            )
        if is_dir_key(key):
            record = replace(record, dir_marker=True, etag=EMPTY_MD5)
            publish_dir_marker(bucket, meta, key, record, tags, options)
        else:
            publish_file(bucket, meta, temp.path, key, record, tags, options, fsync=fsync)
    finally:
        discard(temp.path)
    return record.info(key, len(tags))
