"""The storage interface: one async method per S3 action, plain values in and out.

No HTTP types cross this line. The protocol layer parses requests into these values, calls a
:class:`Store`, and renders what comes back. Errors are :class:`aif_gateway.errors.S3Error`
carrying a catalogue code only (``NoSuchKey``, ``BucketNotEmpty``...).

Conventions
- ``etag`` values are *unquoted* (``"d41d8cd9..."`` or ``"...-3"``); the protocol adds quotes.
- Checksums are keyed by upper-case algorithm name (``CRC32``, ``CRC32C``, ``CRC64NVME``,
  ``SHA1``, ``SHA256``) with base64 values, as S3 transmits them.
- Times are nanoseconds since the epoch (``st_mtime_ns``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import S3Error
from ..fsio.creds import PosixIds

# What ObjectReader.send_to raises when it sent nothing (named here for the protocol layer).
from ..fsio.zerocopy import SendfileUnavailable as SendfileUnavailable

__all__ = [
    "BodyOnSocket",
    "BucketInfo",
    "ByteStream",
    "CALLER",
    "CHECKSUM_ALGORITHMS",
    "CompletedPart",
    "Digests",
    "ExpectedObject",
    "ListPage",
    "MAX_PARTS",
    "MAX_TAGS",
    "ObjectAttrs",
    "ObjectInfo",
    "ObjectReader",
    "PartInfo",
    "PartsPage",
    "STORED_HEADERS",
    "SendfileUnavailable",
    "Store",
    "UploadInfo",
    "UploadsPage",
    "WriteOptions",
]

# Whose rights a request's storage work runs with: the protocol layer sets it once the request
# is authenticated (each request runs in its own task, so it stays with that request); a store
# does the request's filesystem work holding these ids. None: the gateway's own ids.
CALLER: ContextVar[PosixIds | None] = ContextVar("aif_caller", default=None)

# S3's limits that values crossing this interface obey: an upload has at most MAX_PARTS parts
# (numbered 1..MAX_PARTS), an object at most MAX_TAGS tags.
MAX_PARTS = 10_000
MAX_TAGS = 10
# The standard headers an object carries from its PUT to every GET (canonical capitalisation);
# Content-Type is kept apart, in ``content_type``.
STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")


@dataclass
class BodyOnSocket:
    """The rest of a body, still on the client's socket, for the store to read from there.

    A ``ByteStream`` may yield one as its last item, in place of bytes: the next ``count`` bytes
    of the body are to be read from the non-blocking descriptor ``fd`` (a client connection
    that nothing else reads meanwhile) by the storage layer's native receive loop, which gives
    up after ``stall_timeout_s`` without a byte. ``decoder``, when set, is the engine's
    ``ChunkedDecoder`` of an aws-chunked body: the ``count`` raw bytes are decoded by it, and
    what is stored is its data. The consumer sets ``started`` before it reads a byte; a stream
    whose rest was not started (no receiver free) goes on yielding bytes itself. Only the
    protocol layer's transport (``s3/transport.py``) makes one.
    """

    fd: int
    count: int
    stall_timeout_s: float
    decoder: Any = None
    started: bool = False


# The body of a write: an async stream of byte chunks (and perhaps a final BodyOnSocket). It
# raises S3Error itself when the client's framing is bad (aws-chunked decoding happens before
# the store sees bytes).
ByteStream = AsyncIterator["bytes | memoryview | BodyOnSocket"]

# Raw digests computed while writing, keyed "MD5", "SHA256", "CRC32"..., as bytes.
Digests = dict[str, bytes]

CHECKSUM_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created_ns: int
    owner: str | None = None


@dataclass(frozen=True)
class ObjectAttrs:
    """What a writer supplies about an object besides its bytes."""

    content_type: str | None = None
    # STORED_HEADERS the client sent (values verbatim).
    headers: dict[str, str] = field(default_factory=dict)
    # x-amz-meta-* without the prefix, names lower-cased.
    user_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime_ns: int
    etag: str
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    checksum_type: str | None = None  # "COMPOSITE" | "FULL_OBJECT"
    # Sizes of the parts for objects made by multipart upload (GET ?partNumber, PartsCount).
    part_sizes: tuple[int, ...] | None = None
    tag_count: int = 0
    is_dir_marker: bool = False


@dataclass(frozen=True)
class WriteOptions:
    """How to write: what to hash, how to verify, and the write conditions.

    ``verify`` is called with the digests of the received bytes after the body ends and before
    anything is published; it raises S3Error (BadDigest, XAmzContentSHA256Mismatch...) to abort
    the write, in which case nothing becomes visible. The protocol layer builds it from
    Content-MD5, x-amz-content-sha256, x-amz-checksum-* headers or aws-chunked trailers.

    ``hash_algorithms`` are the object's checksums: computed, verified and stored (the write's
    ObjectInfo or PartInfo carries them, and GET with checksum mode returns them).
    ``verify_algorithms`` are computed for ``verify`` only and never stored: the SHA-256 of a
    signed payload checks the transfer, it is not a checksum the client asked the object to carry.
    """

    hash_algorithms: frozenset[str] = frozenset()  # beyond MD5, which is always computed
    verify_algorithms: frozenset[str] = frozenset()
    verify: Callable[[Digests], None] | None = None
    if_match: str | None = None  # unquoted etag, or "*"
    if_none_match: bool = False  # If-None-Match: * (the only form S3 accepts on writes)
    expected_size: int | None = None  # decoded length; a short body is IncompleteBody

    @property
    def computed_algorithms(self) -> frozenset[str]:
        """Everything to hash while writing, besides MD5."""
        return self.hash_algorithms | self.verify_algorithms


@dataclass(frozen=True)
class ListPage:
    objects: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    # The last key or common prefix returned: V1's NextMarker, V2's continuation point.
    next_marker: str | None


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    size: int
    etag: str
    mtime_ns: int
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadInfo:
    bucket: str
    key: str
    upload_id: str
    initiated_ns: int
    attrs: ObjectAttrs
    checksum_algorithm: str | None = None
    checksum_type: str | None = None  # "COMPOSITE" | "FULL_OBJECT"
    owner: str | None = None


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str  # unquoted
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpectedObject:
    """What a CompleteMultipartUpload request asserts about the object it builds.

    Each field given is checked against the object before anything is published: a checksum
    that differs, or a checksum type other than the upload's, is BadDigest; a checksum of
    another algorithm than the upload's is InvalidRequest; a size that differs is InvalidRequest.
    """

    checksum_algorithm: str | None = None  # with checksum: x-amz-checksum-<algorithm>
    checksum: str | None = None  # base64 as sent; a COMPOSITE value may end in "-<parts>"
    checksum_type: str | None = None  # x-amz-checksum-type
    size: int | None = None  # x-amz-mp-object-size


@dataclass(frozen=True)
class PartsPage:
    upload: UploadInfo
    parts: list[PartInfo]
    is_truncated: bool
    next_part_number_marker: int | None


@dataclass(frozen=True)
class UploadsPage:
    uploads: list[UploadInfo]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str | None
    next_upload_id_marker: str | None


class ObjectReader(Protocol):
    """An open object: its metadata as of the open, and its bytes.

    The file stays readable after a concurrent overwrite or delete (it is an open descriptor),
    so one GET always sees one version.
    """

    info: ObjectInfo

    def chunks(self, start: int, end: int, chunk_size: int = ...) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive."""
        ...

    async def send_to(self, sock_fd: int, offset: int, count: int) -> int:
        """Sends ``count`` bytes from ``offset`` to the connected non-blocking socket ``sock_fd``
        (nothing else writes to it meanwhile) without copying them through the process; returns
        the bytes sent, fewer than ``count`` only when the file shrank. ``SendfileUnavailable``
        when nothing was sent (the caller copies the bytes from ``chunks`` instead),
        ``ConnectionError``/``TimeoutError`` when the peer went away or stopped reading."""
        ...

    async def close(self) -> None: ...


