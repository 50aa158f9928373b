"""Multipart uploads whose whole state lives on the shared filesystem.

Any gateway process on any node can continue, list, complete or abort an upload that another one
started, including after restarts: nothing is kept in memory between calls. Layout, per bucket::

    .aifgw/uploads/<upload_id>/upload.json        key, attrs, checksum algorithm/type, owner
    .aifgw/uploads/<upload_id>/part-00001.json    the part's record: data file, size, MD5, checksums
    .aifgw/uploads/<upload_id>/part-00001.<token> the part's bytes
    .aifgw/completed/<upload_id>.json             what Complete returned, for retried Completes

Completion records live outside ``uploads/`` so that a bucket whose uploads are all finished
counts as having none (DeleteBucket); ``cleanup_done_records`` drops them after a day.

A part's bytes go to a fresh data file first; replacing ``part-NNNNN.json`` then switches the
part atomically (a reader sees the old bytes with the old MD5 or the new with the new, never a
mix), and only then is the previous data file removed. Complete and Abort hold the upload's
``fcntl`` lock (``locks.key_lock`` on a name no object key can take), and UploadPart takes it
for its switch, so a part cannot change under a Complete that is reading it.

Upload ids are ``<initiated ns, 16 hex><random, 16 hex><key tag, 8 hex>``: they sort by
initiation time (ListMultipartUploads pages by id within a key) and name their key, so a
request for another key is refused without reading anything. The format is checked before an
id is ever used as a path.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ..checksums import b64, composite_checksum, decode_checksum, full_object_crc, multipart_etag
from ..errors import S3Error
from .base import (
    CHECKSUM_ALGORITHMS,
    ByteStream,
    CompletedPart,
    ObjectAttrs,
    ObjectInfo,
    ObjectReader,
    PartInfo,
    PartsPage,
    UploadInfo,
    UploadsPage,
    WriteOptions,
)
from .listing import page_uploads
from .locks import key_lock
from .meta import MetaStore, ObjectRecord
from .paths import INTERNAL_DIR, BucketPaths
from .publish import TempObject, check_body, copy_to_temp, discard, publish_file, receive_body

MAX_PART_NUMBER = 10_000
MIN_PART_SIZE = 5 * 1024 * 1024  # every part but the last
MAX_COPY_SOURCE = 5 * 1024**3  # UploadPartCopy copies at most 5 GiB per part
DONE_RECORD_TTL_S = 24 * 3600
COMPLETED_DIR = "completed"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{40}$")
_COPY_CHUNK = 64 * 1024 * 1024
_FULL_OBJECT_ONLY = ("CRC64NVME",)
_CRC_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME")


def _key_tag(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def new_upload_id(key: str) -> str:
    return f"{time.time_ns():016x}{secrets.token_hex(8)}{_key_tag(key)}"


def _no_upload(upload_id: str) -> S3Error:
    return S3Error("NoSuchUpload", extra={"UploadId": upload_id})


def _check_id(key: str | None, upload_id: str) -> None:
    """Refuse ids we never issued (they become paths) and ids issued for another key."""
    if not _UPLOAD_ID.match(upload_id) or (key is not None and upload_id[32:] != _key_tag(key)):
        raise _no_upload(upload_id)


def _write_json_atomically(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False))
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def _copy_range(src_fd: int, dst_fd: int, offset: int, length: int, dst_offset: int) -> None:
    """Copy bytes in the kernel (or on the file server) where it can; read/write where not.

    Unlike ``publish.copy_to_temp`` this appends at ``dst_offset``: Complete concatenates.
    """
    end = offset + length
    while offset < end:
        try:
            done = os.copy_file_range(src_fd, dst_fd, min(end - offset, _COPY_CHUNK), offset, dst_offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            data = os.pread(src_fd, min(end - offset, _COPY_CHUNK), offset)
            done = os.pwrite(dst_fd, data, dst_offset) if data else 0
        if done == 0:
            raise S3Error("InternalError", "The source became shorter while it was being copied.")
        offset += done
        dst_offset += done


class MultipartUploads:
    """The multipart operations of one bucket. FsStore checks the bucket exists, then delegates."""

    def __init__(self, bucket: BucketPaths, meta: MetaStore, *, fsync: bool = False) -> None:
        self.bucket = bucket
        self.meta = meta
        self.fsync = fsync

    # -- upload state -----------------------------------------------------------------------
    def _dir(self, upload_id: str) -> Path:
        return self.bucket.uploads / upload_id

    def _lock(self, upload_id: str):
        # Object keys never start with the internal directory, so this name is the upload's own.
        return key_lock(self.bucket.internal, f"{INTERNAL_DIR}/uploads/{upload_id}")

    def _load(self, key: str | None, upload_id: str) -> UploadInfo:
        """The upload, or NoSuchUpload (also for a well-formed id of another key)."""
        _check_id(key, upload_id)
        data = _read_json(self._dir(upload_id) / "upload.json")
        if data is None or (key is not None and data["key"] != key):
            raise _no_upload(upload_id)
        return UploadInfo(
            bucket=self.bucket.name,
            key=data["key"],
            upload_id=upload_id,
            initiated_ns=data["initiated_ns"],
            attrs=ObjectAttrs(**data["attrs"]),
            checksum_algorithm=data["checksum_algorithm"],
            checksum_type=data["checksum_type"],
            owner=data["owner"],
        )

    def _parts(self, upload_id: str) -> dict[int, dict]:
        parts = {}
        with os.scandir(self._dir(upload_id)) as entries:
            for entry in entries:
                if entry.name.startswith("part-") and entry.name.endswith(".json"):
                    record = _read_json(Path(entry.path))
                    if record is not None:
                        parts[record["part_number"]] = record
        return parts

    def _remove_upload_dir(self, upload_id: str) -> None:
        # Rename first, so the upload vanishes in one step even if the removal is interrupted.
        os.makedirs(self.bucket.tmp, exist_ok=True)
        doomed = self.bucket.tmp / f"upload.{upload_id}.{secrets.token_hex(4)}"
        os.rename(self._dir(upload_id), doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    # -- create / abort ---------------------------------------------------------------------
    async def create(
        self,
        key: str,
        attrs: ObjectAttrs,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
        owner: str | None = None,
    ) -> str:
        if checksum_algorithm is not None and checksum_algorithm not in CHECKSUM_ALGORITHMS:
            raise S3Error("InvalidRequest", f"Unknown checksum algorithm {checksum_algorithm}.")
        if checksum_type is not None and checksum_algorithm is None:
            raise S3Error("InvalidRequest", "A checksum type needs a checksum algorithm.")
        if checksum_algorithm is not None and checksum_type is None:
            checksum_type = "FULL_OBJECT" if checksum_algorithm in _FULL_OBJECT_ONLY else "COMPOSITE"
        if checksum_type == "FULL_OBJECT" and checksum_algorithm not in _CRC_ALGORITHMS:
            raise S3Error("InvalidRequest", f"The FULL_OBJECT checksum type does not support {checksum_algorithm}.")
        if checksum_type == "COMPOSITE" and checksum_algorithm in _FULL_OBJECT_ONLY:
            raise S3Error("InvalidRequest", f"The COMPOSITE checksum type does not support {checksum_algorithm}.")
        self.bucket.resolve(key)  # invalid keys fail now, not after gigabytes of parts
        upload_id = new_upload_id(key)
        record = {
            "key": key,
            "initiated_ns": time.time_ns(),
            "attrs": asdict(attrs),
            "checksum_algorithm": checksum_algorithm,
            "checksum_type": checksum_type,
            "owner": owner,
        }

        def write() -> None:
            self.bucket.ensure_internal()
            os.makedirs(self._dir(upload_id))
            _write_json_atomically(self._dir(upload_id) / "upload.json", record)

        await asyncio.to_thread(write)
        return upload_id

    async def abort(self, key: str, upload_id: str) -> None:
        def abort() -> None:
            self._load(key, upload_id)
            with self._lock(upload_id):
                self._load(key, upload_id)  # a Complete may have finished while we waited
                self._remove_upload_dir(upload_id)

        await asyncio.to_thread(abort)

    # -- parts ------------------------------------------------------------------------------
    def _algorithms(self, upload: UploadInfo, requested: frozenset[str] = frozenset()) -> set[str]:
        # The upload's own algorithm is always computed: Complete combines it from the parts.
        return set(requested) | ({upload.checksum_algorithm} if upload.checksum_algorithm else set())

    def _store_part(self, key: str, upload_id: str, part_number: int, temp: TempObject) -> PartInfo:
        """Move received bytes into the upload and switch the part's record to them."""
        checksums = {name: b64(d) for name, d in temp.digests.items() if name in CHECKSUM_ALGORITHMS}
        name = f"part-{part_number:05d}"
        with self._lock(upload_id):
            self._load(key, upload_id)
            directory = self._dir(upload_id)
            data_name = f"{name}.{secrets.token_hex(6)}"
            os.rename(temp.path, directory / data_name)
            previous = _read_json(directory / f"{name}.json")
            record = {
                "part_number": part_number,
                "file": data_name,
                "size": temp.size,
                "etag": temp.digests["MD5"].hex(),
                "checksums": checksums,
                "mtime_ns": temp.mtime_ns,
            }
            _write_json_atomically(directory / f"{name}.json", record)
            if previous is not None:
                discard(directory / previous["file"])
        return PartInfo(part_number, temp.size, record["etag"], temp.mtime_ns, checksums)

    async def _store_or_discard(self, key: str, upload_id: str, part_number: int, temp: TempObject) -> PartInfo:
        try:
            return await asyncio.to_thread(self._store_part, key, upload_id, part_number, temp)
        except BaseException:
            await asyncio.to_thread(discard, temp.path)
            raise

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, body: ByteStream, options: WriteOptions
    ) -> PartInfo:
        _check_part_number(part_number)
        upload = await asyncio.to_thread(self._load, key, upload_id)
        algorithms = self._algorithms(upload, options.hash_algorithms)
        temp = await receive_body(self.bucket, body, algorithms, fsync=self.fsync)
        try:
            check_body(temp, options)
        except BaseException:
            await asyncio.to_thread(discard, temp.path)
            raise
        return await self._store_or_discard(key, upload_id, part_number, temp)

    async def upload_part_copy(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        source: ObjectReader,
        src_range: tuple[int, int] | None,
        check_source: Callable[[ObjectInfo], None] | None = None,
    ) -> PartInfo:
        """Copy ``src_range`` (inclusive; None: all) of an open source object into a part."""
        _check_part_number(part_number)
        upload = await asyncio.to_thread(self._load, key, upload_id)
        if check_source is not None:
            check_source(source.info)
        size = source.info.size
        first, last = src_range if src_range is not None else (0, size - 1)
        if src_range is not None and not 0 <= first <= last < size:
            raise S3Error("InvalidArgument", f"Range specified is not valid for source object of size: {size}")
        length = last - first + 1
        if length > MAX_COPY_SOURCE:
            raise S3Error(
                "InvalidRequest",
                "The specified copy source is larger than the maximum allowable size for a copy source: "
                f"{MAX_COPY_SOURCE}",
            )
        # Hashed on the way (the part's MD5 is its ETag), so not a kernel-side copy.
        algorithms = sorted(self._algorithms(upload))
        temp = await asyncio.to_thread(
            copy_to_temp, self.bucket, source.fileno(), first, length, algorithms, fsync=self.fsync
        )
        return await self._store_or_discard(key, upload_id, part_number, temp)

    async def list_parts(
        self, key: str, upload_id: str, part_number_marker: int = 0, max_parts: int = 1000
    ) -> PartsPage:
        def list_parts() -> PartsPage:
            upload = self._load(key, upload_id)
            try:
                stored = self._parts(upload_id)
            except FileNotFoundError:  # completed or aborted since _load
                raise _no_upload(upload_id) from None
            numbers = sorted(n for n in stored if n > part_number_marker)
            page = numbers[: max(max_parts, 0)]
            parts = [
                PartInfo(n, stored[n]["size"], stored[n]["etag"], stored[n]["mtime_ns"], stored[n]["checksums"])
                for n in page
            ]
            return PartsPage(upload, parts, len(numbers) > len(page), page[-1] if page else None)

        return await asyncio.to_thread(list_parts)

    # -- complete ---------------------------------------------------------------------------
    async def complete(
        self, key: str, upload_id: str, parts: list[CompletedPart], options: WriteOptions
    ) -> ObjectInfo:
        """Validate the part list, build the object, publish it under ``options``' conditions.

        ``options.if_match`` / ``if_none_match`` apply atomically at the publish; the body
        verification fields do not apply (the request body is the part list, not object bytes).
        A failed Complete leaves the upload and any previous object untouched.
        """
        return await asyncio.to_thread(self._complete, key, upload_id, parts, options)

    def _done_path(self, upload_id: str) -> Path:
        return self.bucket.internal / COMPLETED_DIR / f"{upload_id}.json"

    def _complete(
        self, key: str, upload_id: str, parts: list[CompletedPart], options: WriteOptions
    ) -> ObjectInfo:
        _check_id(key, upload_id)
        requested = [[p.part_number, p.etag.strip('"')] for p in parts]
        with self._lock(upload_id):
            done = _read_json(self._done_path(upload_id))
            if done is not None:  # a retry, or the loser of a race: same answer, or none
                if done["key"] != key or done["parts"] != requested:
                    raise _no_upload(upload_id)
                record = ObjectRecord.decode(done["record"].encode())
                if record is None:
                    raise _no_upload(upload_id)
                return record.info(key, done["tag_count"])
            upload = self._load(key, upload_id)
            chosen = self._validate_parts(upload_id, parts)
            record, temp_path = self._assemble(upload, chosen)
            try:
                publish_file(
                    self.bucket, self.meta, temp_path, key, record, upload.attrs.tags, options, fsync=self.fsync
                )
            except BaseException:
                discard(temp_path)
                raise
            tag_count = len(upload.attrs.tags or {})
            os.makedirs(self._done_path(upload_id).parent, exist_ok=True)
            _write_json_atomically(
                self._done_path(upload_id),
                {"key": key, "parts": requested, "record": record.encode().decode(), "tag_count": tag_count},
            )
            self._remove_upload_dir(upload_id)
        return record.info(key, tag_count)

    def _validate_parts(self, upload_id: str, parts: list[CompletedPart]) -> list[dict]:
        """The stored records of the requested parts, in order, after S3's checks."""
        if not parts:
            raise S3Error("MalformedXML", "The CompleteMultipartUpload request must name at least one part.")
        numbers = [p.part_number for p in parts]
        if any(b <= a for a, b in zip(numbers, numbers[1:])):
            raise S3Error("InvalidPartOrder")
        stored = self._parts(upload_id)
        chosen = []
        for part in parts:
            record = stored.get(part.part_number)
            if record is None or record["etag"] != part.etag.strip('"').lower():
                raise S3Error("InvalidPart", extra={"PartNumber": str(part.part_number), "ETag": part.etag})
            for algorithm, value in part.checksums.items():
                have = record["checksums"].get(algorithm)
                if have is None or decode_checksum(algorithm, value) != base64.b64decode(have):
                    raise S3Error(
                        "InvalidPart",
                        f"The {algorithm} checksum of part {part.part_number} does not match the uploaded part.",
                        extra={"PartNumber": str(part.part_number)},
                    )
            chosen.append(record)
        for part, record in zip(parts[:-1], chosen[:-1]):
            if record["size"] < MIN_PART_SIZE:
                sizes = {"ProposedSize": str(record["size"]), "MinSizeAllowed": str(MIN_PART_SIZE)}
                raise S3Error("EntityTooSmall", extra={"PartNumber": str(part.part_number), **sizes})
        return chosen

    def _assemble(self, upload: UploadInfo, chosen: list[dict]) -> tuple[ObjectRecord, Path]:
        """Concatenate the parts into a temp file and describe it.

        This is the O(size) step; a filesystem that can link extents (reflink, Lustre PFL
        composition) can replace the copy loop without changing anything around it.
        """
        os.makedirs(self.bucket.tmp, exist_ok=True)
        path = self.bucket.tmp / f"complete.{os.getpid()}.{secrets.token_hex(8)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            offset = 0
            for record in chosen:
                try:
                    src = os.open(self._dir(upload.upload_id) / record["file"], os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:  # removed behind the gateway's back
                    raise S3Error("InvalidPart", extra={"PartNumber": str(record["part_number"])}) from None
                try:
                    _copy_range(src, fd, 0, record["size"], offset)
                finally:
                    os.close(src)
                offset += record["size"]
            if self.fsync:
                os.fsync(fd)
            mtime_ns = os.fstat(fd).st_mtime_ns
        except BaseException:
            os.close(fd)
            discard(path)
            raise
        os.close(fd)
        attrs = upload.attrs
        return (
            ObjectRecord(
                etag=multipart_etag([bytes.fromhex(r["etag"]) for r in chosen]),
                size=offset,
                mtime_ns=mtime_ns,
                content_type=attrs.content_type or "application/octet-stream",
                headers=dict(attrs.headers),
                user_meta=dict(attrs.user_meta),
                checksums=_multipart_checksums(upload, chosen),
                checksum_type=upload.checksum_type if upload.checksum_algorithm else None,
                part_sizes=tuple(r["size"] for r in chosen),
            ),
            path,
        )

    # -- listing uploads and housekeeping ---------------------------------------------------
    async def list_uploads(
        self,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> UploadsPage:
        uploads = await asyncio.to_thread(self._all_uploads)
        return page_uploads(uploads, prefix, delimiter, key_marker, upload_id_marker, max_uploads)

    def _all_uploads(self) -> list[UploadInfo]:
        uploads = []
        try:
            names = os.listdir(self.bucket.uploads)
        except FileNotFoundError:
            return []
        for name in names:
            if _UPLOAD_ID.match(name):
                try:
                    uploads.append(self._load(None, name))
                except S3Error:
                    continue  # completed or aborted while we listed
        return uploads

    def cleanup_done_records(self, older_than_s: float = DONE_RECORD_TTL_S) -> int:
        """Forget completions older than ``older_than_s`` and finish removals a crash
        interrupted (blocking); returns how many entries went."""
        cutoff_ns = time.time_ns() - int(older_than_s * 1e9)
        removed = 0
        for directory, prefix in ((self.bucket.internal / COMPLETED_DIR, ""), (self.bucket.tmp, "upload.")):
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    if entry.name.startswith(prefix) and entry.stat(follow_symlinks=False).st_mtime_ns < cutoff_ns:
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    pass  # another process cleaned it first
        return removed

def _multipart_checksums(upload: UploadInfo, chosen: list[dict]) -> dict[str, str]:
    algorithm = upload.checksum_algorithm
    if algorithm is None:
        return {}
    digests = [base64.b64decode(r["checksums"][algorithm]) for r in chosen]
    if upload.checksum_type == "FULL_OBJECT":
        return {algorithm: full_object_crc(algorithm, [(d, r["size"]) for d, r in zip(digests, chosen)])}
    return {algorithm: composite_checksum(algorithm, digests)}


def _check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise S3Error(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
            extra={"ArgumentName": "partNumber", "ArgumentValue": str(part_number)},
        )
