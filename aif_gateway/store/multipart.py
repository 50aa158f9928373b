"""Multipart uploads: the S3 operations over the on-disk state of ``multipart_state``.

Nothing is kept in memory between calls, so any gateway process on any node serves any call of
any upload. Parts of one size go straight into the upload's data file at their final offsets
(``multipart_layout``). Complete validates the part list and the request's claims about the
object, decides the layout (the parts already are the object, or they are not), then either
truncates the data file or assembles a new file (reflinks where possible), and publishes it like
a PUT (``publish.publish_file``), all under the upload's lock and with the data file's writers
excluded; a failed Complete leaves the upload and any previous object as they were, and a
retried one returns the first one's answer.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..checksums import composite_checksum, decode_checksum, full_object_crc, multipart_etag
from ..errors import S3Error
from .base import (
    CHECKSUM_ALGORITHMS,
    MAX_PARTS,
    ByteStream,
    CompletedPart,
    ExpectedObject,
    ObjectAttrs,
    ObjectInfo,
    PartInfo,
    PartsPage,
    UploadInfo,
    UploadsPage,
    WriteOptions,
)
from .listing import page_uploads
from .meta import MetaStore, ObjectRecord
from .multipart_layout import (
    MIN_PART_SIZE,
    assemble,
    copy_into,
    in_place_plan,
    move_into_place,
    place_part,
    truncate_in_place,
)
from .multipart_slots import WritersBusy, no_writers
from .multipart_state import DONE_RECORD_TTL_S, PartRecord, UploadState, check_id, new_upload_id, no_upload
from .oserrors import in_thread, s3_errors
from .paths import BucketPaths
from .publish import TempObject, check_body, copy_to_temp, discard, publish_file, receive_body
from .reader import FileReader

__all__ = ["MultipartUploads"]

MAX_PART_NUMBER = MAX_PARTS
# How long Complete waits for writers still writing parts into the data file it is about to
# publish (a client's stale retry whose connection has not died yet). Clients send Complete
# after every part has been answered, so in practice it waits for nothing.
COMPLETE_WAIT_S = 30.0
MAX_COPY_SOURCE = 5 * 1024**3  # UploadPartCopy copies at most 5 GiB per part
_FULL_OBJECT_ONLY = ("CRC64NVME",)
_CRC_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME")


class MultipartUploads:
    """The multipart operations of one bucket. FsStore checks the bucket exists, then delegates."""

    def __init__(self, bucket: BucketPaths, meta: MetaStore, *, fsync: bool = False) -> None:
        self.bucket = bucket
        self.meta = meta
        self.fsync = fsync
        self.state = UploadState(bucket)

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
        await in_thread(self.state.create, upload_id, record)
        return upload_id

    async def abort(self, key: str, upload_id: str) -> None:
        def abort() -> None:
            self.state.load(key, upload_id)
            with self.state.lock(upload_id):
                self.state.load(key, upload_id)  # a Complete may have finished while we waited
                self.state.remove(upload_id)

        await in_thread(abort)

    # -- parts ------------------------------------------------------------------------------
    def _algorithms(self, upload: UploadInfo, requested: frozenset[str] = frozenset()) -> frozenset[str]:
        # The upload's own algorithm is always computed: Complete combines it from the parts.
        return requested | ({upload.checksum_algorithm} if upload.checksum_algorithm else set())

    async def _store_or_discard(
        self, key: str, upload_id: str, part_number: int, temp: TempObject, algorithms: frozenset[str]
    ) -> PartInfo:
        try:
            return await in_thread(self.state.store_part, key, upload_id, part_number, temp, algorithms)
        except BaseException:
            await in_thread(discard, temp.path)
            raise

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, body: ByteStream, options: WriteOptions
    ) -> PartInfo:
        _check_part_number(part_number)
        upload = await in_thread(self.state.load, key, upload_id)
        kept = self._algorithms(upload, options.hash_algorithms)
        hashed = kept | options.verify_algorithms
        slot = await in_thread(place_part, self.state, key, upload_id, part_number, options.expected_size)
        if slot is None:
            return await self._upload_part_file(key, upload_id, part_number, body, options, kept)
        try:
            with s3_errors():  # the disk's errors (ENOSPC...); a client's own pass through
                temp = await receive_body(
                    self.bucket,
                    body,
                    hashed,
                    fsync=self.fsync,
                    expected_size=options.expected_size,
                    writer=slot.writer(hashed),
                )
            check_body(temp, options)
            return await in_thread(self.state.store_part, key, upload_id, part_number, temp, kept, offset=slot.offset)
        finally:
            await in_thread(slot.release)

    async def _upload_part_file(
        self, key: str, upload_id: str, part_number: int, body: ByteStream, options: WriteOptions, kept: frozenset[str]
    ) -> PartInfo:
        """The part into a file of its own."""
        with s3_errors():  # the disk's errors (ENOSPC...); a client's own pass through
            temp = await receive_body(
                self.bucket,
                body,
                kept | options.verify_algorithms,
                fsync=self.fsync,
                expected_size=options.expected_size,
            )
        try:
            check_body(temp, options)
        except BaseException:
            await in_thread(discard, temp.path)
            raise
        return await self._store_or_discard(key, upload_id, part_number, temp, kept)

    async def upload_part_copy(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        source: FileReader,
        src_range: tuple[int, int] | None,
        check_source: Callable[[ObjectInfo], None] | None = None,
    ) -> PartInfo:
        """Copy ``src_range`` (inclusive; None: all) of an open source object into a part."""
        _check_part_number(part_number)
        upload = await in_thread(self.state.load, key, upload_id)
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
        algorithms = self._algorithms(upload)
        slot = await in_thread(place_part, self.state, key, upload_id, part_number, length)
        if slot is None:
            temp = await in_thread(
                copy_to_temp, self.bucket, source.fileno(), first, length, sorted(algorithms), fsync=self.fsync
            )
            return await self._store_or_discard(key, upload_id, part_number, temp, algorithms)
        try:
            temp = await in_thread(copy_into, slot.writer(algorithms), source.fileno(), first, length, self.fsync)
            return await in_thread(
                self.state.store_part, key, upload_id, part_number, temp, algorithms, offset=slot.offset
            )
        finally:
            await in_thread(slot.release)

    async def list_parts(
        self, key: str, upload_id: str, part_number_marker: int = 0, max_parts: int = 1000
    ) -> PartsPage:
        def list_parts() -> PartsPage:
            upload = self.state.load(key, upload_id)
            try:
                stored = self.state.parts(upload_id)
            except FileNotFoundError:  # completed or aborted since load
                raise no_upload(upload_id) from None
            numbers = sorted(n for n in stored if n > part_number_marker)
            page = numbers[: max(max_parts, 0)]
            parts = [
                PartInfo(n, stored[n]["size"], stored[n]["etag"], stored[n]["mtime_ns"], stored[n]["checksums"])
                for n in page
            ]
            return PartsPage(upload, parts, len(numbers) > len(page), page[-1] if page else None)

        return await in_thread(list_parts)

    # -- complete ---------------------------------------------------------------------------
    async def complete(
        self,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        options: WriteOptions,
        expected: ExpectedObject = ExpectedObject(),
    ) -> ObjectInfo:
        """Validate the part list and ``expected``, build the object, publish it under
        ``options``' conditions (``if_match`` / ``if_none_match``, applied atomically at the
        publish; the body fields do not apply: the request body is the part list)."""
        return await in_thread(self._complete, key, upload_id, parts, options, expected)

    def _complete(
        self, key: str, upload_id: str, parts: list[CompletedPart], options: WriteOptions, expected: ExpectedObject
    ) -> ObjectInfo:
        check_id(key, upload_id)
        requested = [[p.part_number, p.etag.strip('"')] for p in parts]
        try:
            with no_writers(self.state.slots_file(upload_id), COMPLETE_WAIT_S):
                return self._complete_excluding_writers(key, upload_id, parts, options, expected, requested)
        except WritersBusy:
            raise S3Error(
                "ConditionalRequestConflict", "A part of this upload is still being written; retry the Complete."
            ) from None

    def _complete_excluding_writers(
        self,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        options: WriteOptions,
        expected: ExpectedObject,
        requested: list[list[Any]],
    ) -> ObjectInfo:
        with self.state.lock(upload_id):
            done = self.state.read_done(upload_id)
            if done is not None:  # a retry, or the loser of a race: same answer, or none
                if done["key"] != key or done["parts"] != requested:
                    raise no_upload(upload_id)
                record = ObjectRecord.decode(done["record"].encode())
                if record is None:
                    raise no_upload(upload_id)
                _check_expected(expected, record.checksums, record.checksum_type, record.size)
                return record.info(key, done["tag_count"])
            upload = self.state.load(key, upload_id)
            stored = self.state.parts(upload_id)
            chosen = _validate_parts(stored, parts)
            checksums = _multipart_checksums(upload, chosen)
            checksum_type = upload.checksum_type if upload.checksum_algorithm else None
            _check_expected(expected, checksums, checksum_type, sum(r["size"] for r in chosen))
            built, size, mtime_ns, in_place = self._build(upload_id, chosen, stored)
            attrs = upload.attrs
            record = ObjectRecord(
                etag=multipart_etag([bytes.fromhex(r["etag"]) for r in chosen]),
                size=size,
                mtime_ns=mtime_ns,
                content_type=attrs.content_type or "application/octet-stream",
                headers=dict(attrs.headers),
                user_meta=dict(attrs.user_meta),
                checksums=checksums,
                checksum_type=checksum_type,
                part_sizes=tuple(r["size"] for r in chosen),
            )
            try:
                publish_file(self.bucket, self.meta, built, key, record, attrs.tags, options, fsync=self.fsync)
            except BaseException:
                if not in_place:  # the data file stays the upload's, parts and all
                    discard(built)
                raise
            tag_count = len(attrs.tags or {})
            self.state.write_done(
                upload_id, {"key": key, "parts": requested, "record": record.encode().decode(), "tag_count": tag_count}
            )
            self.state.remove(upload_id)
        return record.info(key, tag_count)

    def _build(
        self, upload_id: str, chosen: list[PartRecord], stored: dict[int, PartRecord]
    ) -> tuple[Path, int, int, bool]:
        """The object's file: (path, size, mtime_ns, whether it is the upload's data file).

        Decide the layout, then rename (the data file already is the object: O(1), or O(the
        few parts that sat elsewhere)) or assemble (a new file, range by range)."""
        layout = self.state.layout(upload_id)
        misplaced = in_place_plan(chosen, stored, layout)
        if layout is not None and misplaced is not None:
            move_into_place(self.state, upload_id, misplaced, layout["part_size"])
            data = self.state.data_file(upload_id)
            size = sum(r["size"] for r in chosen)
            return data, size, truncate_in_place(self.state, upload_id, size, self.fsync), True
        path, size, mtime_ns = assemble(self.bucket, self.state, upload_id, chosen, self.fsync)
        return path, size, mtime_ns, False

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
        uploads = await in_thread(self.state.all_uploads)
        return page_uploads(uploads, prefix, delimiter, key_marker, upload_id_marker, max_uploads)

    def cleanup_done_records(self, older_than_s: float = DONE_RECORD_TTL_S) -> int:
        """Forget completions older than ``older_than_s`` (blocking); how many went."""
        return self.state.cleanup_done_records(older_than_s)


def _validate_parts(stored: dict[int, PartRecord], parts: list[CompletedPart]) -> list[PartRecord]:
    """The stored records of the requested parts, in order, after S3's checks."""
    if not parts:
        raise S3Error("MalformedXML", "The CompleteMultipartUpload request must name at least one part.")
    numbers = [p.part_number for p in parts]
    if any(b <= a for a, b in zip(numbers, numbers[1:])):
        raise S3Error("InvalidPartOrder")
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


