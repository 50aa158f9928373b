"""Object metadata: one compact JSON record per object, in an xattr or in a sidecar file.

Why a record is bound to (size, mtime_ns): HPC jobs rewrite files in place without telling the
gateway. A record whose size or mtime no longer matches the file describes bytes that are gone,
so the file is then served as a *foreign* file. Foreign ETags are ``xxh3_128(key, size,
mtime_ns)`` in hex plus ``-1``: stable while the file is unchanged, different after a rewrite,
cheap (no read of the data), and containing ``-`` so no client mistakes it for an MD5 and tries
to verify the body against it.

Backends: ``xattr`` stores the record in ``user.aifgw.meta`` (tags in ``user.aifgw.tags``) on
the file itself; set on the temp file before the rename, data and metadata appear together.
``sidecar`` (filesystems without user xattrs, or forced with ``AIF_META_BACKEND=sidecar``)
stores ``meta/<key>.json`` and ``tags/<key>.json`` in the bucket's state directory, written atomically
under the key lock just before the publish rename; a directory marker ``a/`` uses
``meta/a/.json`` (no object key can map there: a file's sidecar name is never just ``.json``).
A segment too long to take the ``.json`` suffix is replaced by a hash of itself. An xattr value
too large for the filesystem (ext4 allows about 4 KiB per inode in all; ten maximal tags alone
approach that) goes to a content-addressed blob in the state's ``blobs/`` with a pointer in the xattr.
"""

from __future__ import annotations

import errno
import json
import mimetypes
import os
import secrets
import stat
import threading
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import xxhash

from ..errors import S3Error
from ..fsio.creds import as_gateway
from ..fsio.engine import stat_entries
from .base import ObjectInfo
from .paths import INTERNAL_DIR, MAX_SEGMENT_BYTES, BucketPaths
from .record_checks import MAX_RECORD_BYTES, valid_blob_name, valid_object_record, valid_tags

__all__ = [
    "BACKEND_ENV",
    "BUCKET_XATTR",
    "EMPTY_MD5",
    "META_XATTR",
    "MetaStore",
    "ObjectRecord",
    "SIDECAR",
    "XATTR",
    "bucket_record_file",
    "decode_tags",
    "foreign_etag",
    "guess_content_type",
    "info_for",
    "listed_info",
    "listed_object",
    "meta_store_for",
    "read_bucket_record",
    "write_bucket_record",
]

META_XATTR = "user.aifgw.meta"
TAGS_XATTR = "user.aifgw.tags"
BUCKET_XATTR = "user.aifgw.bucket"
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
BACKEND_ENV = "AIF_META_BACKEND"
XATTR, SIDECAR = "xattr", "sidecar"

# setxattr errors meaning "this filesystem (or mount) has no user xattrs".
_NO_XATTR = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}
# getxattr errors meaning "no record": absent, or unreadable for this process.
_NO_RECORD = {errno.ENODATA, errno.EACCES, *_NO_XATTR}

Target = int | Path | str
_BLOB_POINTER = b"@blob:"  # an xattr value that is not JSON: the record lives in the state's blobs/


@dataclass(frozen=True)
class ObjectRecord:
    """What the gateway knows about an object it wrote."""

    etag: str
    size: int
    mtime_ns: int
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    checksum_type: str | None = None
    part_sizes: tuple[int, ...] | None = None
    dir_marker: bool = False

    def encode(self) -> bytes:
        """The compact JSON that ``decode`` reads back."""
        data = {k: v for k, v in asdict(self).items() if not (v is None or v is False or v == {})}
        if self.part_sizes is not None:
            # Run-length encoded: 10,000 parts of equal size must still fit in one xattr.
            data["part_sizes"] = _run_length(self.part_sizes)
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, data: bytes) -> ObjectRecord | None:
        """The record, or None when ``data`` is no record the gateway could have written
        (corrupt, from an incompatible version, or forged: ``record_checks``); the file is
        then foreign."""
        raw = _checked_record(data)
        if raw is None:
            return None
        parts = raw.pop("part_sizes", None)
        if parts is not None:
            # Checked first: at most MAX_PARTS entries.
            raw["part_sizes"] = tuple(size for size, count in parts for _ in range(count))
        return cls(**raw)

    def matches(self, st: os.stat_result) -> bool:
        """The record still describes the file ``st``: same size and mtime_ns, or a directory marker."""
        # A directory's mtime changes with its children, so markers are not bound to it.
        return self.dir_marker or (self.size == st.st_size and self.mtime_ns == st.st_mtime_ns)

    def info(self, key: str, tag_count: int = 0) -> ObjectInfo:
        """The object ``key`` as this record describes it."""
        return ObjectInfo(
            key=key,
            size=self.size,
            mtime_ns=self.mtime_ns,
            etag=self.etag,
            content_type=self.content_type,
            headers=dict(self.headers),
            user_meta=dict(self.user_meta),
            checksums=dict(self.checksums),
            checksum_type=self.checksum_type,
            part_sizes=self.part_sizes,
            tag_count=tag_count,
            is_dir_marker=self.dir_marker,
        )