class Store(ABC):
    """One async method per S3 action. Subclasses override what they support."""

    # -- bucket operations ------------------------------------------------------------------
    @abstractmethod
    async def list_buckets(self) -> list[BucketInfo]: ...

    @abstractmethod
    async def create_bucket(self, bucket: str, owner: str) -> None:
        """BucketAlreadyOwnedByYou / BucketAlreadyExists when it exists."""

    @abstractmethod
    async def head_bucket(self, bucket: str) -> BucketInfo:
        """NoSuchBucket when missing."""

    @abstractmethod
    async def delete_bucket(self, bucket: str) -> None:
        """BucketNotEmpty when any object or upload remains."""

    # -- object operations ------------------------------------------------------------------
    @abstractmethod
    async def head_object(self, bucket: str, key: str) -> ObjectInfo: ...

    @abstractmethod
    async def open_object(self, bucket: str, key: str) -> ObjectReader: ...

    @abstractmethod
    async def put_object(
        self, bucket: str, key: str, body: ByteStream, attrs: ObjectAttrs, options: WriteOptions
    ) -> ObjectInfo: ...

    @abstractmethod
    async def delete_object(self, bucket: str, key: str) -> None:
        """Succeeds when the key does not exist (S3 semantics)."""

    @abstractmethod
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
        """Copy; ``attrs=None`` keeps the source's metadata (COPY directive).

        ``check_source`` sees the source's info first (x-amz-copy-source-if-*). When source
        and destination are the same object, only the metadata is replaced, in place.
        """

    @abstractmethod
    async def get_tags(self, bucket: str, key: str) -> dict[str, str]: ...

    @abstractmethod
    async def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None: ...

    @abstractmethod
    async def delete_tags(self, bucket: str, key: str) -> None: ...

    @abstractmethod
    async def list_objects(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "", max_keys: int = 1000
    ) -> ListPage:
        """Keys > start_after in binary UTF-8 order, grouped by delimiter."""

    # -- multipart operations ---------------------------------------------------------------
    @abstractmethod
    async def create_multipart(
        self,
        bucket: str,
        key: str,
        attrs: ObjectAttrs,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
        owner: str | None = None,
    ) -> str:
        """Returns the upload id."""

    @abstractmethod
    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: ByteStream, options: WriteOptions
    ) -> PartInfo: ...

    @abstractmethod
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
        """``src_range`` is (first, last) inclusive, already validated against nothing."""

    @abstractmethod
    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        options: WriteOptions,
        expected: ExpectedObject = ExpectedObject(),
    ) -> ObjectInfo:
        """Only ``options``' write conditions apply (the request body is the part list, not
        object bytes); ``expected`` is checked before anything is published."""

    @abstractmethod
    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None: ...

    @abstractmethod
    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int = 0, max_parts: int = 1000
    ) -> PartsPage: ...

    @abstractmethod
    async def list_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> UploadsPage: ...


def not_implemented(action: str) -> S3Error:
    return S3Error("NotImplemented", f"{action} is not implemented by this gateway.")