def _multipart_checksums(upload: UploadInfo, chosen: list[PartRecord]) -> dict[str, str]:
    algorithm = upload.checksum_algorithm
    if algorithm is None:
        return {}
    digests = [base64.b64decode(r["checksums"][algorithm]) for r in chosen]
    if upload.checksum_type == "FULL_OBJECT":
        return {algorithm: full_object_crc(algorithm, [(d, r["size"]) for d, r in zip(digests, chosen)])}
    return {algorithm: composite_checksum(algorithm, digests)}


def _check_expected(expected: ExpectedObject, checksums: dict[str, str], checksum_type: str | None, size: int) -> None:
    """``expected`` against the object Complete builds (or built: a retry is checked too)."""
    if expected.size is not None and expected.size != size:
        raise S3Error(
            "InvalidRequest", f"The expected object size {expected.size} does not match the size of the parts, {size}."
        )
    if expected.checksum_type is not None and expected.checksum_type != checksum_type:
        raise S3Error(
            "BadDigest", f"The upload's checksum type is {checksum_type or 'none'}, not {expected.checksum_type}."
        )
    algorithm = expected.checksum_algorithm
    if algorithm is None or expected.checksum is None:
        return
    computed = checksums.get(algorithm)
    if computed is None:
        created_with = " or ".join(a.lower() for a in checksums) or "no"
        raise S3Error(
            "InvalidRequest",
            f"The upload was created using {created_with} checksum algorithm; the complete request "
            f"cannot be checked with {algorithm.lower()}.",
        )
    if not _same_checksum(expected.checksum, computed):
        raise S3Error("BadDigest", f"The {algorithm.lower()} you specified did not match the calculated checksum.")


def _same_checksum(claimed: str, computed: str) -> bool:
    """Equal digests; a claimed COMPOSITE value may leave out its ``-<parts>`` suffix."""
    claimed_digest, _, claimed_parts = claimed.strip().partition("-")
    digest, _, parts = computed.partition("-")
    if claimed_parts and claimed_parts != parts:
        return False
    try:
        return base64.b64decode(claimed_digest, validate=True) == base64.b64decode(digest)
    except (binascii.Error, ValueError):
        return False


def _check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise S3Error(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
            extra={"ArgumentName": "partNumber", "ArgumentValue": str(part_number)},
        )