def _run_length(values: tuple[int, ...]) -> list[list[int]]:
    runs: list[list[int]] = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return runs


def foreign_etag(key: str, st: os.stat_result) -> str:
    return _foreign_etag(key, st.st_size, st.st_mtime_ns)


def _foreign_etag(key: str, size: int, mtime_ns: int) -> str:
    return xxhash.xxh3_128_hexdigest(f"{size}:{mtime_ns}:{key}".encode("utf-8", "surrogateescape")) + "-1"


def guess_content_type(key: str) -> str:
    return mimetypes.guess_type(key, strict=False)[0] or "application/octet-stream"


def info_for(key: str, st: os.stat_result, record: ObjectRecord | None, tag_count: int = 0) -> ObjectInfo:
    """The record's view when it still matches the file ``st``, else the foreign-file view
    (``foreign_etag``, ``guess_content_type``)."""
    if record is not None and record.matches(st):
        return record.info(key, tag_count)
    return ObjectInfo(
        key=key,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        etag=foreign_etag(key, st),
        content_type=guess_content_type(key),
        tag_count=tag_count,
    )


_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # C scanner, untyped in typeshed
_FIELDS = frozenset(f.name for f in fields(ObjectRecord))
_REQUIRED = frozenset(f.name for f in fields(ObjectRecord) if f.default is MISSING and f.default_factory is MISSING)


def _parse(data: bytes) -> Any:
    try:
        # The C scanner behind json.loads, minus its layers (encoding detection, whitespace
        # regexes): half the cost. Records are compact; anything else takes the slow path.
        text = data.decode()
        raw, end = _scan_json(text, 0)
        if end == len(text):
            return raw
    except (ValueError, StopIteration, RecursionError):  # RecursionError: [[[[... nested past the stack
        pass
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _checked_record(data: bytes) -> dict[str, Any] | None:
    """The decoded JSON of a record ``ObjectRecord.decode`` accepts, else None.

    ``decode`` goes on to build a frozen dataclass and expand ``part_sizes`` (up to 10,000
    entries), which a listing needs neither of: it stops here (``listed_info``).
    """
    if len(data) > MAX_RECORD_BYTES:
        return None
    raw = _parse(data)
    if type(raw) is not dict or not (_REQUIRED <= raw.keys() <= _FIELDS) or not valid_object_record(raw):
        return None
    return raw


_new_object = object.__new__
_INFO_DEFAULTS = {f.name: f.default for f in fields(ObjectInfo) if f.default is not MISSING}


def listed_object(
    key: str,
    size: int,
    mtime_ns: int,
    etag: str,
    checksums: dict[str, str] | None = None,
    checksum_type: str | None = None,
    is_dir_marker: bool = False,
) -> ObjectInfo:
    """``ObjectInfo(key=..., ...)`` with these fields and every other at its default, in about
    a third of the time.

    The frozen dataclass's ``__init__`` sets each of its twelve fields through
    ``object.__setattr__``, which made it the largest single cost of a listed key; filling the
    new instance's ``__dict__`` in one update makes an equal object
    (tests/unit/store/test_listing_meta.py holds it to the constructor, field by field).
    """
    info = _new_object(ObjectInfo)
    info.__dict__.update(
        _INFO_DEFAULTS,
        headers={},
        user_meta={},
        key=key,
        size=size,
        mtime_ns=mtime_ns,
        etag=etag,
        checksums=checksums or {},
        checksum_type=checksum_type,
        is_dir_marker=is_dir_marker,
    )
    return info


