"""Request bodies: the byte stream a write stores, and what it is verified against.

A write (PutObject, UploadPart) streams its body to the store; a small body (the XML of a
request) is read whole, and verified the same way.

What a body is verified against, and the verdict, is ``integrity``: ``WriteOptions.verify``
(called by the store after the last byte, before anything is published) hands the digests to
``integrity.check_digests`` with the aws-chunked trailers the body ended with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..checksums import MultiHasher
from ..errors import S3Error
from ..store.base import BodyOnSocket, ByteStream, Digests, WriteOptions
from .chunked import AwsChunkedDecoder
from .context import S3Request
from .integrity import check_digests, checksum_header, declared_checksums, trailer_names
from .limits import check_upload_size
from .numbers import decimal
from .sigv4 import SIGNED_PAYLOAD, STREAMING_MODES
from .transport import content_chunks, request_body

__all__ = ["UploadBody", "parse_length", "read_body_bytes", "write_body"]


@dataclass(frozen=True)
class UploadBody:
    """``stream`` and ``options`` go to the store as they are; after the store returns,
    ``response_headers`` gives what to echo on the response."""

    stream: ByteStream
    options: WriteOptions
    checksum_algorithm: str | None

    def response_headers(self, checksums: Mapping[str, str], checksum_type: str | None = None) -> dict[str, str]:
        """The ``x-amz-checksum-<algo>`` of the checksum the client asked for, as the store kept it
        (``ObjectInfo.checksums``, ``PartInfo.checksums``: base64 by algorithm), with
        ``x-amz-checksum-type`` when a type is given (PutObject's is FULL_OBJECT; UploadPart sends
        none)."""
        algorithm = self.checksum_algorithm
        if algorithm is None or algorithm not in checksums:
            return {}
        headers = {checksum_header(algorithm): checksums[algorithm]}
        if checksum_type is not None:
            headers["x-amz-checksum-type"] = checksum_type
        return headers


def parse_length(value: str | None, header: str) -> int | None:
    """A length header's value (None: absent), or ``InvalidArgument`` naming ``header``."""
    if value is None:
        return None
    number = decimal(value)
    if number is None:
        raise S3Error("InvalidArgument", f"{header} must be a non-negative integer.", extra={"ArgumentName": header})
    return number


def _build(
    req: S3Request,
    *,
    require_length: bool,
    if_match: str | None,
    if_none_match: bool,
    checksum_headers: bool = True,
    direct: bool = False,
    max_size: int | None = None,
) -> UploadBody:
    headers = req.http.headers
    streaming = req.auth.payload in STREAMING_MODES
    declared = declared_checksums(
        headers,
        streaming=streaming,
        checksum_headers=checksum_headers,
        content_sha256=req.auth.content_sha256 if req.auth.payload == SIGNED_PAYLOAD else None,
    )
    decoder: AwsChunkedDecoder | None = None
    raw_length = parse_length(headers.get("Content-Length"), "Content-Length")
    stall_timeout = req.limits.body_stall_timeout
    if streaming:
        length = parse_length(headers.get("x-amz-decoded-content-length"), "x-amz-decoded-content-length")
        if length is None and require_length:
            raise S3Error("MissingContentLength")
        if max_size is not None:
            check_upload_size(length, max_size)
        decoder = AwsChunkedDecoder(req.http.content, req.auth, length, trailer_names(headers), stall_timeout)
        stream: ByteStream = request_body(req.http, raw_length, decoder, stall_timeout) if direct else aiter(decoder)
    else:
        length = raw_length
        if length is None and require_length:
            raise S3Error("MissingContentLength")
        if max_size is not None:
            check_upload_size(length, max_size)
        stream = (
            request_body(req.http, length, None, stall_timeout)
            if direct
            else content_chunks(req.http.content, stall_timeout)
        )

    def verify(digests: Digests) -> None:
        # The trailers are known once the body ended, which is when the store calls this.
        check_digests(declared, digests, {} if decoder is None else decoder.trailers)

    options = WriteOptions(
        hash_algorithms=declared.hash_algorithms,
        verify_algorithms=declared.verify_algorithms,
        verify=verify,
        if_match=if_match,
        if_none_match=if_none_match,
        expected_size=length,
    )
    return UploadBody(stream, options, declared.algorithm)


def write_body(
    req: S3Request, *, max_size: int, if_match: str | None = None, if_none_match: bool = False
) -> UploadBody:
    """The body of a PutObject or UploadPart.

    A plain body needs Content-Length (``MissingContentLength``), an aws-chunked one
    ``x-amz-decoded-content-length``; a declared length over ``max_size`` is ``EntityTooLarge``
    before any of the body is read. Its large remainder may be read straight from the socket
    (``transport.request_body``); an aws-chunked body (``x-amz-content-sha256: STREAMING-...``) is
    decoded by ``chunked.AwsChunkedDecoder``. A body that sends nothing for
    ``req.limits.body_stall_timeout`` seconds is ``RequestTimeout``.
    """
    return _build(
        req, require_length=True, if_match=if_match, if_none_match=if_none_match, direct=True, max_size=max_size
    )


async def read_body_bytes(req: S3Request, *, limit: int, checksum_headers: bool = True) -> bytes:
    """A small whole body (XML of DeleteObjects, CompleteMultipartUpload, Tagging...), verified
    like a write; more than ``limit`` bytes is ``MaxMessageLengthExceeded``.

    ``checksum_headers=False`` leaves the ``x-amz-checksum-*`` headers out of that check:
    CompleteMultipartUpload's describe the object it builds, not the part list.
    """
    upload = _build(req, require_length=False, if_match=None, if_none_match=False, checksum_headers=checksum_headers)
    if upload.options.expected_size is not None and upload.options.expected_size > limit:
        raise S3Error("MaxMessageLengthExceeded")
    hasher = MultiHasher(upload.options.computed_algorithms)
    parts: list[bytes | memoryview] = []
    size = 0
    async for chunk in upload.stream:
        # _build offers the socket (a BodyOnSocket) only to the writes that ask for it (direct=True).
        assert not isinstance(chunk, BodyOnSocket)
        size += len(chunk)
        if size > limit:
            raise S3Error("MaxMessageLengthExceeded")
        hasher.update(chunk)
        parts.append(chunk)
    if upload.options.expected_size is not None and size != upload.options.expected_size:
        raise S3Error("IncompleteBody")
    assert upload.options.verify is not None
    upload.options.verify(hasher.digests())
    return b"".join(parts)
