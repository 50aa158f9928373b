"""Request bodies: the byte stream a write stores, and how to verify it.

Public API
- ``write_body(req, *, max_size, if_match=None, if_none_match=False) -> UploadBody``: for
  PutObject and UploadPart. A plain body needs Content-Length (``MissingContentLength``), an
  aws-chunked one ``x-amz-decoded-content-length``; a declared length over ``max_size`` is
  ``EntityTooLarge`` before any of the body is read. Its large remainder may be read straight
  from the socket (``transport.request_body``); an aws-chunked body (``x-amz-content-sha256:
  STREAMING-...``) is decoded by ``chunked.AwsChunkedDecoder``. A body that sends nothing for
  ``req.limits.body_stall_timeout`` seconds is ``RequestTimeout``.
- ``UploadBody``: ``stream`` and ``options`` go to the store as they are; after the store
  returns, ``response_headers(checksum_type=None)`` gives the ``x-amz-checksum-<algo>`` to echo
  on the response, with ``x-amz-checksum-type`` when a type is given (PutObject's is
  FULL_OBJECT; UploadPart sends none).
- ``read_body_bytes(req, *, limit, checksum_headers=True) -> bytes``: a small whole body (XML of
  DeleteObjects, CompleteMultipartUpload, Tagging...), verified like a write; more than
  ``limit`` bytes is ``MaxMessageLengthExceeded``. ``checksum_headers=False`` leaves the
  ``x-amz-checksum-*`` headers out of that check: CompleteMultipartUpload's describe the object
  it builds, not the part list.
- ``has_integrity_header(headers) -> bool``: Content-MD5 or an ``x-amz-checksum-*`` header or
  trailer is present (DeleteObjects requires one).
- ``checksum_header(algorithm) -> str``, ``parse_length(value, header) -> int | None``.

Verification, in ``WriteOptions.verify`` (called by the store after the last byte, before
anything is published): Content-MD5 (``InvalidDigest`` when it is not base64 of 16 bytes,
``BadDigest`` on mismatch), the hex ``x-amz-content-sha256`` of a signed payload
(``XAmzContentSHA256Mismatch``), and one ``x-amz-checksum-*`` value from a header or from the
aws-chunked trailer (``BadDigest``). Two checksum headers, or a header and a trailer, are
``InvalidRequest``. The checksum the client names goes to ``WriteOptions.hash_algorithms`` (the
object keeps it); the signed payload's SHA-256 to ``verify_algorithms`` only, so an object does
not carry a SHA-256 checksum its client never asked for.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from ..checksums import ALGORITHMS, MultiHasher, b64, decode_checksum
from ..errors import S3Error
from ..store.base import ByteStream, Digests, WriteOptions
from .chunked import AwsChunkedDecoder
from .context import S3Request
from .limits import check_upload_size
from .numbers import decimal
from .sigv4 import SIGNED_PAYLOAD, STREAMING_MODES
from .transport import content_chunks, request_body

CHECKSUM_PREFIX = "x-amz-checksum-"


@dataclass
class _ChecksumPlan:
    """Which checksum the client asked for and where its expected value comes from."""

    algorithm: str | None = None
    header_value: bytes | None = None  # decoded x-amz-checksum-<algo> header
    trailer_name: str | None = None  # lower-case trailer that will carry the value


def checksum_header(algorithm: str) -> str:
    """``CRC32`` -> ``x-amz-checksum-crc32``."""
    return CHECKSUM_PREFIX + algorithm.lower()


def _algorithm_of(name: str) -> str | None:
    """``x-amz-checksum-crc32`` -> ``CRC32``; None for anything else (``-mode``, ``-type``...)."""
    if not name.lower().startswith(CHECKSUM_PREFIX):
        return None
    algorithm = name[len(CHECKSUM_PREFIX):].upper()
    return algorithm if algorithm in ALGORITHMS else None


def _trailer_names(headers: Mapping[str, str]) -> list[str]:
    value = headers.get("x-amz-trailer", "")
    return [name.strip().lower() for name in value.split(",") if name.strip()]


def _plan_checksum(headers: Mapping[str, str], streaming: bool, checksum_headers: bool = True) -> _ChecksumPlan:
    in_headers = [a for a in ALGORITHMS if checksum_header(a) in headers] if checksum_headers else []
    trailers = _trailer_names(headers)
    plan = _ChecksumPlan()
    if len(in_headers) > 1:
        raise S3Error(
            "InvalidRequest",
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        )
    if trailers:
        if not streaming:
            raise S3Error("InvalidRequest", "x-amz-trailer requires an aws-chunked (STREAMING-*) payload.")
        if len(trailers) > 1 or _algorithm_of(trailers[0]) is None:
            raise S3Error("InvalidRequest", "The value specified in the x-amz-trailer header is not supported")
        if in_headers:
            raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header")
        plan.algorithm = _algorithm_of(trailers[0])
        plan.trailer_name = trailers[0]
    elif in_headers:
        plan.algorithm = in_headers[0]
        raw = decode_checksum(plan.algorithm, headers[checksum_header(plan.algorithm)])
        if raw is None:
            raise S3Error("InvalidRequest", f"Value for {checksum_header(plan.algorithm)} header is invalid.")
        plan.header_value = raw
    sdk_algorithm = headers.get("x-amz-sdk-checksum-algorithm")
    if sdk_algorithm is not None:
        sdk_algorithm = sdk_algorithm.strip().upper()
        if sdk_algorithm not in ALGORITHMS or plan.algorithm not in (None, sdk_algorithm):
            raise S3Error("InvalidRequest", "Value for x-amz-sdk-checksum-algorithm header is invalid.")
        # Named without a value: compute it so the response can echo it.
        plan.algorithm = sdk_algorithm
    return plan


def _content_md5(headers: Mapping[str, str]) -> bytes | None:
    value = headers.get("Content-MD5")
    if value is None:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise S3Error("InvalidDigest")
    return raw


def has_integrity_header(headers: Mapping[str, str]) -> bool:
    return (
        "Content-MD5" in headers
        or any(_algorithm_of(name) for name in headers)
        or any(_algorithm_of(name) for name in _trailer_names(headers))
    )


class _Verifier:
    """The ``WriteOptions.verify`` callable: compares the digests with what the client sent."""

    def __init__(
        self,
        plan: _ChecksumPlan,
        content_md5: bytes | None,
        content_sha256: str | None,
        decoder: AwsChunkedDecoder | None,
    ) -> None:
        self._plan = plan
        self._content_md5 = content_md5
        self._content_sha256 = content_sha256
        self._decoder = decoder
        # Set once verification passed: what the response echoes.
        self.verified_digests: Digests = {}

    def _expected_checksum(self) -> bytes | None:
        plan = self._plan
        if plan.trailer_name is None:
            return plan.header_value
        assert self._decoder is not None and plan.algorithm is not None
        value = self._decoder.trailers.get(plan.trailer_name)
        if value is None:
            raise S3Error("InvalidRequest", f"The {plan.trailer_name} trailer was declared but not sent.")
        raw = decode_checksum(plan.algorithm, value)
        if raw is None:
            raise S3Error("InvalidRequest", f"Value for {plan.trailer_name} trailing header is invalid.")
        return raw

    def __call__(self, digests: Digests) -> None:
        if self._content_md5 is not None and digests["MD5"] != self._content_md5:
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
        if self._content_sha256 is not None and digests["SHA256"].hex() != self._content_sha256:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                extra={
                    "ClientComputedContentSHA256": self._content_sha256,
                    "S3ComputedContentSHA256": digests["SHA256"].hex(),
                },
            )
        expected = self._expected_checksum()
        algorithm = self._plan.algorithm
        if expected is not None and algorithm is not None and digests[algorithm] != expected:
            raise S3Error(
                "BadDigest",
                f"The {checksum_header(algorithm)} you specified did not match the calculated checksum.",
            )
        self.verified_digests = dict(digests)


@dataclass(frozen=True)
class UploadBody:
    stream: ByteStream
    options: WriteOptions
    checksum_algorithm: str | None
    _verifier: _Verifier

    def response_headers(self, checksum_type: str | None = None) -> dict[str, str]:
        algorithm = self.checksum_algorithm
        digests = self._verifier.verified_digests
        if algorithm is None or algorithm not in digests:
            return {}
        headers = {checksum_header(algorithm): b64(digests[algorithm])}
        if checksum_type is not None:
            headers["x-amz-checksum-type"] = checksum_type
        return headers


def parse_length(value: str | None, header: str) -> int | None:
    if value is None:
        return None
    number = decimal(value)
    if number is None:
        raise S3Error(
            "InvalidArgument", f"{header} must be a non-negative integer.", extra={"ArgumentName": header}
        )
    return number


def _build(
    req: S3Request, *, require_length: bool, if_match: str | None, if_none_match: bool, checksum_headers: bool = True,
    direct: bool = False, max_size: int | None = None,
) -> UploadBody:
    headers = req.http.headers
    streaming = req.auth.payload in STREAMING_MODES
    plan = _plan_checksum(headers, streaming, checksum_headers)
    content_md5 = _content_md5(headers)
    content_sha256 = req.auth.content_sha256 if req.auth.payload == SIGNED_PAYLOAD else None
    decoder: AwsChunkedDecoder | None = None
    raw_length = parse_length(headers.get("Content-Length"), "Content-Length")
    stall_timeout = req.limits.body_stall_timeout
    if streaming:
        length = parse_length(headers.get("x-amz-decoded-content-length"), "x-amz-decoded-content-length")
        if length is None and require_length:
            raise S3Error("MissingContentLength")
        if max_size is not None:
            check_upload_size(length, max_size)
        decoder = AwsChunkedDecoder(req.http.content, req.auth, length, _trailer_names(headers), stall_timeout)
        stream: ByteStream = request_body(req.http, raw_length, decoder, stall_timeout) if direct else aiter(decoder)
    else:
        length = raw_length
        if length is None and require_length:
            raise S3Error("MissingContentLength")
        if max_size is not None:
            check_upload_size(length, max_size)
        stream = request_body(req.http, length, None, stall_timeout) if direct else content_chunks(
            req.http.content, stall_timeout)
    # The client's checksum is the object's; the signed payload hash only checks the transfer.
    checksums = frozenset([plan.algorithm] if plan.algorithm is not None else [])
    verify_only = frozenset(["SHA256"] if content_sha256 is not None else []) - checksums
    verifier = _Verifier(plan, content_md5, content_sha256, decoder)
    options = WriteOptions(
        hash_algorithms=checksums,
        verify_algorithms=verify_only,
        verify=verifier,
        if_match=if_match,
        if_none_match=if_none_match,
        expected_size=length,
    )
    return UploadBody(stream, options, plan.algorithm, verifier)


def write_body(
    req: S3Request, *, max_size: int, if_match: str | None = None, if_none_match: bool = False
) -> UploadBody:
    return _build(
        req, require_length=True, if_match=if_match, if_none_match=if_none_match, direct=True, max_size=max_size
    )


async def read_body_bytes(req: S3Request, *, limit: int, checksum_headers: bool = True) -> bytes:
    upload = _build(
        req, require_length=False, if_match=None, if_none_match=False, checksum_headers=checksum_headers
    )
    if upload.options.expected_size is not None and upload.options.expected_size > limit:
        raise S3Error("MaxMessageLengthExceeded")
    hasher = MultiHasher(upload.options.computed_algorithms)
    parts: list[bytes] = []
    size = 0
    async for chunk in upload.stream:
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