def listed_info(key: str, size: int, mtime_ns: int, data: bytes | None) -> ObjectInfo:
    """What a listing shows of a regular file of ``size`` and ``mtime_ns`` with record ``data``.

    Equal to ``info_for(key, st, ObjectRecord.decode(data))`` in every field a listing shows
    (key, size, mtime_ns, etag, checksums, checksum_type, is_dir_marker); content type,
    headers and user metadata are left at their defaults, since S3 lists none of them and
    guessing a foreign file's type would cost more than everything else.
    """
    raw = _checked_record(data) if data else None
    if raw is not None and (raw.get("dir_marker") or (raw["size"] == size and raw["mtime_ns"] == mtime_ns)):
        return listed_object(
            key,
            raw["size"],
            raw["mtime_ns"],
            raw["etag"],
            raw.get("checksums"),
            raw.get("checksum_type"),
            raw.get("dir_marker", False),
        )
    return listed_object(key, size, mtime_ns, _foreign_etag(key, size, mtime_ns))


def decode_tags(data: bytes | None) -> dict[str, str]:
    """A stored tag set; none when it is not one the gateway could have written."""
    if not data or len(data) > MAX_RECORD_BYTES:
        return {}
    try:
        tags = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return tags if valid_tags(tags) else {}


def _encode_tags(tags: dict[str, str]) -> bytes:
    return json.dumps(tags, separators=(",", ":"), ensure_ascii=False).encode()


def _get_xattr(target: Target, name: str) -> bytes | None:
    try:
        return os.getxattr(target, name)
    except OSError as exc:
        if exc.errno in _NO_RECORD or exc.errno == errno.ENOENT:
            return None
        raise


def _set_xattr(target: Target, name: str, value: bytes) -> bool:
    """False when the value is too large for this filesystem's xattrs (ext4: ~4 KiB in all)."""
    try:
        os.setxattr(target, name, value)
    except OSError as exc:
        if exc.errno in (errno.E2BIG, errno.ENOSPC, errno.ERANGE):
            return False
        raise
    return True


def _remove_xattr(target: Target, name: str) -> None:
    try:
        os.removexattr(target, name)
    except OSError as exc:
        if exc.errno not in _NO_RECORD and exc.errno != errno.ENOENT:
            raise


class MetaStore:
    """Reads and writes one bucket's records; ``backend`` is ``"xattr"`` or ``"sidecar"``.

    ``meta_store_for`` picks the backend. A ``target`` is the object's open fd or its real path.
    """

    def __init__(self, bucket: BucketPaths, backend: str) -> None:
        if backend not in (XATTR, SIDECAR):
            raise ValueError(f"unknown metadata backend {backend!r}")
        self.bucket = bucket
        self.backend = backend

    @property
    def writes_records_apart(self) -> bool:
        """Records live apart from their files (sidecars), so writing one is no proof that the
        writer may change the file."""
        return self.backend == SIDECAR

    # -- writing through a publish --------------------------------------------------------
    def stage(self, target: Target, record: ObjectRecord, tags: dict[str, str] | None) -> None:
        """Attach metadata to a temp file, before it is renamed into place (xattr backend)."""
        if self.backend == XATTR:
            self._set(target, META_XATTR, record.encode())
            if tags:
                self._set(target, TAGS_XATTR, _encode_tags(tags))

    def commit(self, key: str, record: ObjectRecord, tags: dict[str, str] | None) -> None:
        """Write the sidecars of a publish (sidecar backend); call under the key lock."""
        if self.backend == SIDECAR:
            self._write_sidecar(self._sidecar(self.bucket.meta, key), record.encode())
            self._write_tags_sidecar(key, tags)

    # -- in-place access --------------------------------------------------------------------
    def read(self, target: Target, key: str) -> ObjectRecord | None:
        """The object's record; None when it has none (or none ``ObjectRecord.decode`` accepts)."""
        if self.backend == XATTR:
            data = self._get(target, META_XATTR)
        else:
            data = self._read_sidecar(self._sidecar(self.bucket.meta, key))
        return ObjectRecord.decode(data) if data else None

    def describe_listed(self, directory: str, names: list[str], keys: list[str]) -> list[ObjectInfo | None]:
        """``listing.DescribeFiles``: the listing's view (``listed_info``) of the regular files
        ``names`` in ``directory``, a real directory of this bucket reached without symlinks
        (so each file's sidecar key is its key). None for one that is no regular file now."""
        xattr = META_XATTR if self.backend == XATTR else None
        infos: list[ObjectInfo | None] = []
        append = infos.append
        for key, mode, size, mtime_ns, data in zip(keys, *stat_entries(directory, names, xattr), strict=True):
            if not stat.S_ISREG(mode):
                append(None)  # gone (mode 0), or no longer a regular file
            elif xattr is None:
                append(listed_info(key, size, mtime_ns, self._read_sidecar(self._sidecar(self.bucket.meta, key))))
            elif data is None:  # a foreign file: listed_info's last line, without the call
                append(listed_object(key, size, mtime_ns, _foreign_etag(key, size, mtime_ns)))
            else:
                append(
                    listed_info(key, size, mtime_ns, self._read_blob(data) if data.startswith(_BLOB_POINTER) else data)
                )
        return infos

    def write(self, target: Target, key: str, record: ObjectRecord) -> None:
        """Replace the record of an existing object or directory marker; under the key lock."""
        if self.backend == XATTR:
            self._set(target, META_XATTR, record.encode())
        else:
            self._write_sidecar(self._sidecar(self.bucket.meta, key), record.encode())

    def remove(self, key: str, target: Target | None = None) -> None:
        """Drop a record and its tags. The xattrs of a deleted file go with it, so ``target``
        is only needed to unmark a directory that stays."""
        if self.backend == XATTR:
            if target is not None:
                _remove_xattr(target, META_XATTR)
                _remove_xattr(target, TAGS_XATTR)
        else:
            for base in (self.bucket.meta, self.bucket.tags):
                self._remove_sidecar(self._sidecar(base, key))

    def read_tags(self, target: Target, key: str) -> dict[str, str]:
        """The object's tags (``decode_tags``)."""
        if self.backend == XATTR:
            return decode_tags(self._get(target, TAGS_XATTR))
        return decode_tags(self._read_sidecar(self._sidecar(self.bucket.tags, key)))

    def write_tags(self, target: Target, key: str, tags: dict[str, str] | None) -> None:
        """Set (or with None/empty, clear) an existing object's tags; under the key lock."""
        if self.backend == XATTR:
            if tags:
                self._set(target, TAGS_XATTR, _encode_tags(tags))
            else:
                _remove_xattr(target, TAGS_XATTR)
        else:
            self._write_tags_sidecar(key, tags)

    # -- xattrs, with an overflow for values too large for them ---------------------------------
    def _get(self, target: Target, name: str) -> bytes | None:
        data = _get_xattr(target, name)
        if data is not None and data.startswith(_BLOB_POINTER):
            return self._read_blob(data)
        return data

    def _read_blob(self, pointer: bytes) -> bytes | None:
        name = pointer[len(_BLOB_POINTER) :].decode("ascii", "replace")
        if not valid_blob_name(name):
            return None  # not a pointer the gateway wrote (a forged "../../etc/shadow")
        return self._read_sidecar(self.bucket.state / "blobs" / name)

    def _set(self, target: Target, name: str, value: bytes) -> None:
        if _set_xattr(target, name, value):
            return
        # Too large for an xattr: keep the value in a content-addressed blob and point to it.
        # Content addressing makes this safe on an unpublished temp file (no key involved, no
        # race with other writers); blobs are never reclaimed, a small leak confined to objects
        # with unusually large metadata.
        digest = xxhash.xxh3_128_hexdigest(value)
        blob = self.bucket.state / "blobs" / digest
        with as_gateway():
            exists = blob.exists()
        if not exists:
            self._write_sidecar(blob, value)
        if not _set_xattr(target, name, _BLOB_POINTER + digest.encode()):
            raise S3Error("MetadataTooLarge", "The object's metadata does not fit in an extended attribute.")

    # -- sidecar files ----------------------------------------------------------------------
    @staticmethod
    def _sidecar(base: Path, key: str) -> Path:
        if key.endswith("/"):
            return base / key / ".json"
        parent, _, name = key.rpartition("/")
        if len(name.encode("utf-8", "surrogateescape")) + len(".json") > MAX_SEGMENT_BYTES:
            name = "~" + xxhash.xxh3_128_hexdigest(name.encode("utf-8", "surrogateescape"))
        return base / parent / (name + ".json")

    # Sidecars and blobs are the gateway's records (users could forge their own), kept in its
    # private state directories: read and written with the gateway's ids. Who may see or change
    # an object's record was decided by the kernel on the object's file, just before.
    @staticmethod
    def _read_sidecar(path: Path) -> bytes | None:
        try:
            with as_gateway():
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                return f.read(MAX_RECORD_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _write_sidecar(self, path: Path, data: bytes) -> None:
        with as_gateway():
            os.makedirs(path.parent, mode=0o700, exist_ok=True)
            tmp = self.bucket.tmp / f"sidecar.{os.getpid()}.{secrets.token_hex(8)}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    def _remove_sidecar(self, path: Path) -> None:
        with as_gateway():
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):
                pass

    def _write_tags_sidecar(self, key: str, tags: dict[str, str] | None) -> None:
        path = self._sidecar(self.bucket.tags, key)
        if tags:
            self._write_sidecar(path, _encode_tags(tags))
        else:
            self._remove_sidecar(path)


_backends: dict[Path, str] = {}
_backends_lock = threading.Lock()


def _probe_backend(bucket: BucketPaths) -> str:
    # Reading, not writing: a read-only tree (a mapped bucket) must still be served, and
    # ENODATA ("supported, not set") versus ENOTSUP answers the question just as well.
    try:
        os.getxattr(bucket.dir, "user.aifgw.probe")
    except OSError as exc:
        if exc.errno in _NO_XATTR:
            return SIDECAR
    return XATTR


def meta_store_for(bucket: BucketPaths, forced: str | None = None) -> MetaStore:
    """The bucket's metadata backend: ``forced``, else ``$AIF_META_BACKEND``, else probed once
    per bucket per process (xattr support).

    Blocking (the probe touches the filesystem): call it from a worker thread.
    """
    backend = forced or os.environ.get(BACKEND_ENV)
    if not backend:
        with _backends_lock:
            backend = _backends.get(bucket.dir)
        if backend is None:
            backend = _probe_backend(bucket)
            with _backends_lock:
                _backends[bucket.dir] = backend
    return MetaStore(bucket, backend)


# -- bucket records (owner, creation time) ---------------------------------------------------
def bucket_record_file(root: Path, name: str) -> Path:
    """Where a bucket's record lives when its directory cannot carry the xattr."""
    return Path(root) / INTERNAL_DIR / "buckets" / f"{name}.json"


def read_bucket_record(root: Path, name: str, path: Path) -> tuple[str | None, int]:
    """(owner, created_ns) of the bucket at ``path``; a directory the gateway did not create has
    no owner, and its mtime stands in for the creation time."""
    data = _get_xattr(path, BUCKET_XATTR)
    if data is None:
        try:
            with as_gateway():
                data = bucket_record_file(root, name).read_bytes()
        except FileNotFoundError:
            pass
    try:
        record = json.loads(data) if data and len(data) <= MAX_RECORD_BYTES else {}
    except (ValueError, RecursionError):
        record = {}
    if type(record) is not dict:
        record = {}
    owner, created_ns = record.get("owner"), record.get("created_ns")
    return (
        owner if type(owner) is str else None,
        created_ns if type(created_ns) is int and created_ns > 0 else os.stat(path).st_mtime_ns,
    )


def write_bucket_record(root: Path, name: str, path: Path, owner: str, *, sidecar: bool) -> None:
    """Record ``owner`` and the creation time of bucket ``name`` at ``path``: in the xattr
    ``BUCKET_XATTR`` of the bucket directory, else (``sidecar``, or no user xattrs there) in
    ``bucket_record_file(root, name)``."""
    data = json.dumps({"owner": owner, "created_ns": time.time_ns()}).encode()
    if not sidecar:
        try:
            os.setxattr(path, BUCKET_XATTR, data)
            return
        except OSError as exc:
            if exc.errno not in _NO_XATTR:
                raise
    record_file = bucket_record_file(root, name)
    with as_gateway():
        os.makedirs(record_file.parent, mode=0o700, exist_ok=True)
        record_file.write_bytes(data)
